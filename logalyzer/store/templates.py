"""The template tables in SQL (``sql/0015_templates.sql``): Drain3 miner state, templates,
``session_templates``, the step's high-water mark, and the template reasons of anomalies.

:class:`PgPersistence` is a Drain3 ``PersistenceHandler`` whose state is one row of
``template_miners`` (keyed by cohort): ``TemplateMiner(persistence_handler=PgPersistence(...))``
restores the miner from it, and ``save_state`` writes it back in the caller's transaction.
"""

from __future__ import annotations

import uuid
from collections import defaultdict

from drain3.persistence_handler import PersistenceHandler
from psycopg import sql

from logalyzer.core import templates as core
from logalyzer.store.db import Database, partition_name

LOCK_TEMPLATES = 7_301_015  # advisory lock key: one templates run at a time


class PgPersistence(PersistenceHandler):
    """Drain3 state in ``template_miners.state`` for one cohort, on an open connection."""

    def __init__(self, conn, cohort: str):
        self.conn = conn
        self.cohort = cohort
        self.lines_mined: int | None = None  # set before save_state to record it

    def save_state(self, state) -> None:
        self.conn.execute(
            "INSERT INTO template_miners (cohort, state, lines_mined) VALUES (%s, %s,"
            " coalesce(%s, 0)) ON CONFLICT (cohort) DO UPDATE SET state = excluded.state,"
            " lines_mined = coalesce(%s, template_miners.lines_mined), updated_at = now()",
            (self.cohort, bytes(state), self.lines_mined, self.lines_mined),
        )

    def load_state(self):
        row = self.conn.execute(
            "SELECT state FROM template_miners WHERE cohort = %s", (self.cohort,)
        ).fetchone()
        return bytes(row[0]) if row and row[0] else None  # an empty state is no state


# --------------------------------------------------------------------------- cohorts


def cohort_of(model: str | None, fw: str | None) -> str:
    return f"{model or '?'}/{fw or '?'}"


def device_cohorts(db: Database, rxids: set[str] | None = None) -> dict[str, str]:
    """rxid -> cohort of every analysed device (of ``rxids``)."""
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT rxid, model, fw FROM devices"
            " WHERE %(rx)s::text[] IS NULL OR rxid = ANY(%(rx)s::text[]) ORDER BY rxid",
            {"rx": sorted(rxids) if rxids is not None else None},
        ).fetchall()
    return {r[0]: cohort_of(r[1], r[2]) for r in rows}


def mined_cohorts(db: Database) -> set[str]:
    with db.connect() as conn:
        return {r[0] for r in conn.execute("SELECT cohort FROM template_miners")}


def forget_cohort(conn, cohort: str) -> None:
    """Drop a cohort's miner, its templates and their counts (before mining it again); its
    devices are recounted."""
    conn.execute("DELETE FROM template_miners WHERE cohort = %s", (cohort,))
    conn.execute("DELETE FROM template_devices WHERE cohort = %s", (cohort,))


def stale_devices(db: Database, rxids: set[str] | None = None, full: bool = False) -> list[str]:
    """Analysed devices (of ``rxids``) whose counts are missing or older than their sessions."""
    with db.connect() as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT d.rxid FROM devices d LEFT JOIN template_devices t USING (rxid)"
                " WHERE (%(rx)s::text[] IS NULL OR d.rxid = ANY(%(rx)s::text[]))"
                " AND (%(full)s OR t.rxid IS NULL"
                " OR t.sessions_analysed_at IS DISTINCT FROM d.analysed_at)"
                " ORDER BY d.rxid",
                {"rx": sorted(rxids) if rxids is not None else None, "full": full},
            )
        ]


# --------------------------------------------------------------------------- reading lines

_SYSTEM = sql.SQL("l.category IS NULL AND l.status <> 'unparsed'")


def sample_lines(conn, rxids: list[str], per_device: int, seed: int = 0) -> list[tuple]:
    """About ``per_device`` random non-VAR (tag, message) lines from each device's partition
    (``TABLESAMPLE SYSTEM``: whole pages, so cheap; REPEATABLE, so the same sample twice)."""
    out: list[tuple] = []
    for rx in rxids:
        part = sql.Identifier(partition_name(rx))
        n = conn.execute("SELECT line_count FROM devices WHERE rxid = %s", (rx,)).fetchone()
        total = max(1, int(n[0]) if n and n[0] else 1)
        pct = min(100.0, 100.0 * per_device * 1.2 / total)
        out += conn.execute(
            sql.SQL(
                "SELECT l.tag, l.message FROM {part} l TABLESAMPLE SYSTEM (%s) REPEATABLE (%s)"
                " WHERE {system} LIMIT %s"
            ).format(part=part, system=_SYSTEM),
            (pct, seed, per_device),
        ).fetchall()
    return out


