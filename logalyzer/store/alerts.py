"""The ``alerts`` table and the sums the alert rule reads (sql/0014_alerts.sql).

Rows are keyed by (grain, cohort_kind, cohort, measure, window_start): a re-run of a check
updates its rows in place, and ``first_seen_at`` stays that of the first check that saw it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from psycopg.types.json import Jsonb

from logalyzer.core.alerts import Sums
from logalyzer.store.db import Database

#: What a listing, the CLI's --json and the webhook show of an alert, in this order.
COLUMNS = (
    "grain",
    "cohort_kind",
    "cohort",
    "measure",
    "window_start",
    "window_end",
    "value",
    "baseline",
    "ratio",
    "p_value",
    "severity",
    "sessions",
    "viewing_hours",
    "baseline_windows",
    "detail",
    "first_seen_at",
    "last_seen_at",
    "resolved_at",
    "notified_at",
)
KEY = ("grain", "cohort_kind", "cohort", "measure", "window_start")


@dataclass(frozen=True)
class Firing:
    """One firing window as the job decided it; ``resolve``: a later window of the same
    cohort and measure was calm in the same check."""

    grain: str
    cohort_kind: str
    cohort: str
    measure: str
    window_start: datetime
    window_end: datetime
    value: float
    baseline: float
    ratio: float | None
    p_value: float
    severity: str
    sessions: int
    viewing_hours: float
    baseline_windows: int
    detail: dict
    resolve: bool


def session_span(db: Database) -> tuple[datetime, datetime] | None:
    """Earliest and latest session start, or None without sessions."""
    with db.connect() as conn:
        lo, hi = conn.execute("SELECT min(start_ts), max(start_ts) FROM sessions").fetchone()
    return None if lo is None else (lo, hi)


def read_cells(
    db: Database, grain: str, since: datetime, until: datetime
) -> dict[tuple[datetime, str, str], dict[str, Sums]]:
    """``{(window_start, model, fw): {measure: Sums}}`` for sessions starting in
    [since, until) (``alert_cells``)."""
    out: dict = defaultdict(dict)
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT period, model, fw, measure, sessions, num, den, num2, numden, den2"
            " FROM alert_cells(%s, %s, %s)",
            (grain, since, until),
        ).fetchall()
    for period, model, fw, measure, *sums in rows:
        out[(period, model, fw)][measure] = Sums(*(float(v) for v in sums))
    return dict(out)


def save_alerts(
    db: Database,
    grain: str,
    firing: list[Firing],
    calm: dict[tuple[str, str, str], datetime],
) -> dict[str, int]:
    """Upsert the firing windows, then resolve the open alerts that a calm window at or after
    theirs answers (``calm``: (cohort_kind, cohort, measure) -> its latest calm window; a
    firing window of this check followed by a calm one is stored and resolved at once).
    Returns counts: new, updated (seen before), resolved (by this check)."""
    counts = {"new": 0, "updated": 0, "resolved": 0}
    with db.connect() as conn, conn.cursor() as cur:
        for f in firing:
            cur.execute(
                "INSERT INTO alerts (grain, cohort_kind, cohort, measure, window_start,"
                " window_end, value, baseline, ratio, p_value, severity, sessions,"
                " viewing_hours, baseline_windows, detail, resolved_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, NULL)"
                " ON CONFLICT (grain, cohort_kind, cohort, measure, window_start) DO UPDATE SET"
                "  value = excluded.value, baseline = excluded.baseline,"
                "  ratio = excluded.ratio, p_value = excluded.p_value,"
                "  severity = excluded.severity, sessions = excluded.sessions,"
                "  viewing_hours = excluded.viewing_hours,"
                "  baseline_windows = excluded.baseline_windows, detail = excluded.detail,"
                "  last_seen_at = now(),"
                # a later calm window of this check resolves it below (a resolution, once
                # made, stays); without one it is open again, and its next resolution is news
                "  resolved_at = CASE WHEN %s THEN alerts.resolved_at END,"
                "  resolved_notified_at = CASE WHEN %s THEN alerts.resolved_notified_at END"
                " RETURNING (xmax = 0)",
                (
                    f.grain,
                    f.cohort_kind,
                    f.cohort,
                    f.measure,
                    f.window_start,
                    f.window_end,
                    f.value,
                    f.baseline,
                    f.ratio,
                    f.p_value,
                    f.severity,
                    f.sessions,
                    f.viewing_hours,
                    f.baseline_windows,
                    Jsonb(f.detail),
                    f.resolve,
                    f.resolve,
                ),
            )
            counts["new" if cur.fetchone()[0] else "updated"] += 1
        if calm:
            keys = list(calm)
            cur.execute(
                "UPDATE alerts a SET resolved_at = now()"
                " FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[])"
                "   AS c(kind, cohort, measure, calm_start)"
                " WHERE a.grain = %s AND a.cohort_kind = c.kind AND a.cohort = c.cohort"
                "   AND a.measure = c.measure AND a.window_start <= c.calm_start"
                "   AND a.resolved_at IS NULL",
                (
                    [k[0] for k in keys],
                    [k[1] for k in keys],
                    [k[2] for k in keys],
                    [calm[k] for k in keys],
                    grain,
                ),
            )
            counts["resolved"] = cur.rowcount
    return counts


def _rows(cur) -> list[dict]:
    names = [d.name for d in cur.description]
    return [dict(zip(names, r)) for r in cur]


def list_alerts(
    db: Database, grain: str | None = None, since: datetime | None = None
) -> list[dict]:
    """Alerts whose window starts at or after ``since``, newest window first."""
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT {', '.join(COLUMNS)} FROM alerts"
            " WHERE (%(grain)s::text IS NULL OR grain = %(grain)s)"
            "   AND (%(since)s::timestamptz IS NULL OR window_start >= %(since)s)"
            " ORDER BY window_start DESC, severity, cohort_kind, cohort, measure",
            {"grain": grain, "since": since},
        )
        return _rows(cur)


def to_notify(db: Database) -> tuple[list[dict], list[dict]]:
    """(alerts never sent, alerts sent whose resolution was not), oldest first."""
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT {', '.join(COLUMNS)} FROM alerts WHERE notified_at IS NULL"
            " ORDER BY window_start, cohort_kind, cohort, measure"
        )
        new = _rows(cur)
        cur.execute(
            f"SELECT {', '.join(COLUMNS)} FROM alerts WHERE notified_at IS NOT NULL"
            " AND resolved_at IS NOT NULL AND resolved_notified_at IS NULL"
            " ORDER BY window_start, cohort_kind, cohort, measure"
        )
        return new, _rows(cur)


def mark_notified(db: Database, new: list[dict], resolved: list[dict]) -> None:
    """Record that the webhook accepted these: a new alert sent already resolved counts as
    its resolution sent too."""
    with db.connect() as conn, conn.cursor() as cur:
        for r in new + resolved:
            cur.execute(
                "UPDATE alerts SET notified_at = coalesce(notified_at, now()),"
                " resolved_notified_at = CASE WHEN resolved_at IS NOT NULL THEN now() END"
                " WHERE grain = %s AND cohort_kind = %s AND cohort = %s AND measure = %s"
                "   AND window_start = %s",
                tuple(r[k] for k in KEY),
            )
