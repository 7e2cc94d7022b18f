"""Issue 15 item 4, in process: can the LSTM find sequence-only faults, and what stops it?

A fleet with sequence-only faults (``FleetSpec.sequence_faults``) is generated and cut here
(no database: the sessions core on the generator's events, what sessionize stores), the
autoencoder is fitted on its cleaned history as ``logalyzer train`` does (every fit in this
process), the LSTM on the sessions the autoencoder finds ordinary, and each session's verdict
is compared with the truth, per kind. Options choose the LSTM's scoring (``--top-g``,
``--min-p``), its epochs, and ``--clean-oracle``: the LSTM learns from the ordinary sessions
*minus the labelled sequence faults*, the history a perfect cascade would give it;
``--reference-clean-hours H``: the fleet's first H hours hold no anomaly
(``FleetSpec.reference_clean_hours``) and the LSTM learns only from the sessions
starting in them, all of them, as ``train --reference-until`` does (its figures also given
for the sessions after the window, ``after_reference``).

    PYTHONPATH=. python bench/lstm_sequence.py --seed 41 --sequence-faults 0.5 [--top-g 1]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime

import numpy as np

from logalyzer.core import autoencoder, lstm
from logalyzer.core import sessions as core
from logalyzer.core.detectors import fit_in_process
from logalyzer.core.features import event_keys
from logalyzer.core.rawlines import event_from_data
from logalyzer.core.reference import Reference
from logalyzer.core.synth import SEQUENCE_FAULT_KINDS, FleetSpec
from logalyzer.core.synth.fleet import _devices
from logalyzer.core.synth.spec import _start_utc
from logalyzer.core.synth.timeline import _Planner
from logalyzer.jobs.evaluate import prf
from logalyzer.jobs.train import (
    new_detector,
    ordinary_sessions,
    seed_everything,
    session_scores,
    training_array,
)


def fleet_sessions(spec: FleetSpec) -> list[dict]:
    """Every session row of the fleet with its event keys and its truth label (``_kind``)."""
    start = int(_start_utc(spec.start).timestamp() * 1000)
    end = start + int(spec.hours * 3_600_000)
    counter, rows = [0], []
    for dev in _devices(spec, start):
        plan = _Planner(dev, spec, end, counter).run()
        label = {e.ts_ms: e.anomaly for e in plan.events if e.etype == "ChangeContent"}
        evs = [
            event_from_data(e.ts_ms, e.etype, {**e.data, "seq": e.seq})
            for e in plan.events
            if not e.dropped
        ]
        for s in core.cut(core.order(evs)):
            row = core.measure(s, dev.rxid)
            row["event_keys"] = event_keys(s.events)
            row["start_ts"] = datetime.fromtimestamp(row["start_ts"] / 1000, UTC)  # as stored
            row["_kind"] = (
                label.get(s.events[0].ts_ms) if s.events[0].etype == "ChangeContent" else None
            )
            rows.append(row)
    return rows


def fit_ae(sessions: list[dict], seed: int):
    keep = np.ones(len(sessions), bool)
    for _ in range(autoencoder.AEConfig().clean_rounds):
        learn = [s for s, k in zip(sessions, keep) if k]
        seed_everything(seed)
        det = new_detector("ae", learn)
        fit_in_process(det, training_array(det, learn), seed=seed)
        scores = session_scores(det, sessions)
        keep = scores <= det.ordinary_fence(scores[keep])
    learn = [s for s, k in zip(sessions, keep) if k]
    seed_everything(seed)
    det = new_detector("ae", learn)
    fit_in_process(det, training_array(det, learn), seed=seed)
    scores = session_scores(det, sessions)
    det.threshold = det.threshold_for(scores[keep])
    det.ordinary_below = det.ordinary_fence(scores[keep])
    return det, scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=40)
    ap.add_argument("--hours", type=float, default=24)
    ap.add_argument("--seed", type=int, default=41)
    ap.add_argument("--anomaly-rate", type=float, default=0.1)
    ap.add_argument("--sequence-faults", type=float, default=0.5)
    ap.add_argument("--train-seed", type=int, default=0)
    ap.add_argument("--top-g", type=int, default=None)
    ap.add_argument("--min-p", type=float, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--clean-oracle", action="store_true")
    ap.add_argument("--reference-clean-hours", type=float, default=0.0)
    a = ap.parse_args()
    t0 = time.time()
    spec = FleetSpec(
        devices=a.devices,
        hours=a.hours,
        seed=a.seed,
        anomaly_rate=a.anomaly_rate,
        sequence_faults=a.sequence_faults,
        noise_lines_per_minute=5,
        reference_clean_hours=a.reference_clean_hours,
    )
    until = spec.reference_until()
    sessions = fleet_sessions(spec)
    kinds = np.array([s["_kind"] or "" for s in sessions])
    ae_det, ae_scores = fit_ae(sessions, a.train_seed)
    learn = ordinary_sessions(ae_det, sessions, ae_scores)
    if a.clean_oracle:
        learn = [s for s in learn if s["_kind"] not in SEQUENCE_FAULT_KINDS]
    if until is not None:  # train's reference: all its sessions, the reference's config
        learn = [s for s in sessions if Reference(until=until).holds(s)]
    over = {
        **(lstm.REFERENCE_CONFIG if until is not None else {}),
        **{
            k: v
            for k, v in (("top_g", a.top_g), ("min_p", a.min_p), ("epochs", a.epochs))
            if v is not None
        },
    }
    seed_everything(a.train_seed)
    det = new_detector("lstm", learn, over)
    fit_in_process(det, training_array(det, learn), seed=a.train_seed)
    lstm_scores = session_scores(det, sessions)
    det.threshold = det.threshold_for(lstm_scores)
    flags = {
        "lstm": lstm_scores > det.threshold,
        "ae": ae_scores > ae_det.threshold,
    }
    flags["lstm_or_ae"] = flags["lstm"] | flags["ae"]
    actual = kinds != ""
    out = {
        "spec": {**spec.to_json(), "clean_oracle": a.clean_oracle},
        "lstm_config": {k: v for k, v in vars(det.cfg).items()},
        "sessions": len(sessions),
        "anomalous": int(actual.sum()),
        "lstm_learnt_from": len(learn),
        "sequence_faults_in_lstm_history": sum(s["_kind"] in SEQUENCE_FAULT_KINDS for s in learn),
        "lstm_threshold": det.threshold,
        "overall": {n: prf(f, actual).as_dict() for n, f in flags.items()},
        "per_kind": {},
    }
    seq = np.isin(kinds, SEQUENCE_FAULT_KINDS)
    keep = seq | ~actual
    out["sequence_only"] = {n: prf(f[keep], actual[keep]).as_dict() for n, f in flags.items()}
    for kind in sorted(set(kinds) - {""}):
        keep = (kinds == kind) | ~actual
        out["per_kind"][kind] = {
            "sessions": int((kinds == kind).sum()),
            **{n: prf(f[keep], actual[keep]).as_dict() for n, f in flags.items()},
        }
    if until is not None:
        late = np.array([Reference(since=until).holds(s) for s in sessions])
        keep = late & (seq | ~actual)
        out["after_reference"] = {
            "sessions": int(late.sum()),
            "sequence_only": {n: prf(f[keep], actual[keep]).as_dict() for n, f in flags.items()},
            "overall": {n: prf(f[late], actual[late]).as_dict() for n, f in flags.items()},
        }
    out["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
