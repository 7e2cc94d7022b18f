"""The session job: VAR events of each device → ``sessions`` and ``devices``, in parallel on Ray.

One Ray task per device (per-device work is independent; a device's events fit in memory).
Each task reads its device's VAR events from the device's partition, ordered by (ts, seq),
with PostgreSQL extracting the few JSON keys the rules need; cuts and measures them with the
pure core (:mod:`logalyzer.sessions`); then, in one transaction under a per-device advisory
lock, upserts the rows by their deterministic id (a row is rewritten only when a value
changed), deletes the device's rows that the new analysis no longer produces, and updates the
device's row and high-water mark.

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
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from psycopg import sql
from psycopg.types.json import Jsonb

from .db import Database, partition_name
from .errors import InvalidIdentifier
from .files import is_valid_rxid
from .features import event_keys
from .sessions import DEFAULT_GAP_S, SUMMARY_TYPES, Event, cut, measure
from .settings import Settings

_LOCK_DEVICE = 7_301_003  # advisory lock key (with hashtext(rxid)): one analyser per device
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: Columns of ``sessions`` written by the job, in COPY order (updated_at is the table's).
SESSION_COLUMNS = (
    "rxid", "session_id", "content_id", "source", "start_ts", "end_ts", "duration_s", "ttff_ms",
    "black_screen_count", "black_screen_ms", "video_freeze_count", "video_freeze_ms",
    "display_drop_count", "dropped_frames", "buffering_count", "rebuffer_ms", "rebuffer_ratio",
    "trick_mode_count", "hdmi_event_count", "hdmi_disconnects", "standby_count", "error_count",
    "fatal_error", "video_start_failure", "seq_gaps", "event_count", "model", "fw", "app",
    "summary",
)


def _int_key(key: str, present_zero: bool = True) -> sql.Composable:
    """``data->key`` as bigint: NULL when absent, 0 (``present_zero``, the reference's rule for
    measures) or NULL when present but not an integer. jsonb_typeof first: a regex on every row costs PostgreSQL a third more
    (measured on 100k events); the parser stores these keys as numbers, strings are rare."""
    k = sql.Literal(key)
    return sql.SQL(
        "CASE jsonb_typeof(data->{k}) WHEN 'number' THEN trunc((data->>{k})::numeric)::bigint"
        " WHEN 'string' THEN CASE WHEN (data->>{k}) ~ '^-?[0-9]{{1,18}}$'"
        " THEN (data->>{k})::bigint ELSE {bad} END"
        " WHEN 'null' THEN {bad} WHEN 'boolean' THEN {bad} WHEN 'object' THEN {bad}"
        " WHEN 'array' THEN {bad} END").format(k=k, bad=sql.SQL("0" if present_zero else "NULL"))


def events_query(rxid: str) -> sql.Composable:
    """The device's VAR events as :class:`~logalyzer.sessions.Event` columns, in order."""
    seq = _int_key("seq", present_zero=False)
    return sql.SQL(
        "SELECT (extract(epoch FROM ts) * 1000)::bigint, {seq}, event_type,"
        " lower(data->>'state'), {dur}, {ttff}, {dropped},"
        " data->>'connected', data->>'fatal', data->>'cid', data->>'src',"
        " CASE WHEN event_type = ANY({summary}) THEN data - 'seq' - 'sid' - 'mono' END"
        " FROM {part} WHERE event_type IS NOT NULL AND ts IS NOT NULL"
        " ORDER BY ts, 2 NULLS LAST").format(
        seq=seq, dur=_int_key("dur_ms"), ttff=_int_key("ttff_ms"), dropped=_int_key("dropped"),
        summary=sql.Literal(sorted(SUMMARY_TYPES)), part=sql.Identifier(partition_name(rxid)))


def read_events(conn, rxid: str) -> list[Event]:
    """One device's VAR events, ordered by (ts, seq) by PostgreSQL."""
    with conn.cursor() as cur:
        cur.execute(events_query(rxid))
        return [Event._make(r) for r in cur]


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


