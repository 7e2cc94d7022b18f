"""Evaluation of the fleet alerts (``logalyzer eval alerts``): does one firmware that regresses
on one day raise exactly that alert, and a fleet without a regression none?

For each seed two fleets are generated with the same devices, sessions and noise, pinned
firmwares (``FleetSpec.firmwares_per_model``: a firmware is a cohort of several boxes with a
history of its own): one where a firmware, drawn by the seed among those of two boxes or more,
has ``factor`` times the usual rate of video freezes on the fleet's last full UTC day
(``FleetSpec.regression``), and its control without. Each goes through the real ingest and
sessionize into a scratch database of its own (created on the server of LOGALYZER_DSN and
dropped afterwards), then the alerts check over every day window. The only expected alert is
(fw, that firmware, freezes_per_hour, that day): any other alert of either fleet is a false
positive, a missing one a false negative.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from logalyzer.core.synth import FleetSpec, generate_fleet
from logalyzer.core.synth.fleet import firmware_boxes
from logalyzer.errors import LogalyzerError
from logalyzer.jobs.alerts import check_alerts
from logalyzer.jobs.pipeline import run_pipeline
from logalyzer.settings import Settings
from logalyzer.store.alerts import list_alerts
from logalyzer.store.db import Database, scratch_database

MEASURE = "freezes_per_hour"  # what the generator's regression changes (synth/regression.py)


def fleet_spec(seed: int, devices: int, days: int, anomaly_rate: float) -> FleetSpec:
    return FleetSpec(
        devices=devices,
        hours=24.0 * days,
        seed=seed,
        anomaly_rate=anomaly_rate,
        noise_lines_per_minute=1,  # the alerts read sessions only: keep the ingest short
        firmwares_per_model=2,
    )


def pick_regression(spec: FleetSpec, factor: float) -> tuple[str, int, datetime]:
    """(firmware, day index, day start): a firmware of at least two boxes, drawn by the seed,
    on the fleet's last full UTC day."""
    boxes = firmware_boxes(spec)
    shared = sorted(fw for fw, n in boxes.items() if n >= 2)
    if not shared:
        raise LogalyzerError(
            "no firmware runs on two boxes", hint="give the fleet more devices (--devices)"
        )
    fw = random.Random(f"{spec.seed}:regression").choice(shared)
    start = spec.start.astimezone(UTC)
    end = start + timedelta(hours=spec.hours)
    last_full = end.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    day0 = start.replace(hour=0, minute=0, second=0, microsecond=0)
    return fw, (last_full - day0).days, last_full


def _alerts_of(settings: Settings, db: Database, folder: Path, since: datetime, progress):
    run_pipeline(settings, db, [str(folder)], ["ingest", "sessionize"], progress=progress)
    check_alerts(settings, db, grain="day", since=since, notify=False)
    return {
        (a["cohort_kind"], a["cohort"], a["measure"], a["window_start"].astimezone(UTC))
        for a in list_alerts(db, grain="day")
    }


def run_alerts_eval(
    settings: Settings,
    db: Database,
    out_dir: Path,
    seeds: int = 3,
    first_seed: int = 0,
    devices: int = 32,
    days: int = 5,
    anomaly_rate: float = 0.0,
    factor: float = 4.0,
    progress: bool | None = None,
) -> dict:
    """Precision and recall of the alerts per seed and overall (module docstring)."""
    if days < 5:
        raise LogalyzerError("need at least 5 days", hint="3 baseline days, the regression day")
    settings = settings.model_copy(update={"alert_webhook": None})
    runs, t0 = [], time.perf_counter()
    for seed in range(first_seed, first_seed + seeds):
        spec = fleet_spec(seed, devices, days, anomaly_rate)
        fw, day, day_start = pick_regression(spec, factor)
        expected = {("fw", fw, MEASURE, day_start)}
        found = {}
        for variant in ("regression", "control"):
            spec.regression = f"{fw}@{day}x{factor:g}" if variant == "regression" else None
            folder = out_dir / f"seed-{seed}-{variant}"
            generate_fleet(folder, spec)
            with scratch_database(db.dsn, "logalyzer_eval_alerts") as scratch:
                local = settings.model_copy(update={"dsn": scratch.dsn})
                found[variant] = _alerts_of(local, scratch, folder, spec.start, progress)
        tp = len(found["regression"] & expected)
        fp = len(found["regression"] - expected) + len(found["control"])
        fn = len(expected - found["regression"])
        runs.append(
            {
                "seed": seed,
                "firmware": fw,
                "boxes": firmware_boxes(spec)[fw],
                "day": day_start.date().isoformat(),
                "tp": tp,
                "fp": fp,
                "fn": fn,
                "precision": tp / (tp + fp) if tp + fp else 1.0,
                "recall": tp / (tp + fn) if tp + fn else 1.0,
                "false_alerts": sorted(
                    f"{k} {c} {m} {w.date()}"
                    for k, c, m, w in (found["regression"] - expected) | found["control"]
                ),
            }
        )
    tp, fp, fn = (sum(r[k] for r in runs) for k in ("tp", "fp", "fn"))
    return {
        "spec": {
            "devices": devices,
            "days": days,
            "anomaly_rate": anomaly_rate,
            "factor": factor,
            "firmwares_per_model": 2,
        },
        "runs": runs,
        "mean_precision": round(float(np.mean([r["precision"] for r in runs])), 4),
        "mean_recall": round(float(np.mean([r["recall"] for r in runs])), 4),
        "pooled": {
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "precision": tp / (tp + fp) if tp + fp else 1.0,
            "recall": tp / (tp + fn) if tp + fn else 1.0,
        },
        "seconds": round(time.perf_counter() - t0, 1),
    }
