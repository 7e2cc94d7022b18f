#!/usr/bin/env python3
"""Session-analysis benchmark: sessions/s and events/s, and its time as a fraction of the
same fleet's ingest time, from one run.

Why: the issue's target is that `logalyzer sessionize --full` costs under 25 % of the ingest
of the same data; the only fair comparison is both measured on one machine, one server, one
fleet, in one run. Steps: generate (or reuse) the fleet, create a fresh database, start Ray
(timed apart, both jobs then run warm), ingest (timed), sessionize --full (timed), check
the sessions against the generator's ground truth, drop the database. It also times the pure
core alone on one device with 100k events, and where a device's time goes (read / compute /
write), to show which part to push into PostgreSQL or Arrow.

    .venv/bin/python bench/sessionize.py [--hours 4] [--devices 10] [--keep-db]

Uses LOGALYZER_DSN when set, else the embedded PostgreSQL. Results go to
bench/out/sessionize.json.
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

TARGET_FRACTION = 0.25


def core_100k() -> dict:
    """The pure core on one device with 100k events (a realistic session pattern repeated)."""
    from logalyzer.core.sessions import Event, sessionize

    pattern = [
        ("ChangeContent", {"cid": "ch1", "src": "live"}),
        ("FirstFrame", {"ttff_ms": 900}),
        ("BufferingStart", {}),
        ("BufferingEnd", {"dur_ms": 500}),
        ("DisplayDrop", {"dropped": 3}),
        ("BlackScreen", {"state": "start"}),
        ("BlackScreen", {"state": "end", "dur_ms": 300}),
        ("TrickMode", {}),
        ("HdmiHotplug", {"connected": "false"}),
        ("ResolutionChange", {}),
    ]
    events, t = [], 1_710_662_400_000
    for i in range(100_000):
        etype, kw = pattern[i % len(pattern)]
        t += 7_000
        extra = {"detail": {"mode": "PAUSE"}} if etype in ("TrickMode", "HdmiHotplug") else {}
        events.append(Event(t, i, etype, **kw, **extra))
    t0 = time.perf_counter()
    rows = sessionize("R0000000001", events, ordered=True)
    secs = time.perf_counter() - t0
    return {
        "events": len(events),
        "sessions": len(rows),
        "seconds": round(secs, 3),
        "events_per_s": round(len(events) / secs),
    }


#: Sessions whose drill-down (`session_lines`) is timed, spread over the fleet.
DRILLDOWN_SESSIONS = 100


def read_side(conn) -> dict:
    """Times of what reads the lines back: the drill-down of :data:`DRILLDOWN_SESSIONS`
    sessions (every line of each, as the Superset chart asks), and the QoE views whole."""
    picks = conn.execute(
        "SELECT rxid, session_id FROM sessions ORDER BY md5(session_id::text) LIMIT %s",
        (DRILLDOWN_SESSIONS,),
    ).fetchall()
    t0 = time.perf_counter()
    lines = sum(
        conn.execute("SELECT count(*) FROM session_lines(%s, %s)", pick).fetchone()[0]
        for pick in picks
    )
    drill = time.perf_counter() - t0
    times = {}
    for view in ("qoe_daily", "qoe_device"):
        t0 = time.perf_counter()
        conn.execute(f"SELECT * FROM {view}").fetchall()
        times[f"{view}_s"] = round(time.perf_counter() - t0, 3)
    return {
        "drilldown_sessions": len(picks),
        "drilldown_lines": lines,
        "drilldown_s": round(drill, 3),
        **times,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=4.0, help="hours of logs per device")
    ap.add_argument("--devices", type=int, default=10, help="devices in the fleet")
    ap.add_argument("--noise", type=int, default=700, help="non-VAR lines per device-minute")
    ap.add_argument("--keep-db", action="store_true", help="keep the benchmark database")
    ap.add_argument(
        "--home", type=Path, default=None, help="LOGALYZER_HOME for the embedded server"
    )
    args = ap.parse_args(argv)

    from _common import fresh_database

    from logalyzer.core.synth import FleetSpec, generate_fleet
    from logalyzer.jobs.ingest import ingest
    from logalyzer.jobs.rayutil import ensure_ray
    from logalyzer.jobs.sessionize import sessionize
    from logalyzer.settings import Settings

    out = HERE / "out"
    fleet = out / f"fleet-d{args.devices}-h{args.hours:g}-s1-n{args.noise}"
    if not (fleet / "ground_truth.json").exists():
        print(f"generating {fleet} ...", flush=True)
        generate_fleet(
            fleet,
            FleetSpec(
                devices=args.devices, hours=args.hours, seed=1, noise_lines_per_minute=args.noise
            ),
        )
    truth = json.loads((fleet / "ground_truth.json").read_text())

    base_settings = Settings(**({"home": args.home} if args.home else {}))
    result: dict = {
        "fleet": fleet.name,
        "lines": truth["totals"]["lines"],
        "var_events": truth["totals"]["var_events"],
        "truth_sessions": len(truth["sessions"]),
        "cpus": os.cpu_count(),
    }
    with fresh_database(base_settings, keep=args.keep_db) as (settings, db):
        t0 = time.perf_counter()
        ensure_ray(settings)
        result["ray_start_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        ingest(settings, db, [fleet], progress=False)
        result["ingest_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        summary = sessionize(settings, db, full=True, progress=False)
        secs = time.perf_counter() - t0
        with db.connect() as conn:
            stored = conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
            reads = read_side(conn)
        result.update(
            sessionize_s=round(secs, 2),
            sessions=summary.total("sessions"),
            events=summary.total("events"),
            sessions_per_s=round(summary.total("sessions") / secs, 1),
            events_per_s=round(summary.total("events") / secs),
            fraction_of_ingest=round(secs / result["ingest_s"], 3),
            device_read_s=round(sum(d["read_s"] for d in summary.devices), 2),
            device_compute_s=round(sum(d["compute_s"] for d in summary.devices), 3),
            device_write_s=round(sum(d["write_s"] for d in summary.devices), 2),
            sessions_match_truth_count=stored == len(truth["sessions"]),
            **reads,
        )
    result["core_100k_events"] = core_100k()

    f = result["fraction_of_ingest"]
    print(f"fleet {fleet.name}: {result['lines']:,} lines, {result['var_events']:,} VAR events")
    print(
        f"ingest (warm Ray): {result['ingest_s']:.1f} s;  "
        f"Ray start-up {result['ray_start_s']:.1f} s (not counted)"
    )
    print(
        f"sessionize --full: {result['sessionize_s']:.2f} s: {result['sessions']:,} sessions "
        f"({result['sessions_per_s']:,.0f}/s), "
        f"{result['events']:,} events ({result['events_per_s']:,}/s)"
    )
    print(
        f"  summed over devices: read {result['device_read_s']} s, compute "
        f"{result['device_compute_s']} s, write {result['device_write_s']} s"
    )
    print(f"  sessions stored = truth: {result['sessions_match_truth_count']}")
    print(
        f"drill-down: session_lines() of {result['drilldown_sessions']} sessions"
        f" {result['drilldown_s']:.2f} s ({result['drilldown_lines']:,} lines);"
        f" SELECT * FROM qoe_daily {result['qoe_daily_s']:.3f} s,"
        f" qoe_device {result['qoe_device_s']:.3f} s"
    )
    c = result["core_100k_events"]
    print(
        f"pure core, one device with 100k events: {c['seconds']} s "
        f"({c['events_per_s']:,} events/s, "
        f"{c['sessions']:,} sessions)"
    )
    print(
        f"fraction of ingest time: {f:.1%} (target < {TARGET_FRACTION:.0%}): "
        f"{'PASS' if f < TARGET_FRACTION else 'MISS'}"
    )
    out.mkdir(exist_ok=True)
    (out / "sessionize.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