def _ts(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _row(s: dict) -> tuple:
    s = dict(s, session_id=uuid.UUID(s["session_id"]), start_ts=_ts(s["start_ts"]),
             end_ts=_ts(s["end_ts"]), summary=Jsonb(s["summary"]))
    return tuple(s[c] for c in SESSION_COLUMNS)


def analyse_device(dsn: str, rxid: str, gap_s: float = DEFAULT_GAP_S) -> dict:
    """Recompute one device's sessions and its ``devices`` row; return a DeviceResult as dict.

    The ledger signature is read *before* the events, so lines committed meanwhile make the
    stored mark stale and the device is analysed again next time (never missed).
    """
    from .db import connect

    res = DeviceResult(rxid)
    with connect(dsn) as conn:
        t0 = time.perf_counter()
        sig = conn.execute(
            "SELECT count(*), coalesce(sum(lines_loaded), 0), max(finished_at) FROM ingested_files"
            " WHERE rxid = %s AND status IN ('done', 'partial')", (rxid,)).fetchone()
        part = sql.Identifier(partition_name(rxid))
        stats = conn.execute(sql.SQL("SELECT count(*), min(ts), max(ts) FROM {}").format(part)).fetchone()
        events = read_events(conn, rxid)
        conn.commit()
        t1 = time.perf_counter()
        cuts = cut(events, gap_s)
        rows = [measure(s, rxid) for s in cuts]
        keys = [event_keys(s.events) for s in cuts]
        boot = next((e.detail for e in reversed(events) if e.etype == "BootInfo"), None) or {}
        t2 = time.perf_counter()
        res.events, res.sessions = len(events), len(rows)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_DEVICE, rxid))
            res.inserted, res.updated, res.deleted = _write_sessions(conn, rxid, rows)
            _write_event_keys(conn, rxid, rows, keys)
            conn.execute(
                "INSERT INTO devices (rxid, model, fw, app, first_seen, last_seen, line_count,"
                " var_event_count, session_count, analysed_files, analysed_lines_loaded,"
                " analysed_through, analysed_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())"
                " ON CONFLICT (rxid) DO UPDATE SET model = excluded.model, fw = excluded.fw,"
                " app = excluded.app, first_seen = excluded.first_seen,"
                " last_seen = excluded.last_seen, line_count = excluded.line_count,"
                " var_event_count = excluded.var_event_count,"
                " session_count = excluded.session_count, analysed_files = excluded.analysed_files,"
                " analysed_lines_loaded = excluded.analysed_lines_loaded,"
                " analysed_through = excluded.analysed_through, analysed_at = now()",
                (rxid, boot.get("model"), boot.get("fw"), boot.get("app"), stats[1], stats[2],
                 stats[0], len(events), len(rows), sig[0], sig[1], sig[2]))
        t3 = time.perf_counter()
    res.read_s, res.compute_s, res.write_s = t1 - t0, t2 - t1, t3 - t2
    return res.__dict__


def _write_sessions(conn, rxid: str, rows: list[dict]) -> tuple[int, int, int]:
    """Upsert the device's rows through a temporary table; delete the ones that are gone.
    Returns (inserted, updated, deleted); an unchanged row is not rewritten."""
    cols = sql.SQL(", ").join(map(sql.Identifier, SESSION_COLUMNS))
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS stage_sessions"
                 " (LIKE sessions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
    with conn.cursor() as cur, cur.copy(
            sql.SQL("COPY stage_sessions ({}) FROM STDIN").format(cols)) as cp:
        for r in rows:
            cp.write_row(_row(r))
    changed = [c for c in SESSION_COLUMNS if c not in ("rxid", "session_id")]
    sets = sql.SQL(", ").join(
        sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c)) for c in changed)
    old = sql.SQL(", ").join(sql.SQL("sessions.{}").format(sql.Identifier(c)) for c in changed)
    new = sql.SQL(", ").join(sql.SQL("excluded.{}").format(sql.Identifier(c)) for c in changed)
    flags = conn.execute(sql.SQL(
        "INSERT INTO sessions ({cols}) SELECT {cols} FROM stage_sessions"
        " ON CONFLICT (rxid, session_id) DO UPDATE SET {sets}, updated_at = now()"
        " WHERE ({old}) IS DISTINCT FROM ({new}) RETURNING xmax = 0").format(
        cols=cols, sets=sets, old=old, new=new)).fetchall()
    inserted = sum(1 for (f,) in flags if f)
    deleted = conn.execute(
        "DELETE FROM sessions s WHERE s.rxid = %s AND NOT EXISTS"
        " (SELECT 1 FROM stage_sessions t WHERE t.session_id = s.session_id)", (rxid,)).rowcount
    return inserted, len(flags) - inserted, deleted


def _write_event_keys(conn, rxid: str, rows: list[dict], keys: list[list[str]]) -> None:
    """Replace the device's ``session_events`` (the detectors' input) with this analysis'."""
    conn.execute("DELETE FROM session_events WHERE rxid = %s", (rxid,))
    with conn.cursor() as cur, cur.copy(
            "COPY session_events (rxid, session_id, event_keys) FROM STDIN") as cp:
        for r, k in zip(rows, keys):
            cp.write_row((rxid, uuid.UUID(r["session_id"]), k))


# --------------------------------------------------------------------------- the job


@dataclass
class SessionizeSummary:
    devices: list[dict] = field(default_factory=list)   # DeviceResult dicts of analysed devices
    skipped: int = 0                                     # devices already up to date
    failed: dict[str, str] = field(default_factory=dict)  # rxid -> error (retried next run)
    seconds: float = 0.0

    def total(self, key: str) -> int:
        return sum(d[key] for d in self.devices)


