"""The session tables in SQL: reading a device's VAR events, writing ``sessions``,
``session_events`` and ``devices``.

The session job (:mod:`logalyzer.jobs.sessionize`) decides what to analyse and runs the pure
core on it; everything it reads or writes goes through here, so the shape of the tables lives
in one place beside ``sql/0002_sessions.sql`` and ``sql/0007_session_events.sql``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from psycopg import sql
from psycopg.types.json import Jsonb

from logalyzer.core.sessions import SUMMARY_TYPES, Event
from logalyzer.store.db import Database, partition_name

LOCK_DEVICE = 7_301_003  # advisory lock key (with hashtext(rxid)), see lock_device
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: Columns of ``sessions`` written by the job, in COPY order (updated_at is the table's).
SESSION_COLUMNS = (
    "rxid",
    "session_id",
    "content_id",
    "source",
    "start_ts",
    "end_ts",
    "duration_s",
    "ttff_ms",
    "black_screen_count",
    "black_screen_ms",
    "video_freeze_count",
    "video_freeze_ms",
    "display_drop_count",
    "dropped_frames",
    "buffering_count",
    "rebuffer_ms",
    "rebuffer_ratio",
    "trick_mode_count",
    "hdmi_event_count",
    "hdmi_disconnects",
    "standby_count",
    "error_count",
    "fatal_error",
    "video_start_failure",
    "seq_gaps",
    "event_count",
    "model",
    "fw",
    "app",
    "summary",
)


def _int_key(key: str, present_zero: bool = True) -> sql.Composable:
    """``data->key`` as bigint: NULL when absent, 0 (``present_zero``, the reference's rule for
    measures) or NULL when present but not an integer. jsonb_typeof first: a regex on every
    row costs PostgreSQL a third more (measured on 100k events); the parser stores these keys
    as numbers, strings are rare."""
    k = sql.Literal(key)
    return sql.SQL(
        "CASE jsonb_typeof(data->{k}) WHEN 'number' THEN trunc((data->>{k})::numeric)::bigint"
        " WHEN 'string' THEN CASE WHEN (data->>{k}) ~ '^-?[0-9]{{1,18}}$'"
        " THEN (data->>{k})::bigint ELSE {bad} END"
        " WHEN 'null' THEN {bad} WHEN 'boolean' THEN {bad} WHEN 'object' THEN {bad}"
        " WHEN 'array' THEN {bad} END"
    ).format(k=k, bad=sql.SQL("0" if present_zero else "NULL"))


def events_query(rxid: str) -> sql.Composable:
    """The device's VAR events as :class:`~logalyzer.core.sessions.Event` columns, in order."""
    seq = _int_key("seq", present_zero=False)
    return sql.SQL(
        "SELECT (extract(epoch FROM ts) * 1000)::bigint, {seq}, event_type,"
        " lower(data->>'state'), {dur}, {ttff}, {dropped},"
        " data->>'connected', data->>'fatal', data->>'cid', data->>'src',"
        " CASE WHEN event_type = ANY({summary}) THEN data - 'seq' - 'sid' - 'mono' END"
        " FROM {part} WHERE event_type IS NOT NULL AND ts IS NOT NULL"
        " ORDER BY ts, 2 NULLS LAST"
    ).format(
        seq=seq,
        dur=_int_key("dur_ms"),
        ttff=_int_key("ttff_ms"),
        dropped=_int_key("dropped"),
        summary=sql.Literal(sorted(SUMMARY_TYPES)),
        part=sql.Identifier(partition_name(rxid)),
    )


def read_events(conn, rxid: str) -> list[Event]:
    """One device's VAR events, ordered by (ts, seq) by PostgreSQL."""
    with conn.cursor() as cur:
        cur.execute(events_query(rxid))
        return [Event._make(r) for r in cur]


def _ts(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _row(s: dict) -> tuple:
    s = dict(
        s,
        session_id=uuid.UUID(s["session_id"]),
        start_ts=_ts(s["start_ts"]),
        end_ts=_ts(s["end_ts"]),
        summary=Jsonb(s["summary"]),
    )
    return tuple(s[c] for c in SESSION_COLUMNS)


def lock_device(conn, rxid: str) -> None:
    """Hold the device's analyser lock until the transaction ends: one analyser per device."""
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_DEVICE, rxid))


