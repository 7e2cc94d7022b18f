"""The session job: VAR events of each device → ``sessions`` and ``devices``, in parallel on Ray.

One Ray task per device (per-device work is independent; a device's events fit in memory).
Each task reads its device's VAR events from the device's partition, ordered by (ts, seq),
with PostgreSQL extracting the few JSON keys the rules need (:mod:`logalyzer.store.sessions`);
cuts and measures them with the pure core (:mod:`logalyzer.core.sessions`); then, in one
transaction under a per-device advisory lock, upserts the rows by their deterministic id (a row
is rewritten only when a value changed), deletes the device's rows that the new analysis no
longer produces, and updates the device's row and high-water mark.

Incremental by the simplest correct approach: a device with new lines is recomputed whole
(deterministic ids make that idempotent, and it also handles lines that arrive out of order
in an older file). "New lines" = the device's ledger signature changed since its last
analysis: the number of its done/partial files, the sum of their ``lines_loaded`` and their
latest ``finished_at`` (the ledger row is closed after the file's lines are committed, so a
file still loading is picked up by the next run). ``full=True`` recomputes every device.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from datetime import datetime

import ray
from ray.util import metrics
from tqdm import tqdm

from logalyzer.core.features import event_keys
from logalyzer.core.files import is_valid_rxid
from logalyzer.core.sessions import DEFAULT_GAP_S, cut, measure
from logalyzer.errors import InvalidIdentifier
from logalyzer.jobs.rayutil import count, ensure_ray
from logalyzer.settings import Settings
from logalyzer.store import ledger
from logalyzer.store import sessions as store
from logalyzer.store.db import Database, connect

# --------------------------------------------------------------------------- one device


@dataclass
class DeviceResult:
    rxid: str
    events: int = 0
    sessions: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    read_s: float = 0.0
    compute_s: float = 0.0
    write_s: float = 0.0


def analyse_device(dsn: str, rxid: str, gap_s: float = DEFAULT_GAP_S) -> dict:
    """Recompute one device's sessions and its ``devices`` row; return a DeviceResult as dict.

    The ledger signature is read *before* the events, so lines committed meanwhile make the
    stored mark stale and the device is analysed again next time (never missed).
    """
    res = DeviceResult(rxid)
    with connect(dsn) as conn:
        t0 = time.perf_counter()
        sig = ledger.device_signature(conn, rxid)
        stats = store.line_stats(conn, rxid)
        events = store.read_events(conn, rxid)
        conn.commit()
        t1 = time.perf_counter()
        cuts = cut(events, gap_s)
        rows = [measure(s, rxid) for s in cuts]
        keys = [event_keys(s.events) for s in cuts]
        boot = next((e.detail for e in reversed(events) if e.etype == "BootInfo"), None) or {}
        t2 = time.perf_counter()
        res.events, res.sessions = len(events), len(rows)
        with conn.transaction():
            store.lock_device(conn, rxid)
            res.inserted, res.updated, res.deleted = store.write_sessions(conn, rxid, rows)
            store.write_event_keys(conn, rxid, rows, keys)
            store.write_device(conn, rxid, boot, stats, len(events), len(rows), sig)
        t3 = time.perf_counter()
    res.read_s, res.compute_s, res.write_s = t1 - t0, t2 - t1, t3 - t2
    return res.__dict__


# --------------------------------------------------------------------------- the job


@dataclass
class SessionizeSummary:
    devices: list[dict] = field(default_factory=list)  # DeviceResult dicts of analysed devices
    skipped: int = 0  # devices already up to date
    failed: dict[str, str] = field(default_factory=dict)  # rxid -> error (retried next run)
    seconds: float = 0.0

    def total(self, key: str) -> int:
        return sum(d[key] for d in self.devices)


def plan(
    db: Database, rxids: set[str] | None = None, since: datetime | None = None, full: bool = False
) -> tuple[list[str], int]:
    """The devices to analyse, and how many were skipped as up to date.

    Candidates are the devices with done/partial ledger files (restricted to ``rxids``; with
    ``since``, to those with a file finished at or after it, which are then re-analysed even
    if up to date). Without ``full`` or ``since``, a device is analysed when its ledger
    signature differs from its stored high-water mark.
    """
    bad = sorted(r for r in rxids or () if not is_valid_rxid(r))
    if bad:
        raise InvalidIdentifier(f"not RxIDs: {', '.join(bad[:5])}")
    rows = store.device_marks(db, rxids)
    if since is not None:
        rows = [r for r in rows if r[2] is not None and r[2] >= since]
        return [r[0] for r in rows], 0
    todo = [r[0] for r in rows if full or not r[1]]
    return todo, len(rows) - len(todo)


def _counters():
    """Ray dashboard counters (events read, sessions written), updated by the driver."""
    return (
        metrics.Counter("logalyzer_sessionize_events", "VAR events analysed"),
        metrics.Counter("logalyzer_sessionize_sessions", "sessions computed"),
    )


def sessionize(
    settings: Settings,
    db: Database,
    rxids: set[str] | None = None,
    since: datetime | None = None,
    full: bool = False,
    gap_s: float = DEFAULT_GAP_S,
    progress: bool | None = None,
) -> SessionizeSummary:
    """Analyse the planned devices in parallel on Ray (one task per device, at most two per
    CPU in flight). A device whose task fails is reported in ``failed`` and keeps its old
    high-water mark, so the next run tries it again."""
    t0 = time.perf_counter()
    todo, skipped = plan(db, rxids, since, full)
    summary = SessionizeSummary(skipped=skipped)
    if todo:
        ensure_ray(settings)
        task = ray.remote(num_cpus=1, max_retries=2)(analyse_device)
        limit = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        show = sys.stderr.isatty() if progress is None else progress
        events, sessions = _counters()
        pending: dict = {}
        queue = list(reversed(todo))
        with tqdm(
            total=len(todo), unit="dev", desc="sessionize", disable=not show, file=sys.stderr
        ) as bar:
            while queue or pending:
                while queue and len(pending) < limit:
                    rx = queue.pop()
                    pending[task.remote(db.dsn, rx, gap_s)] = rx
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    rx = pending.pop(ref)
                    try:
                        d = ray.get(ref)
                    except Exception as exc:  # one bad device must not stop the fleet
                        cause = getattr(exc, "cause", None) or exc
                        text = str(cause).strip().splitlines()
                        summary.failed[rx] = f"{type(cause).__name__}: {text[-1] if text else ''}"
                    else:
                        summary.devices.append(d)
                        count(events, d["events"])
                        count(sessions, d["sessions"])
                    bar.update(1)
                    bar.set_postfix(sessions=f"{summary.total('sessions'):,}", refresh=False)
    summary.seconds = time.perf_counter() - t0
    return summary