def plan(db: Database, rxids: set[str] | None = None, since: datetime | None = None,
         full: bool = False) -> tuple[list[str], int]:
    """The devices to analyse, and how many were skipped as up to date.

    Candidates are the devices with done/partial ledger files (restricted to ``rxids``; with
    ``since``, to those with a file finished at or after it, which are then re-analysed even
    if up to date). Without ``full`` or ``since``, a device is analysed when its ledger
    signature differs from its stored high-water mark.
    """
    bad = sorted(r for r in rxids or () if not is_valid_rxid(r))
    if bad:
        raise InvalidIdentifier(f"not RxIDs: {', '.join(bad[:5])}")
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT f.rxid, count(*) = d.analysed_files AND sum(f.lines_loaded) ="
            " d.analysed_lines_loaded AND max(f.finished_at) IS NOT DISTINCT FROM"
            " d.analysed_through AS up_to_date, max(f.finished_at) AS latest"
            " FROM ingested_files f LEFT JOIN devices d ON d.rxid = f.rxid"
            " WHERE f.status IN ('done', 'partial') AND f.rxid IS NOT NULL"
            " AND (%(rx)s::text[] IS NULL OR f.rxid = ANY(%(rx)s::text[]))"
            " GROUP BY f.rxid, d.analysed_files, d.analysed_lines_loaded, d.analysed_through"
            " ORDER BY f.rxid", {"rx": sorted(rxids) if rxids is not None else None}).fetchall()
    if since is not None:
        rows = [r for r in rows if r[2] is not None and r[2] >= since]
        return [r[0] for r in rows], 0
    todo = [r[0] for r in rows if full or not r[1]]
    return todo, len(rows) - len(todo)


def _counters():
    """Ray dashboard counters (events read, sessions written), updated by the driver."""
    from ray.util import metrics

    return (metrics.Counter("logalyzer_sessionize_events", "VAR events analysed"),
            metrics.Counter("logalyzer_sessionize_sessions", "sessions computed"))


def sessionize(settings: Settings, db: Database, rxids: set[str] | None = None,
               since: datetime | None = None, full: bool = False, gap_s: float = DEFAULT_GAP_S,
               progress: bool | None = None) -> SessionizeSummary:
    """Analyse the planned devices in parallel on Ray (one task per device, at most two per
    CPU in flight). A device whose task fails is reported in ``failed`` and keeps its old
    high-water mark, so the next run tries it again."""
    import ray
    from tqdm import tqdm

    from .rayutil import ensure_ray

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
        with tqdm(total=len(todo), unit="dev", desc="sessionize", disable=not show,
                  file=sys.stderr) as bar:
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
                        events.inc(d["events"])
                        sessions.inc(d["sessions"])
                    bar.update(1)
                    bar.set_postfix(sessions=f"{summary.total('sessions'):,}", refresh=False)
    summary.seconds = time.perf_counter() - t0
    return summary


def fleet_overview(db: Database, worst: int = 3) -> dict:
    """A few lines' worth of fleet QoE from the views: totals, rates per viewing hour, and the
    devices with the most incidents (black screens + freezes + display drops) per viewing hour."""
    with db.connect() as conn:
        tot = conn.execute(
            "SELECT count(DISTINCT rxid), count(*), coalesce(sum(duration_s), 0) / 3600.0,"
            " coalesce(sum(black_screen_count), 0), coalesce(sum(video_freeze_count), 0),"
            " coalesce(sum(display_drop_count), 0),"
            " least(sum(rebuffer_ms) / nullif(sum(greatest(duration_s * 1000, rebuffer_ms)), 0), 1.0),"
            " avg(video_start_failure::int) FILTER (WHERE content_id IS NOT NULL),"
            " coalesce(sum(hdmi_disconnects), 0) FROM sessions").fetchone()
        bad = conn.execute(
            "SELECT rxid, model, fw, sessions, viewing_hours, coalesce(black_screens_per_hour, 0)"
            " + coalesce(freezes_per_hour, 0) + coalesce(display_drops_per_hour, 0) AS rate"
            " FROM qoe_device WHERE viewing_hours > 0 ORDER BY rate DESC, rxid LIMIT %s",
            (worst,)).fetchall()
    devices, sessions, hours, black, freeze, drops, ratio, vsf, hdmi = tot
    per_h = (lambda n: float(n) / hours if hours else 0.0)
    return {"devices": devices, "sessions": sessions, "viewing_hours": float(hours),
            "black_screens_per_hour": per_h(black), "freezes_per_hour": per_h(freeze),
            "display_drops_per_hour": per_h(drops),
            "rebuffer_ratio": float(ratio) if ratio is not None else None,
            "video_start_failure_rate": float(vsf) if vsf is not None else None,
            "hdmi_disconnects": int(hdmi),
            "worst": [{"rxid": r[0], "model": r[1], "fw": r[2], "sessions": r[3],
                       "viewing_hours": float(r[4]), "incidents_per_hour": float(r[5])} for r in bad]}