def read_session_lines(conn, rxid: str):
    """(session_id, tag, message) of the device's non-VAR lines within each of its sessions'
    windows (start_ts..end_ts, ends included), by session: one range scan per session through
    the partition's BRIN index on ts."""
    cur = conn.cursor(name="session_lines")  # server-side: memory stays flat
    cur.itersize = 20_000
    return cur.execute(
        sql.SQL(
            "SELECT s.session_id, l.tag, l.message FROM sessions s"
            " CROSS JOIN LATERAL (SELECT l.tag, l.message FROM {part} l"
            "   WHERE l.ts BETWEEN s.start_ts AND s.end_ts AND {system}) l"
            " WHERE s.rxid = %s ORDER BY s.session_id"
        ).format(part=sql.Identifier(partition_name(rxid)), system=_SYSTEM),
        (rxid,),
    )


def session_marks(conn, rxid: str) -> tuple:
    """(model, fw, analysed_at) of the device: its cohort and the sessions' version."""
    return conn.execute(
        "SELECT model, fw, analysed_at FROM devices WHERE rxid = %s", (rxid,)
    ).fetchone() or (None, None, None)


# --------------------------------------------------------------------------- writing


def save_templates(conn, cohort: str, found: list[core.Template], examples: dict[int, str]):
    """Upsert the cohort's templates; return cluster id -> template_id."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO templates (cohort, cluster_id, template, example, size)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (cohort, cluster_id) DO UPDATE SET"
            " template = excluded.template, size = excluded.size, updated_at = now()"
            " WHERE (templates.template, templates.size)"
            " IS DISTINCT FROM (excluded.template, excluded.size)",
            [(cohort, t.cluster_id, t.text, examples.get(t.cluster_id), t.size) for t in found],
        )
    return dict(
        conn.execute(
            "SELECT cluster_id, template_id FROM templates WHERE cohort = %s", (cohort,)
        ).fetchall()
    )


def write_counts(
    conn,
    rxid: str,
    cohort: str,
    counts: dict[str, dict[int, int]],
    analysed_at,
    lines: int,
    unmatched: int,
) -> int:
    """Replace the device's ``session_templates`` (session id -> template_id -> count) and its
    mark; return the rows written."""
    conn.execute("DELETE FROM session_templates WHERE rxid = %s", (rxid,))
    n = 0
    with (
        conn.cursor() as cur,
        cur.copy("COPY session_templates (rxid, session_id, template_id, count) FROM STDIN") as cp,
    ):
        for sid, by_tpl in counts.items():
            u = uuid.UUID(str(sid))
            for tid, c in by_tpl.items():
                cp.write_row((rxid, u, tid, c))
                n += 1
    conn.execute(
        "INSERT INTO template_devices (rxid, cohort, sessions_analysed_at, lines, unmatched)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (rxid) DO UPDATE SET cohort = excluded.cohort,"
        " sessions_analysed_at = excluded.sessions_analysed_at, lines = excluded.lines,"
        " unmatched = excluded.unmatched, applied_at = now()",
        (rxid, cohort, analysed_at, lines, unmatched),
    )
    return n


def lock(conn) -> bool:
    """Try the templates run's session-level lock (held until the connection closes)."""
    return conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_TEMPLATES,)).fetchone()[0]


# --------------------------------------------------------------------------- unusual templates


