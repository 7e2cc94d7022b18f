#!/usr/bin/env python3
"""Does the system-template signal find what the detectors miss? (issue 14)

After ``logalyzer eval synthetic --system-faults F`` (which also runs the templates step)
on an empty database, this treats the template rule of ``detect``'s reasons (the templates
step's verdicts, :func:`logalyzer.store.templates.mark_unusual`: a session with any unusual
system lines) as a detector, and prints P/R/F1 of: the stored combined verdict, the
autoencoder, the rule alone, and "verdict or rule", plus the system-fault kinds each finds.

    LOGALYZER_DSN=... .venv/bin/python bench/templates_signal.py DSN FLEET/ground_truth.json
"""

import json
import sys

import psycopg

dsn, truth = sys.argv[1], sys.argv[2]
t = json.load(open(truth))
lab = {(s["rxid"], s["start_ts"]): s["anomaly_kind"] for s in t["sessions"]}


def key(r, ts):
    return r, ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


with psycopg.connect(dsn) as conn:
    sess = conn.execute("SELECT rxid, session_id, start_ts FROM sessions").fetchall()
    comb = {
        (r, s)
        for r, s in conn.execute(
            "SELECT rxid, session_id FROM anomalies_consolidated WHERE is_anomaly"
        )
    }
    ae = {
        (r, s)
        for r, s in conn.execute(
            "SELECT rxid, session_id FROM anomalies WHERE detector='ae' AND is_anomaly"
        )
    }
    tpl = {
        (r, s)
        for r, s in conn.execute(
            "SELECT rxid, session_id FROM sessions WHERE system_unusual_lines > 0"
        )
    }
truthset = {(r, s) for r, s, ts in sess if lab.get(key(r, ts))}
kind = {(r, s): lab.get(key(r, ts)) for r, s, ts in sess}


def prf(pred):
    tp = len(pred & truthset)
    fp = len(pred - truthset)
    fn = len(truthset - pred)
    p = tp / (tp + fp) if tp + fp else 0
    rc = tp / (tp + fn) if tp + fn else 0
    f1 = 2 * p * rc / (p + rc) if p + rc else 0
    return f"P {p:.3f} R {rc:.3f} F1 {f1:.3f} (tp {tp} fp {fp} fn {fn})"


for name, pred in (
    ("combined", comb),
    ("ae", ae),
    ("template rule", tpl),
    ("combined OR template rule", comb | tpl),
    ("ae OR template rule", ae | tpl),
):
    print(f"{name:28}", prf(pred))
for k in ("anr_burst", "oom_kill", "hdcp_kernel"):
    ks = {x for x in truthset if kind[x] == k}
    print(
        k,
        len(ks),
        "combined",
        len(ks & comb),
        "template rule",
        len(ks & tpl),
        "either",
        len(ks & (comb | tpl)),
    )
