#!/usr/bin/env python3
"""Training and scoring benchmark: sessions/s per epoch for each detector, through Ray Train
and in one plain process, in one run; and detection's sessions/s, Ray Data actor pool against
the same scoring called in-process.

Why both: Ray Train pays for a worker group, DDP and a Ray Data shard; the ratio against a
plain PyTorch loop on the same data, measured in the same run on the same machine, says what
that costs here (and what 2 workers buy) without trusting absolute numbers on a noisy box.
Steps: generate (or reuse) a synthetic fleet, fresh database, ingest + sessionize (not timed
here: see bench/ingest.py and bench/sessionize.py), then for each detector: in-process
epochs (after one warm-up epoch), Ray Train with 1 and 2 workers (the fixed start-up cost and
the last epoch's time apart), then detect.

    .venv/bin/python bench/train.py [--devices 40] [--hours 24] [--epochs 5]

Uses LOGALYZER_DSN when set, else the embedded PostgreSQL. Results go to bench/out/train.json.
A GPU run: the same with --gpu on a machine that has one (Ray Train workers get a GPU each).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=40, help="devices in the fleet")
    ap.add_argument("--hours", type=float, default=24.0, help="hours of logs per device")
    ap.add_argument("--epochs", type=int, default=5, help="epochs per timed run")
    ap.add_argument("--gpu", action="store_true", help="Ray Train workers on GPUs")
    ap.add_argument("--keep-db", action="store_true", help="keep the benchmark database")
    args = ap.parse_args(argv)

    from _common import fresh_database

    from logalyzer.core.detectors import fit_in_process
    from logalyzer.core.synth import FleetSpec, generate_fleet
    from logalyzer.core.verdict import score_sessions
    from logalyzer.jobs.detect import detect
    from logalyzer.jobs.ingest import ingest
    from logalyzer.jobs.rayutil import ensure_ray
    from logalyzer.jobs.sessionize import sessionize
    from logalyzer.jobs.train import fit, new_detector, train, training_array
    from logalyzer.settings import Settings
    from logalyzer.store.registry import load
    from logalyzer.store.scores import load_sessions

    out = HERE / "out"
    fleet = out / f"fleet-d{args.devices}-h{args.hours:g}-s7-n2"
    if not (fleet / "ground_truth.json").exists():
        print(f"generating {fleet} ...", flush=True)
        generate_fleet(
            fleet,
            FleetSpec(devices=args.devices, hours=args.hours, seed=7, noise_lines_per_minute=2),
        )
    result: dict = {
        "fleet": fleet.name,
        "cpus": os.cpu_count(),
        "epochs": args.epochs,
        "gpu": args.gpu,
    }
    with fresh_database(Settings(), keep=args.keep_db) as (settings, db):
        t0 = time.perf_counter()
        ensure_ray(settings)
        result["ray_start_s"] = round(time.perf_counter() - t0, 1)
        ingest(settings, db, [fleet], progress=False)
        sessionize(settings, db, progress=False)
        sessions = load_sessions(db)
        result["sessions"] = n = len(sessions)
        print(f"{n:,} sessions from {fleet.name}", flush=True)
        for kind in ("ae", "lstm"):
            det = new_detector(kind, sessions, {"epochs": args.epochs})
            data = training_array(det, sessions)
            fit_in_process(det, data, epochs=1)  # warm-up, as Ray's timed epoch is a late one
            t0 = time.perf_counter()
            fit_in_process(det, data)
            local = (time.perf_counter() - t0) / args.epochs
            row = {
                "rows": len(data),
                "in_process_epoch_s": round(local, 3),
                "in_process_sessions_per_s": round(n / local),
            }
            for workers in (1, 2):
                det = new_detector(kind, sessions, {"epochs": args.epochs})
                t0 = time.perf_counter()
                _, m = fit(settings, det, data, n, workers, use_gpu=args.gpu)
                wall = time.perf_counter() - t0
                row[f"ray_{workers}w"] = {
                    "wall_s": round(wall, 1),
                    "epoch_s": round(m["epoch_seconds"], 3),
                    "sessions_per_s": round(m["sessions_per_s"]),
                    "fixed_cost_s": round(wall - m["epoch_seconds"] * args.epochs, 1),
                    "ratio_to_in_process": round(
                        m["sessions_per_s"] / row["in_process_sessions_per_s"], 2
                    ),
                }
            result[kind] = row
            print(kind, json.dumps(row), flush=True)

        train(settings, db, epochs=args.epochs, progress=False)
        models = {k: load(db, k) for k in ("lstm", "ae")}
        t0 = time.perf_counter()
        score_sessions(models, sessions)
        local = time.perf_counter() - t0
        t0 = time.perf_counter()
        summary = detect(settings, db, rescore=True, progress=False)
        pool = time.perf_counter() - t0
        result["detect"] = {
            "sessions": summary.scored,
            "in_process_sessions_per_s": round(n / local),
            "actor_pool_s": round(pool, 1),
            "actor_pool_sessions_per_s": round(summary.scored / pool),
            "ratio_to_in_process": round(local / pool, 2),
        }
        print("detect", json.dumps(result["detect"]), flush=True)
    out.mkdir(exist_ok=True)
    (out / "train.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
