#!/usr/bin/env python3
"""Does the autoencoder give the same verdicts from one training to the next? (issue 15)

For each fleet (one seed, several anomaly rates) this runs ingest, sessionize and templates
once into a fresh database (the sessions are cached in ``bench/out/ae-stability``), then fits
the autoencoder *in process* as ``train`` does (``jobs.train._fit_ae``: failed sessions left
out, cleaned history) once per training seed, and prints the verdicts' F1 as mean ± std with
three thresholds on the same fits:

- ``fixed``: the product's, ``AEConfig.threshold_rmse``;
- ``fence``: the rule before it, ``Q3 + 11·IQR`` of the root scores of the kept sessions;
- ``best``: the threshold chosen with the labels (an upper bound no rule reaches).

The worst anomaly kind (its lowest recall over the trainings) says whether a training learnt
a whole kind as ordinary, which no threshold repairs.

    LOGALYZER_DSN=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/ae_stability.py --seed 29 --rates 0.02,0.1,0.15 --trainings 5

Tuning fleets are seed 29; seed 41 is held out (README, "Across anomaly rates").
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

from logalyzer.core.detectors import sqrt_fence  # noqa: E402
from logalyzer.core.synth import FleetSpec  # noqa: E402
from logalyzer.jobs.evaluate import prf  # noqa: E402
from logalyzer.jobs.train import _fit_ae  # noqa: E402
from logalyzer.settings import Settings  # noqa: E402

OLD_FENCE_K = 11.0  # the threshold before AEConfig.threshold_rmse


def cached_sessions(seed: int, rate: float, devices: int, hours: float) -> tuple[list, list]:
    """The fleet's sessions and labels, generated and processed once per shape."""
    path = HERE / "out" / "ae-stability" / f"s{seed}-r{rate}-d{devices}-h{hours:g}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    spec = FleetSpec(
        devices=devices, hours=hours, seed=seed, anomaly_rate=rate, noise_lines_per_minute=5
    )
    got = fleet_sessions(Settings(), spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(got))
    return got


def best_f1(scores: np.ndarray, actual: np.ndarray) -> float:
    """F1 at the best threshold the labels allow (each distinct score tried)."""
    return max(prf(scores > t, actual).f1 for t in np.unique(scores))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=29, help="fleet seed (29: tuning, 41: held out)")
    ap.add_argument("--rates", default="0.02,0.1,0.15", help="anomaly rates, comma-separated")
    ap.add_argument("--trainings", type=int, default=5, help="training seeds 0..N-1")
    ap.add_argument("--devices", type=int, default=40)
    ap.add_argument("--hours", type=float, default=24)
    ap.add_argument("--epochs", type=int, help="AEConfig.epochs (default: the product's)")
    args = ap.parse_args()
    for rate in (float(r) for r in args.rates.split(",")):
        sessions, kinds = cached_sessions(args.seed, rate, args.devices, args.hours)
        actual = np.array([k is not None for k in kinds])
        labels = np.array([k or "" for k in kinds])
        got: dict[str, list[float]] = {"fixed": [], "fence": [], "best": []}
        worst: dict[str, float] = {}
        overrides = {"epochs": args.epochs} if args.epochs else {}
        for seed in range(args.trainings):
            det, _, _, learnt, scores = _fit_ae(
                None, sessions, overrides, 1, False, seed, False, in_process=True
            )
            learnt_ids = set(map(id, learnt))  # _fit_ae returns the very rows it learnt from
            kept = scores[[id(s) in learnt_ids for s in sessions]]
            flagged = scores > det.threshold
            got["fixed"].append(prf(flagged, actual).f1)
            got["fence"].append(prf(scores > sqrt_fence(kept, OLD_FENCE_K), actual).f1)
            got["best"].append(best_f1(scores, actual))
            for kind in set(labels) - {""}:
                recall = flagged[labels == kind].mean()
                worst[kind] = min(worst.get(kind, 1.0), recall)
        low = min(worst, key=worst.get)
        print(
            f"seed {args.seed}, {rate:.0%} anomalous ({len(sessions):,} sessions, "
            f"{actual.sum()} anomalous): "
            + ", ".join(f"{k} {np.mean(v):.3f} ± {np.std(v):.3f}" for k, v in got.items())
            + f"; per training (fixed) {' '.join(f'{x:.3f}' for x in got['fixed'])}"
            + f"; worst kind {low} (recall {worst[low]:.2f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