def mark_unusual(conn, cohorts: list[str]) -> int:
    """Judge every count of these cohorts' sessions against its box's and its cohort's normal
    (rule: :func:`core.unusual`; rates per viewing hour over the *other* sessions, each counting
    up to ``MIN_COUNT - 1`` lines of the template) and store the verdicts:
    ``session_templates.unusual_p`` and ``sessions.system_unusual_lines`` (the lines of the
    session's templates unusual even at ``core.FEATURE_MAX_P``, a feature of the autoencoder).
    A session whose value changes
    gets a new ``updated_at``, so ``detect`` scores it again. Returns the sessions changed.

    Once per templates run, for the cohorts it counted: a new device's lines move its cohort's
    normal, and with it every other session's verdict."""
    if not cohorts:
        return 0
    cap = core.MIN_COUNT - 1  # winsorized: see core.MIN_COUNT
    rows = conn.execute(
        "WITH s AS (SELECT s.rxid, s.session_id, s.duration_s / 3600.0 AS hours, d.cohort"
        "  FROM sessions s JOIN template_devices d USING (rxid) WHERE d.cohort = ANY(%(c)s)),"
        " box_h AS (SELECT rxid, sum(hours) AS h FROM s GROUP BY 1),"
        " cohort_h AS (SELECT cohort, sum(hours) AS h, count(*) AS n FROM s GROUP BY 1),"
        " st AS (SELECT st.*, s.hours, s.cohort FROM session_templates st JOIN s"
        "  USING (rxid, session_id)),"
        " box_n AS (SELECT rxid, template_id, sum(least(count, %(cap)s)) AS n FROM st"
        "  GROUP BY 1, 2),"
        " tpl_n AS (SELECT template_id, sum(least(count, %(cap)s)) AS n,"
        "  count(*) FILTER (WHERE count >= %(min)s) AS bursts FROM st GROUP BY 1)"
        " SELECT st.rxid, st.session_id, st.template_id, st.count, st.hours,"
        "  box_n.n, box_h.h, tpl_n.n, tpl_n.bursts, cohort_h.h, cohort_h.n"
        " FROM st JOIN box_n USING (rxid, template_id) JOIN box_h USING (rxid)"
        " JOIN tpl_n USING (template_id) JOIN cohort_h USING (cohort)"
        " WHERE st.count >= %(min)s",
        {"c": cohorts, "cap": cap, "min": core.MIN_COUNT},
    ).fetchall()
    marks, lines = [], defaultdict(int)
    for rxid, sid, tid, n, hours, box_n, box_h, tpl_n, bursts, c_hours, c_sessions in rows:
        hours, own = float(hours), min(n, cap)
        other_box_h = max(float(box_h) - hours, 0.0)
        other_cohort_h = max(float(c_hours) - hours, 0.0)
        box_rate = (int(box_n) - own) / other_box_h if other_box_h else 0.0
        cohort_rate = (int(tpl_n) - own) / other_cohort_h if other_cohort_h else 0.0
        burst_share = (int(bursts) - 1) / (int(c_sessions) - 1) if c_sessions > 1 else 0.0
        u = core.unusual(tid, "", n, hours, box_rate, cohort_rate, burst_share)
        if u is not None:
            marks.append((rxid, sid, tid, u.p, u.usual))
            if u.p < core.FEATURE_MAX_P:  # the feature: only the far-from-chance ones
                lines[(rxid, sid)] += n
    with conn.transaction():
        conn.execute(
            "UPDATE session_templates st SET unusual_p = NULL, usual = NULL"
            " FROM template_devices d"
            " WHERE d.rxid = st.rxid AND d.cohort = ANY(%s) AND st.unusual_p IS NOT NULL",
            (cohorts,),
        )
        with conn.cursor() as cur:
            cur.executemany(
                "UPDATE session_templates SET unusual_p = %s, usual = %s"
                " WHERE rxid = %s AND session_id = %s AND template_id = %s",
                [(p, e, r, s, t) for r, s, t, p, e in marks],
            )
        changed = conn.execute(
            "WITH n AS (SELECT * FROM unnest(%s::text[], %s::uuid[], %s::int[])"
            "  AS n(rxid, session_id, lines)),"
            " t AS (SELECT s.rxid, s.session_id, coalesce(n.lines, 0) AS lines FROM sessions s"
            "  JOIN template_devices d USING (rxid) LEFT JOIN n USING (rxid, session_id)"
            "  WHERE d.cohort = ANY(%s))"
            " UPDATE sessions s SET system_unusual_lines = t.lines, updated_at = now() FROM t"
            " WHERE s.rxid = t.rxid AND s.session_id = t.session_id"
            " AND s.system_unusual_lines <> t.lines",
            ([r for r, _ in lines], [s for _, s in lines], list(lines.values()), cohorts),
        ).rowcount
        conn.execute(
            "UPDATE template_miners SET judged_at = now() WHERE cohort = ANY(%s)", (cohorts,)
        )
    return changed


def unjudged_cohorts(conn) -> set[str]:
    """Cohorts whose counts were never judged (mined before sql/0016, or never counted)."""
    return {
        r[0] for r in conn.execute("SELECT cohort FROM template_miners WHERE judged_at IS NULL")
    }


def unusual_templates(conn, ids: list[tuple[str, str]]) -> dict[tuple[str, str], list[dict]]:
    """(rxid, session id text) -> the reasons of its unusual system templates (the most
    surprising first, at most ``core.MAX_REASONS``), for the sessions of ``ids`` that have any."""
    if not ids:
        return {}
    rows = conn.execute(
        "SELECT st.rxid, st.session_id::text, st.template_id, t.template, st.count,"
        " st.usual, st.unusual_p FROM unnest(%s::text[], %s::uuid[]) AS i(rxid, session_id)"
        " JOIN session_templates st USING (rxid, session_id)"
        " JOIN templates t USING (template_id) WHERE st.unusual_p IS NOT NULL",
        ([r for r, _ in ids], [str(s) for _, s in ids]),
    ).fetchall()
    found: dict[tuple[str, str], list[core.Unusual]] = defaultdict(list)
    for rxid, sid, tid, text, n, usual, p in rows:
        found[(rxid, sid)].append(core.Unusual(tid, text, n, usual, p))
    return {k: [u.as_reason() for u in core.rank(us)] for k, us in found.items()}
