#!/usr/bin/env python3
"""Does the autoencoder find more with the system templates among its features? (issue 14)

For each fleet (a generated one, with and without system-side faults) this runs ingest,
sessionize and templates once into a fresh database, then fits the autoencoder *in process*
the way ``train`` does (cleaned history, fences) with and without the template feature, over
several training seeds, and prints the combined verdict's precision / recall / F1 (mean ± std)
overall and on the system-fault kinds.

    LOGALYZER_DSN=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/template_features.py [--devices 40 --hours 24 --seeds 3]

The feature is the one ``detect`` reads (``sessions_system.unusual_lines``): the lines of the
session's templates that :func:`logalyzer.core.templates.unusual` finds unusually frequent.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import fresh_database  # noqa: E402

from logalyzer.core.synth import FleetSpec, generate_fleet  # noqa: E402
from logalyzer.jobs.evaluate import _truth_key, prf  # noqa: E402
from logalyzer.jobs.pipeline import run_pipeline  # noqa: E402
from logalyzer.jobs.train import _fit_ae  # noqa: E402
from logalyzer.settings import Settings  # noqa: E402
from logalyzer.store.scores import load_sessions  # noqa: E402

SYSTEM = ("anr_burst", "oom_kill", "hdcp_kernel")


def fleet_sessions(base: Settings, spec: FleetSpec) -> tuple[list[dict], list]:
    """The fleet's sessions as ``train`` reads them, and each one's truth label."""
    with tempfile.TemporaryDirectory() as out, fresh_database(base) as (settings, db):
        fleet = generate_fleet(Path(out), spec)
        run_pipeline(settings, db, [out], ["ingest", "sessionize", "templates"], progress=False)
        sessions = load_sessions(db)
        truth = json.loads(Path(fleet.truth_path).read_text())
    labels = {_truth_key(s["rxid"], s["start_ts"]): s["anomaly_kind"] for s in truth["sessions"]}
    return sessions, [labels.get(_truth_key(s["rxid"], s["start_ts"])) for s in sessions]


def verdicts(settings, sessions, with_templates: bool, seed: int) -> np.ndarray:
    rows = sessions if with_templates else [{**s, "system_unusual_lines": 0} for s in sessions]
    det, _, _, _, scores = _fit_ae(settings, rows, {}, 1, False, seed, False, in_process=True)
    return scores > det.threshold


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=40)
    ap.add_argument("--hours", type=float, default=24)
    ap.add_argument("--seed", type=int, default=41)
    ap.add_argument("--anomaly-rate", type=float, default=0.05)
    ap.add_argument("--seeds", type=int, default=3, help="trainings per variant")
    args = ap.parse_args()
    base = Settings()
    for faults in (0.0, 0.5):
        spec = FleetSpec(
            devices=args.devices,
            hours=args.hours,
            seed=args.seed,
            anomaly_rate=args.anomaly_rate,
            noise_lines_per_minute=5,
            system_faults=faults,
        )
        sessions, kinds = fleet_sessions(base, spec)
        actual = np.array([k is not None for k in kinds])
        system = np.array([k in SYSTEM for k in kinds])
        print(
            f"\nfleet seed {args.seed}, system faults {faults}: {len(sessions):,} sessions, "
            f"{actual.sum()} anomalous, {system.sum()} system faults, "
            f"{sum(s['system_unusual_lines'] > 0 for s in sessions)} with unusual system lines"
        )
        for with_templates in (False, True):
            f1s, sys_recall, ps, rs = [], [], [], []
            for seed in range(args.seeds):
                flagged = verdicts(base, sessions, with_templates, seed)
                m = prf(flagged, actual)
                ps.append(m.precision)
                rs.append(m.recall)
                f1s.append(m.f1)
                if system.any():
                    sys_recall.append((flagged & system).sum() / system.sum())
            line = (
                f"  {'with' if with_templates else 'without'} templates: "
                f"P {np.mean(ps):.3f} R {np.mean(rs):.3f} "
                f"F1 {np.mean(f1s):.3f} ± {np.std(f1s):.3f}"
            )
            if sys_recall:
                line += f", system-fault recall {np.mean(sys_recall):.3f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
