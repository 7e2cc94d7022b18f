"""Detector input and output in SQL: sessions as the detectors read them, the scores they
give (``anomalies``, ``anomalies_consolidated``, sql/0004), and which sessions need one.

One reader of detector input (:func:`read_sessions`) for training, batch detection and the
benchmarks; one writer of scores (:func:`write_scores`) for the batch job and
``POST /v1/score?store=true``, so a stored verdict means the same whoever wrote it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from psycopg.types.json import Jsonb

from logalyzer.core.features import FEATURE_COLUMNS, KINDS
from logalyzer.core.verdict import consolidate, ratio, verdict_kinds
from logalyzer.store.db import Database
from logalyzer.store.templates import unusual_templates

if TYPE_CHECKING:
    from logalyzer.core.detectors import Verdict

_COLUMNS = ", ".join(f"s.{c}" for c in ("rxid", "session_id", "start_ts") + FEATURE_COLUMNS)


def _unnest(keys: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """(rxids, session ids) as two arrays, for ``unnest(%s::text[], %s::uuid[])``."""
    return [r for r, _ in keys], [str(s) for _, s in keys]


def read_sessions(
    conn, ids: list[tuple[str, str]] | None = None, rxids: set[str] | None = None
) -> list[dict]:
    """Sessions with what the detectors read (measures and event keys; [] for a session
    without keys): a batch of (rxid, session_id), or every session (of ``rxids``) in device
    and time order."""
    keys = "coalesce(e.event_keys, '{}') AS event_keys"
    with conn.cursor() as cur:
        if ids is not None:
            cur.execute(
                f"SELECT {_COLUMNS}, {keys}"
                " FROM unnest(%s::text[], %s::uuid[]) AS b(rxid, session_id)"
                " JOIN sessions s USING (rxid, session_id)"
                " LEFT JOIN session_events e USING (rxid, session_id)",
                _unnest(ids),
            )
        else:
            cur.execute(
                f"SELECT {_COLUMNS}, {keys} FROM sessions s"
                " LEFT JOIN session_events e USING (rxid, session_id)"
                " WHERE %(rx)s::text[] IS NULL OR s.rxid = ANY(%(rx)s::text[])"
                " ORDER BY s.rxid, s.start_ts",
                {"rx": sorted(rxids) if rxids else None},
            )
        names = [d.name for d in cur.description]
        return [dict(zip(names, r)) for r in cur]


def load_sessions(db: Database, rxids: set[str] | None = None) -> list[dict]:
    """Every session (of ``rxids``) as :func:`read_sessions` gives it."""
    with db.connect() as conn:
        return read_sessions(conn, rxids=rxids)


def session_start_times(conn, keys: list[tuple[str, str]]) -> dict[tuple[str, str], object]:
    """(rxid, session_id text) -> the stored session's ``start_ts``, for the keys that exist."""
    rows = conn.execute(
        "SELECT s.rxid, s.session_id::text, s.start_ts FROM unnest(%s::text[], %s::uuid[])"
        " AS b(rxid, session_id) JOIN sessions s USING (rxid, session_id)",
        _unnest(keys),
    ).fetchall()
    return {(r, i): t for r, i, t in rows}


