#!/usr/bin/env python3
"""Does the autoencoder give the same verdicts from one training to the next? (issue 15)

For each fleet (one seed, several anomaly rates) this runs ingest, sessionize and templates
once into a fresh database (the sessions are cached in ``bench/out/ae-stability``), then fits
the autoencoder *in process* as ``train`` does (``jobs.train._fit_ae``: failed sessions left
out, cleaned history) once per training seed, and prints the verdicts' F1 as mean ± std with
three thresholds on the same fits (and, per cohort of boxes with ``--cohorts``, the share of
their normal sessions flagged and learnt from):

- ``fixed``: the product's, ``AEConfig.threshold_rmse``;
- ``fence``: the rule before it, ``Q3 + 11·IQR`` of the root scores of the kept sessions;
- ``best``: the threshold chosen with the labels (an upper bound no rule reaches).

The worst anomaly kind (its lowest recall over the trainings) says whether a training learnt
a whole kind as ordinary, which no threshold repairs.

    LOGALYZER_DSN=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/ae_stability.py --seed 29 --rates 0.02,0.1,0.15 --trainings 5

Tuning fleets are seed 29; seed 41 is held out (README, "Across anomaly rates"). ``--set``
takes any AEConfig field, e.g. ``--set box_relative=false`` for the fleet-wide counts.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from template_features import fleet_sessions  # noqa: E402

from logalyzer.core.autoencoder import AEConfig  # noqa: E402
from logalyzer.core.detectors import sqrt_fence  # noqa: E402
from logalyzer.core.synth import FleetSpec  # noqa: E402
from logalyzer.core.synth.cohorts import device_cohorts  # noqa: E402
from logalyzer.core.synth.fleet import _devices  # noqa: E402
from logalyzer.jobs.evaluate import prf  # noqa: E402
from logalyzer.jobs.train import _fit_ae  # noqa: E402
from logalyzer.settings import Settings  # noqa: E402

OLD_FENCE_K = 11.0  # the threshold before AEConfig.threshold_rmse


def cached_sessions(
    seed: int, rate: float, devices: int, hours: float, cohorts: str | None = None
) -> tuple[list, list]:
    """The fleet's sessions and labels, generated and processed once per shape."""
    tail = f"-c{cohorts.replace(':', '').replace(',', '_')}" if cohorts else ""
    path = HERE / "out" / "ae-stability" / f"s{seed}-r{rate}-d{devices}-h{hours:g}{tail}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    spec = FleetSpec(
        devices=devices,
        hours=hours,
        seed=seed,
        anomaly_rate=rate,
        noise_lines_per_minute=5,
        cohorts=cohorts,
    )
    got = fleet_sessions(Settings(), spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(got))
    return got


def box_cohorts(args) -> dict[str, set[str]]:
    """Each box's cohorts ("none" for a box in none), as the generator drew them (the boxes
    and their cohorts do not depend on the anomaly rate)."""
    spec = FleetSpec(devices=args.devices, seed=args.seed, cohorts=args.cohorts)
    return {d.rxid: set(device_cohorts(spec, d.index)) or {"none"} for d in _devices(spec, 0)}


def best_f1(scores: np.ndarray, actual: np.ndarray) -> float:
    """F1 at the best threshold the labels allow (each distinct score tried)."""
    return max(prf(scores > t, actual).f1 for t in np.unique(scores))


def config_overrides(ap: argparse.ArgumentParser, args) -> dict:
    """--epochs and each --set FIELD=VALUE as AEConfig overrides, typed as the field's
    default; an unknown field or a bad value is a usage error."""
    defaults = AEConfig()
    out = {"epochs": args.epochs} if args.epochs else {}
    for item in args.set:
        field, _, value = item.partition("=")
        if not hasattr(defaults, field):
            ap.error(f"--set {item}: AEConfig has no field {field!r}")
        kind = type(getattr(defaults, field))
        if kind is bool and value.lower() not in ("true", "false"):
            ap.error(f"--set {item}: {value!r} is not true or false")
        try:
            out[field] = value.lower() == "true" if kind is bool else kind(value)
        except ValueError:
            ap.error(f"--set {item}: {value!r} is not a {kind.__name__}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=29, help="fleet seed (29: tuning, 41: held out)")
    ap.add_argument("--rates", default="0.02,0.1,0.15", help="anomaly rates, comma-separated")
    ap.add_argument("--trainings", type=int, default=5, help="training seeds 0..N-1")
    ap.add_argument("--devices", type=int, default=40)
    ap.add_argument("--hours", type=float, default=24)
    ap.add_argument("--epochs", type=int, help="AEConfig.epochs (default: the product's)")
    ap.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", help="an AEConfig field"
    )
    ap.add_argument("--cohorts", help="FleetSpec.cohorts (e.g. noisy:0.1): also per cohort")
    args = ap.parse_args()
    overrides = config_overrides(ap, args)
    for rate in (float(r) for r in args.rates.split(",")):
        sessions, kinds = cached_sessions(args.seed, rate, args.devices, args.hours, args.cohorts)
        cohort = box_cohorts(args)
        names = sorted(set().union(*cohort.values()))
        member = {c: np.array([c in cohort[s["rxid"]] for s in sessions]) for c in names}
        false_alarms: dict[str, list[float]] = {c: [] for c in member}
        learnt_share: dict[str, list[float]] = {c: [] for c in member}
        actual = np.array([k is not None for k in kinds])
        labels = np.array([k or "" for k in kinds])
        got: dict[str, list[float]] = {"fixed": [], "fence": [], "best": []}
        recalls: dict[str, list[float]] = {}  # per anomaly kind, one a training
        for seed in range(args.trainings):
            det, _, _, learnt, scores = _fit_ae(
                None, sessions, overrides, 1, False, seed, False, in_process=True
            )
            learnt_ids = set(map(id, learnt))  # _fit_ae returns the very rows it learnt from
            kept_mask = np.array([id(s) in learnt_ids for s in sessions])
            kept = scores[kept_mask]
            flagged = scores > det.threshold
            got["fixed"].append(prf(flagged, actual).f1)
            got["fence"].append(prf(scores > sqrt_fence(kept, OLD_FENCE_K), actual).f1)
            got["best"].append(best_f1(scores, actual))
            for c, m in member.items():
                false_alarms[c].append(flagged[m & ~actual].mean())
                learnt_share[c].append(kept_mask[m & ~actual].mean())
            for kind in set(labels) - {""}:
                recalls.setdefault(kind, []).append(flagged[labels == kind].mean())
        worst = {kind: min(r) for kind, r in recalls.items()}
        low = min(worst, key=worst.get)
        print(
            f"seed {args.seed}, {rate:.0%} anomalous ({len(sessions):,} sessions, "
            f"{actual.sum()} anomalous): "
            + ", ".join(f"{k} {np.mean(v):.3f} ± {np.std(v):.3f}" for k, v in got.items())
            + f"; per training (fixed) {' '.join(f'{x:.3f}' for x in got['fixed'])}"
            + f"; worst kind {low} (recall {worst[low]:.2f})",
            flush=True,
        )
        print(
            "  recall per kind: "
            + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in sorted(recalls.items())),
            flush=True,
        )
        for c, fa in false_alarms.items():
            print(
                f"  cohort {c}: {member[c].sum():,} sessions, normal ones flagged "
                f"{np.mean(fa):.3f} ± {np.std(fa):.3f}, learnt from {np.mean(learnt_share[c]):.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