def line_stats(conn, rxid: str) -> tuple:
    """(lines, first ts, last ts) of the device's partition."""
    part = sql.Identifier(partition_name(rxid))
    return conn.execute(
        sql.SQL("SELECT count(*), min(ts), max(ts) FROM {}").format(part)
    ).fetchone()


def write_device(
    conn, rxid: str, boot: dict, stats: tuple, events: int, sessions: int, signature: tuple
) -> None:
    """Upsert the device's ``devices`` row, with the ledger signature it was analysed at."""
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
        (
            rxid,
            boot.get("model"),
            boot.get("fw"),
            boot.get("app"),
            stats[1],
            stats[2],
            stats[0],
            events,
            sessions,
            *signature,
        ),
    )


def device_marks(db: Database, rxids: set[str] | None = None) -> list[tuple]:
    """Per device with done/partial files (of ``rxids``): (rxid, up to date?, latest
    finished_at), where up to date = its ledger signature equals its stored high-water mark."""
    with db.connect() as conn:
        return conn.execute(
            "SELECT f.rxid, count(*) = d.analysed_files AND sum(f.lines_loaded) ="
            " d.analysed_lines_loaded AND max(f.finished_at) IS NOT DISTINCT FROM"
            " d.analysed_through AS up_to_date, max(f.finished_at) AS latest"
            " FROM ingested_files f LEFT JOIN devices d ON d.rxid = f.rxid"
            " WHERE f.status IN ('done', 'partial') AND f.rxid IS NOT NULL"
            " AND (%(rx)s::text[] IS NULL OR f.rxid = ANY(%(rx)s::text[]))"
            " GROUP BY f.rxid, d.analysed_files, d.analysed_lines_loaded, d.analysed_through"
            " ORDER BY f.rxid",
            {"rx": sorted(rxids) if rxids is not None else None},
        ).fetchall()


def write_sessions(conn, rxid: str, rows: list[dict]) -> tuple[int, int, int]:
    """Upsert the device's rows through a temporary table; delete the ones that are gone.
    Returns (inserted, updated, deleted); an unchanged row is not rewritten."""
    cols = sql.SQL(", ").join(map(sql.Identifier, SESSION_COLUMNS))
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS stage_sessions"
        " (LIKE sessions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    with (
        conn.cursor() as cur,
        cur.copy(sql.SQL("COPY stage_sessions ({}) FROM STDIN").format(cols)) as cp,
    ):
        for r in rows:
            cp.write_row(_row(r))
    changed = [c for c in SESSION_COLUMNS if c not in ("rxid", "session_id")]
    sets = sql.SQL(", ").join(
        sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c)) for c in changed
    )
    old = sql.SQL(", ").join(sql.SQL("sessions.{}").format(sql.Identifier(c)) for c in changed)
    new = sql.SQL(", ").join(sql.SQL("excluded.{}").format(sql.Identifier(c)) for c in changed)
    flags = conn.execute(
        sql.SQL(
            "INSERT INTO sessions ({cols}) SELECT {cols} FROM stage_sessions"
            " ON CONFLICT (rxid, session_id) DO UPDATE SET {sets}, updated_at = now()"
            " WHERE ({old}) IS DISTINCT FROM ({new}) RETURNING xmax = 0"
        ).format(cols=cols, sets=sets, old=old, new=new)
    ).fetchall()
    inserted = sum(1 for (f,) in flags if f)
    deleted = conn.execute(
        "DELETE FROM sessions s WHERE s.rxid = %s AND NOT EXISTS"
        " (SELECT 1 FROM stage_sessions t WHERE t.session_id = s.session_id)",
        (rxid,),
    ).rowcount
    return inserted, len(flags) - inserted, deleted


def write_event_keys(conn, rxid: str, rows: list[dict], keys: list[list[str]]) -> None:
    """Replace the device's ``session_events`` (the detectors' input) with this analysis'."""
    conn.execute("DELETE FROM session_events WHERE rxid = %s", (rxid,))
    with (
        conn.cursor() as cur,
        cur.copy("COPY session_events (rxid, session_id, event_keys) FROM STDIN") as cp,
    ):
        for r, k in zip(rows, keys):
            cp.write_row((rxid, uuid.UUID(r["session_id"]), k))
