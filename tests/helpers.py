"""Helpers the test modules share (fixtures are in conftest.py): where the repository and its
test data are, a query shortcut, synthetic boxes as logcat lines, tiny detectors trained in a
second with plain torch, and the comparison of stored sessions with a fleet's truth."""

from __future__ import annotations

import random
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
import torch

from logalyzer.core import autoencoder, lstm
from logalyzer.core.detectors import AEDetector, LSTMDetector, loss_fn, threshold_rule
from logalyzer.core.features import FEATURE_COLUMNS
from logalyzer.core.rawlines import sessions_from_lines
from logalyzer.store.registry import register
from logalyzer.store.sessions import SESSION_COLUMNS, write_event_keys, write_sessions

ROOT = Path(__file__).resolve().parent.parent
#: Public samples the tests read (their provenance: tests/data/README.md).
DATA = ROOT / "tests" / "data"

RX, RX2 = "R0000000001", "R0000000002"
T0 = datetime(2024, 3, 17, 8, 0, tzinfo=UTC).timestamp()

#: The ``sessions`` columns a truth session is compared on: all the job writes but its identity,
#: its times (compared in their own format), the derived rebuffer ratio and the summary JSON.
SESSION_MEASURES = tuple(
    c
    for c in SESSION_COLUMNS
    if c not in {"rxid", "session_id", "start_ts", "end_ts", "rebuffer_ratio", "summary"}
)


def query(dsn: str, q: str, params=()) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(q, params).fetchall()


def execute(dsn: str, q: str, params=()) -> None:
    """A statement that returns no rows, committed."""
    with psycopg.connect(dsn) as conn:
        conn.execute(q, params)


# --------------------------------------------------------------------------- synthetic boxes


def _line(t: float, etype: str, data: str) -> str:
    dt = datetime.fromtimestamp(t, UTC)
    return (
        f"{dt:%Y-%m-%d %H:%M:%S}.{int(t * 1000) % 1000:03d}Z  1200  1300 I VAR     : "
        f"PLAYER|fn|{etype}|{data}"
    )


def box_lines(
    rx: str, n: int, seed: int, storms: set[int] = frozenset(), t0: float = T0
) -> list[str]:
    """``n`` back-to-back sessions of one box as logcat lines; sessions in ``storms`` have a
    freeze storm and a black screen before their first frame (what both detectors should flag)."""
    r = random.Random(f"{rx}-{seed}")
    out, t, seq = [], t0, 0

    def emit(dt: float, etype: str, data: str = "") -> None:
        nonlocal t, seq
        t += dt
        seq += 1
        out.append(_line(t, etype, f"{data} seq={seq}".strip()))

    emit(0, "BootInfo", "model=X1 fw=1.0 app=2.0")
    for k in range(n):
        emit(5, "ChangeContent", f"cid=ch{r.randint(1, 40)} src=live")
        if k in storms:
            emit(1, "BlackScreen", "dur_ms=4000")
        emit(r.uniform(0.5, 1.5), "FirstFrame", f"ttff_ms={r.randint(600, 1400)}")
        for _ in range(r.randint(0, 2)):
            emit(r.uniform(60, 300), "BufferingStart")
            emit(r.uniform(1, 4), "BufferingEnd")
        if r.random() < 0.4:
            emit(r.uniform(30, 200), "TrickMode", "mode=PAUSE")
            emit(r.uniform(5, 60), "TrickMode", "mode=PLAY")
        if k in storms:
            for _ in range(25):
                emit(2, "VideoFreeze", "state=start")
                emit(3, "VideoFreeze", "state=end")
        emit(r.uniform(300, 1200), "DisplayDrop", f"dropped={r.randint(1, 3)}")
    return out


def fit(det, data: np.ndarray, epochs: int, batch: int = 256, seed: int = 0):
    torch.manual_seed(seed)
    model, loss = det.model.train(), loss_fn(det.kind)
    opt = torch.optim.Adam(model.parameters(), lr=det.cfg.lr)
    x = torch.from_numpy(data)
    for _ in range(epochs):
        for part in torch.split(x[torch.randperm(len(x))], batch):
            opt.zero_grad()
            loss(model, part).backward()
            opt.step()
    det.model.eval()
    return det


def train_models(db, seed: int = 0, busy: str | None = None) -> dict:
    """A tiny AE and LSTM from 120 ordinary sessions, registered; returns them by kind.
    ``busy``: also 30 sessions of that box, each with 15-25 display drops (its firmware's
    ordinary playback)."""
    sessions = []
    for b in range(4):
        rx = f"R{9_100_000_000 + b:010d}"
        sessions += [
            {**m, "event_keys": k} for m, k in sessions_from_lines(box_lines(rx, 30, seed + b), rx)
        ]
    if busy:
        r = random.Random(seed)
        for m, k in sessions_from_lines(box_lines(busy, 30, seed + 9), busy):
            n = r.randint(15, 25)
            sessions.append(
                {**m, "display_drop_count": n, "dropped_frames": 10 * n, "event_keys": k}
            )
    ae = AEDetector.new(replace(autoencoder.AEConfig(), epochs=40), sessions)
    fit(ae, ae.training_data(sessions), 40, batch=32, seed=seed)
    ae.threshold = threshold_rule(ae.scores(sessions))
    seqs = [s["event_keys"] for s in sessions]
    lm = LSTMDetector.new(replace(lstm.LSTMConfig(), hidden=32, layers=1, embed=8), seqs)
    fit(lm, lm.training_data(seqs), 4, seed=seed)
    lm.threshold = threshold_rule(lm.scores(seqs))
    for det in (ae, lm):
        register(db, det, {"test": True}, {"sessions": len(sessions)})
    return {"ae": ae, "lstm": lm}


def wait_ready(c, seconds: float = 30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        r = c.get("/readyz")
        if r.status_code == 200:
            return r
        time.sleep(0.1)
    raise AssertionError(r.json())


def measures_of(lines, rx=RX) -> list[dict]:
    return [
        {
            **{c: m[c] for c in FEATURE_COLUMNS},
            "rxid": rx,
            "session_id": m["session_id"],
            "event_keys": k,
        }
        for m, k in sessions_from_lines(lines, rx)
    ]


def store_sessions(dsn, rx, lines):
    """Write the sessions of ``lines`` into ``sessions`` as the batch job does."""
    found = sessions_from_lines(lines, rx)
    with psycopg.connect(dsn) as conn, conn.transaction():
        write_sessions(conn, rx, [m for m, _ in found])
        write_event_keys(conn, rx, [m for m, _ in found], [k for _, k in found])
    return found


# --------------------------------------------------------------------------- truth


def compare(truth_sessions: list[dict], got: dict) -> list[str]:
    """Differences between the truth's sessions and the stored ones (empty = exact match)."""
    got = dict(got)
    problems = []
    for t in truth_sessions:
        g = got.pop((t["rxid"], t["start_ts"]), None)
        if g is None:
            problems.append(f"missing {t['rxid']} {t['start_ts']} {t['edge_cases']}")
            continue
        diffs = {k: (t[k], g[k]) for k in SESSION_MEASURES if t[k] != g[k]}
        if t["end_ts"] != g["end"]:
            diffs["end_ts"] = (t["end_ts"], g["end"])
        if diffs:
            problems.append(f"{t['rxid']} {t['start_ts']} {t['edge_cases']}: {diffs}")
    problems += [f"extra {k}" for k in got]
    return problems
