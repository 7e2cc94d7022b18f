"""The detection job: sessions → ``anomalies`` and ``anomalies_consolidated`` (``logalyzer detect``).

Ray Data batch scoring: the driver lists the sessions that need a score (never scored by the
current model versions, or changed since), cuts them into batches of ids, and a pool of
:class:`Scorer` actors — each loads every model once, from the registry — reads its batch's
sessions from PostgreSQL, scores them with every detector and writes the rows itself, so no
session data passes through the driver.

**The combined verdict** (``anomalies_consolidated.is_anomaly``), one rule for all:
a session is anomalous when any detector's score is above its threshold. The two detectors
look at different things (the order of events, the amounts of them), so requiring both would
miss what only one can see: a black screen *before* the first frame is normal in amount but
never in order; a freeze storm is ordinary events in ordinary order, only far too many.
Scores are stored as multiples of their thresholds (> 1 = flagged), so they compare across
detectors and versions. ``anomalies_consolidated`` holds one row per session that any detector
flagged, with the reasons of each; a session that is no longer flagged when re-scored loses
its row.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from psycopg.types.json import Jsonb

from .db import Database
from .detectors import KINDS, Verdict
from .features import FEATURE_COLUMNS
from .settings import Settings

BATCH = 500


@dataclass
class DetectSummary:
    scored: int = 0
    flagged: dict[str, int] = field(default_factory=dict)   # detector -> sessions flagged
    anomalous: int = 0                                      # consolidated verdicts
    skipped: int = 0                                        # already scored by these versions
    versions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def consolidate(verdicts: dict[str, Verdict]) -> tuple[bool, list[str], dict]:
    """The combined verdict (module docstring), the detectors that flagged, and the reasons."""
    flagged = [k for k in KINDS if k in verdicts and verdicts[k].is_anomaly]
    reasons = {"features": verdicts["ae"].details.get("features", []) if "ae" in verdicts else [],
               "transitions": (verdicts["lstm"].details.get("transitions", [])
                               if "lstm" in verdicts else [])}
    return bool(flagged), flagged, reasons


def ratio(v: Verdict | None) -> float | None:
    if v is None:
        return None
    return v.score / v.threshold if v.threshold > 0 else float(v.is_anomaly) * 2


_COLUMNS = ", ".join(f"s.{c}" for c in ("rxid", "session_id", "start_ts") + FEATURE_COLUMNS)


def read_sessions(conn, ids: list[tuple[str, str]] | None = None,
                  rxids: set[str] | None = None) -> list[dict]:
    """Sessions with what the detectors read (measures and event keys; [] for a session
    without keys): a batch of (rxid, session_id), or every session (of ``rxids``) in device
    and time order. The one reader of detector input, for training and for detection."""
    keys = "coalesce(e.event_keys, '{}') AS event_keys"
    with conn.cursor() as cur:
        if ids is not None:
            cur.execute(
                f"SELECT {_COLUMNS}, {keys} FROM unnest(%s::text[], %s::uuid[]) AS b(rxid, session_id)"
                " JOIN sessions s USING (rxid, session_id)"
                " LEFT JOIN session_events e USING (rxid, session_id)",
                ([r for r, _ in ids], [s for _, s in ids]))
        else:
            cur.execute(
                f"SELECT {_COLUMNS}, {keys} FROM sessions s"
                " LEFT JOIN session_events e USING (rxid, session_id)"
                " WHERE %(rx)s::text[] IS NULL OR s.rxid = ANY(%(rx)s::text[])"
                " ORDER BY s.rxid, s.start_ts", {"rx": sorted(rxids) if rxids else None})
        names = [d.name for d in cur.description]
        return [dict(zip(names, r)) for r in cur]


def score_sessions(models: dict, sessions: list[dict]) -> list[dict[str, Verdict]]:
    """Every detector's verdict for each session (the same code as the HTTP service)."""
    per_kind = {kind: det.score(det.inputs(sessions)) for kind, det in models.items()}
    return [{k: v[i] for k, v in per_kind.items()} for i in range(len(sessions))]