def write_scores(
    conn,
    models: dict,
    sessions: list[dict],
    verdicts: list[dict[str, Verdict]],
) -> int:
    """Upsert ``anomalies`` rows and the consolidated rows of one batch; return how many
    sessions the combined verdict flags. ``anomalies_consolidated`` holds one row per session
    that any detector flagged, with the reasons of each; a session that is no longer flagged
    when re-scored loses its row. An anomalous session's reasons also name its system
    templates that the templates step judged unusual (``reasons.templates``)."""
    anomalies, consolidated, clear = [], [], []
    kinds = verdict_kinds(models)
    verdicts_of = [consolidate(vs, kinds) for vs in verdicts]
    templates = unusual_templates(
        conn,
        [
            (s["rxid"], s["session_id"])
            for s, (is_anomaly, _, _) in zip(sessions, verdicts_of)
            if is_anomaly
        ],
    )
    for s, vs, (is_anomaly, flagged, reasons) in zip(sessions, verdicts, verdicts_of):
        for kind, v in vs.items():
            anomalies.append(
                (
                    s["rxid"],
                    s["session_id"],
                    kind,
                    models[kind].version,
                    v.score,
                    v.threshold,
                    v.is_anomaly,
                    Jsonb(v.details),
                )
            )
        system = templates.get((s["rxid"], str(s["session_id"])))
        if is_anomaly and system:
            reasons["templates"] = system
        if flagged:
            consolidated.append(
                (
                    s["rxid"],
                    s["session_id"],
                    s["start_ts"],
                    ratio(vs.get("lstm")),
                    ratio(vs.get("ae")),
                    is_anomaly,
                    flagged,
                    Jsonb(reasons),
                    Jsonb({k: models[k].version for k in vs}),
                )
            )
        else:
            clear.append((s["rxid"], s["session_id"]))
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO anomalies (rxid, session_id, detector, model_version, score, threshold,"
            " is_anomaly, details) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (rxid, session_id, detector) DO UPDATE SET"
            " model_version = excluded.model_version, score = excluded.score,"
            " threshold = excluded.threshold, is_anomaly = excluded.is_anomaly,"
            " details = excluded.details, scored_at = now()",
            anomalies,
        )
        cur.executemany(
            "INSERT INTO anomalies_consolidated (rxid, session_id, start_ts, lstm_score, ae_score,"
            " is_anomaly, detectors, reasons, model_versions) VALUES (%s, %s, %s, %s, %s, %s, %s,"
            " %s, %s) ON CONFLICT (rxid, session_id) DO UPDATE SET start_ts = excluded.start_ts,"
            " lstm_score = excluded.lstm_score, ae_score = excluded.ae_score,"
            " is_anomaly = excluded.is_anomaly, detectors = excluded.detectors,"
            " reasons = excluded.reasons, model_versions = excluded.model_versions,"
            " updated_at = now()",
            consolidated,
        )
        if clear:
            cur.execute(
                "DELETE FROM anomalies_consolidated c USING unnest(%s::text[], %s::uuid[])"
                " AS b(rxid, session_id) WHERE c.rxid = b.rxid AND c.session_id = b.session_id",
                _unnest(clear),
            )
    return sum(1 for c in consolidated if c[5])


def sessions_to_score(
    db: Database, versions: dict[str, int], rescore: bool, rxids: set[str] | None = None
) -> tuple[list[tuple[str, str]], int]:
    """Sessions needing a score from these versions: never scored by one of them, or changed
    since (``sessions.updated_at`` after the score); all of them with ``rescore``. Returns
    (rxid, session_id) pairs and how many sessions need nothing."""
    kinds, vers = list(versions), [versions[k] for k in versions]
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT s.rxid, s.session_id::text, %(all)s OR EXISTS (SELECT 1 FROM"
            " unnest(%(kinds)s::text[], %(vers)s::int[]) AS m(detector, version)"
            " WHERE NOT EXISTS (SELECT 1 FROM anomalies a WHERE a.rxid = s.rxid"
            " AND a.session_id = s.session_id AND a.detector = m.detector"
            " AND a.model_version = m.version AND a.scored_at >= s.updated_at))"
            " FROM sessions s WHERE %(rx)s::text[] IS NULL OR s.rxid = ANY(%(rx)s::text[])"
            " ORDER BY s.rxid, s.start_ts",
            {"all": rescore, "kinds": kinds, "vers": vers, "rx": sorted(rxids) if rxids else None},
        ).fetchall()
    need = [(r, s) for r, s, n in rows if n]
    return need, len(rows) - len(need)


def top_anomalies(db: Database, limit: int = 5) -> list[dict]:
    """The most anomalous sessions (highest score multiple) with their reasons."""
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT c.rxid, c.session_id, c.start_ts, c.lstm_score, c.ae_score, c.detectors,"
            " c.reasons, s.content_id, s.duration_s FROM anomalies_consolidated c"
            " JOIN sessions s USING (rxid, session_id) WHERE c.is_anomaly"
            " ORDER BY greatest(coalesce(c.lstm_score, 0), coalesce(c.ae_score, 0)) DESC,"
            " c.rxid, c.start_ts LIMIT %s",
            (limit,),
        )
        names = [d.name for d in cur.description]
        return [dict(zip(names, r)) for r in cur]


def session_flags(db: Database, kinds: tuple[str, ...] = KINDS) -> list[tuple]:
    """Per stored session: (rxid, start_ts, flagged by each of ``kinds``..., combined verdict);
    a session never scored counts as not flagged. What an evaluation compares with its truth."""
    per_kind = ", ".join(
        "coalesce(bool_or(a.is_anomaly) FILTER (WHERE a.detector = %s), false)" for _ in kinds
    )
    with db.connect() as conn:
        return conn.execute(
            f"SELECT s.rxid, s.start_ts, {per_kind}, coalesce(bool_or(c.is_anomaly), false)"
            " FROM sessions s LEFT JOIN anomalies a USING (rxid, session_id)"
            " LEFT JOIN anomalies_consolidated c USING (rxid, session_id)"
            " GROUP BY s.rxid, s.session_id, s.start_ts",
            list(kinds),
        ).fetchall()


def count_sessions(db: Database) -> int:
    with db.connect() as conn:
        return conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