def write_scores(conn, models: dict, sessions: list[dict], verdicts: list[dict[str, Verdict]]) -> int:
    """Upsert ``anomalies`` rows and the consolidated rows of one batch; return how many
    sessions the combined verdict flags."""
    anomalies, consolidated, clear = [], [], []
    for s, vs in zip(sessions, verdicts):
        for kind, v in vs.items():
            anomalies.append((s["rxid"], s["session_id"], kind, models[kind].version, v.score,
                              v.threshold, v.is_anomaly, Jsonb(v.details)))
        is_anomaly, flagged, reasons = consolidate(vs)
        if flagged:
            consolidated.append((s["rxid"], s["session_id"], s["start_ts"], ratio(vs.get("lstm")),
                                 ratio(vs.get("ae")), is_anomaly, flagged, Jsonb(reasons),
                                 Jsonb({k: models[k].version for k in vs})))
        else:
            clear.append((s["rxid"], s["session_id"]))
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO anomalies (rxid, session_id, detector, model_version, score, threshold,"
            " is_anomaly, details) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (rxid, session_id, detector) DO UPDATE SET"
            " model_version = excluded.model_version, score = excluded.score,"
            " threshold = excluded.threshold, is_anomaly = excluded.is_anomaly,"
            " details = excluded.details, scored_at = now()", anomalies)
        cur.executemany(
            "INSERT INTO anomalies_consolidated (rxid, session_id, start_ts, lstm_score, ae_score,"
            " is_anomaly, detectors, reasons, model_versions) VALUES (%s, %s, %s, %s, %s, %s, %s,"
            " %s, %s) ON CONFLICT (rxid, session_id) DO UPDATE SET start_ts = excluded.start_ts,"
            " lstm_score = excluded.lstm_score, ae_score = excluded.ae_score,"
            " is_anomaly = excluded.is_anomaly, detectors = excluded.detectors,"
            " reasons = excluded.reasons, model_versions = excluded.model_versions,"
            " updated_at = now()", consolidated)
        if clear:
            cur.execute("DELETE FROM anomalies_consolidated c USING unnest(%s::text[], %s::uuid[])"
                        " AS b(rxid, session_id) WHERE c.rxid = b.rxid AND c.session_id = b.session_id",
                        ([r for r, _ in clear], [i for _, i in clear]))
    return sum(1 for c in consolidated if c[5])


class Scorer:
    """A Ray Data actor: loads the models once, then scores and writes batches of ids."""

    def __init__(self, dsn: str, versions: dict[str, int]):
        from .registry import load

        self.db = Database(dsn)
        self.models = {k: load(self.db, k, v) for k, v in versions.items()}

    def __call__(self, batch: dict) -> dict:
        ids = list(zip(batch["rxid"].tolist(), batch["session_id"].tolist()))
        with self.db.connect() as conn:
            sessions = read_sessions(conn, ids=ids)
            verdicts = score_sessions(self.models, sessions)
            anomalous = write_scores(conn, self.models, sessions, verdicts)
        flagged = {k: sum(v[k].is_anomaly for v in verdicts) for k in self.models}
        return {"scored": [len(sessions)], "anomalous": [anomalous],
                **{f"flagged_{k}": [n] for k, n in flagged.items()}}


def todo(db: Database, versions: dict[str, int], rescore: bool,
         rxids: set[str] | None = None) -> tuple[list[tuple[str, str]], int]:
    """Sessions needing a score from these versions: never scored by one of them, or changed
    since (``sessions.updated_at`` after the score); all of them with ``rescore``."""
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
            {"all": rescore, "kinds": kinds, "vers": vers,
             "rx": sorted(rxids) if rxids else None}).fetchall()
    need = [(r, s) for r, s, n in rows if n]
    return need, len(rows) - len(need)


def detect(settings: Settings, db: Database, detectors: tuple[str, ...] = KINDS,
           versions: dict[str, int] | None = None, rescore: bool = False,
           rxids: set[str] | None = None, concurrency: int | None = None,
           progress: bool | None = None) -> DetectSummary:
    """Score the sessions that need it with the newest (or pinned) model versions."""
    import ray

    from .rayutil import ensure_ray
    from .registry import ModelNotFound, available

    t0 = time.perf_counter()
    have = available(db)
    missing = [k for k in detectors if k not in have]
    if missing:
        raise ModelNotFound(f"no trained {' or '.join(missing)} detector in the models table",
                            hint="train first: logalyzer train")
    use = {k: (versions or {}).get(k) or have[k] for k in detectors}
    ids, skipped = todo(db, use, rescore, rxids)
    summary = DetectSummary(skipped=skipped, versions=use, flagged={k: 0 for k in use})
    if ids:
        ensure_ray(settings)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        pool = max(1, min(concurrency or cpus, -(-len(ids) // BATCH)))
        ds = ray.data.from_items([{"rxid": r, "session_id": s} for r, s in ids])
        out = ds.map_batches(Scorer, fn_constructor_args=(db.dsn, use), batch_size=BATCH,
                             compute=ray.data.ActorPoolStrategy(size=pool), num_cpus=1,
                             batch_format="numpy")
        show = sys.stderr.isatty() if progress is None else progress
        if show:
            print(f"scoring {len(ids):,} sessions with {pool} actor(s)...", file=sys.stderr)
        for row in out.iter_rows():
            summary.scored += row["scored"]
            summary.anomalous += row["anomalous"]
            for k in use:
                summary.flagged[k] += row.get(f"flagged_{k}", 0)
    summary.seconds = time.perf_counter() - t0
    return summary


def top_anomalies(db: Database, limit: int = 5) -> list[dict]:
    """The most anomalous sessions (highest score multiple) with their reasons."""
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT c.rxid, c.session_id, c.start_ts, c.lstm_score, c.ae_score, c.detectors,"
            " c.reasons, s.content_id, s.duration_s FROM anomalies_consolidated c"
            " JOIN sessions s USING (rxid, session_id) WHERE c.is_anomaly"
            " ORDER BY greatest(coalesce(c.lstm_score, 0), coalesce(c.ae_score, 0)) DESC,"
            " c.rxid, c.start_ts LIMIT %s", (limit,))
        names = [d.name for d in cur.description]
        return [dict(zip(names, r)) for r in cur]


