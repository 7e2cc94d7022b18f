"""The detection job: sessions → ``anomalies`` and ``anomalies_consolidated``
(``logalyzer detect``).

Ray Data batch scoring: the driver lists the sessions that need a score (never scored by the
current model versions, or changed since), cuts them into batches of ids, and a pool of
:class:`Scorer` actors — each loads every model once, from the registry — reads its batch's
sessions from PostgreSQL, scores them with every detector and writes the rows itself, so no
session data passes through the driver. The verdict rules are :mod:`logalyzer.core.verdict`,
the SQL :mod:`logalyzer.store.scores`. Each anomalous session's reasons also name the system
templates unusually frequent in it, as the templates step judged them
(:func:`logalyzer.store.templates.mark_unusual`; none until ``logalyzer templates`` has
counted them).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import ray
from ray.util import metrics as ray_metrics
from tqdm import tqdm

from logalyzer.core.features import BASELINE, KINDS
from logalyzer.core.verdict import score_sessions
from logalyzer.jobs.rayutil import count, ensure_ray
from logalyzer.settings import Settings
from logalyzer.store.db import Database
from logalyzer.store.registry import ModelNotFound, available, load
from logalyzer.store.scores import read_sessions, sessions_to_score, write_scores

BATCH = 500


@dataclass
class DetectSummary:
    scored: int = 0
    flagged: dict[str, int] = field(default_factory=dict)  # detector -> sessions flagged
    anomalous: int = 0  # consolidated verdicts
    skipped: int = 0  # already scored by these versions
    versions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class Scorer:
    """A Ray Data actor: loads the models once, then scores and writes batches of ids."""

    def __init__(self, dsn: str, versions: dict[str, int]):
        self.db = Database(dsn)
        self.models = {k: load(self.db, k, v) for k, v in versions.items()}

    def __call__(self, batch: dict) -> dict:
        ids = list(zip(batch["rxid"].tolist(), batch["session_id"].tolist()))
        with self.db.connect() as conn:
            sessions = read_sessions(conn, ids=ids)
            verdicts = score_sessions(self.models, sessions)
            anomalous = write_scores(conn, self.models, sessions, verdicts)
        flagged = {k: sum(v[k].is_anomaly for v in verdicts) for k in self.models}
        return {
            "scored": [len(sessions)],
            "anomalous": [anomalous],
            **{f"flagged_{k}": [n] for k, n in flagged.items()},
        }


def _counters():
    """Ray dashboard counters (sessions scored, found anomalous), updated by the driver."""
    return (
        ray_metrics.Counter("logalyzer_detect_sessions", "sessions scored"),
        ray_metrics.Counter("logalyzer_detect_anomalous", "sessions anomalous (combined verdict)"),
    )


def detect(
    settings: Settings,
    db: Database,
    detectors: tuple[str, ...] | None = None,
    versions: dict[str, int] | None = None,
    rescore: bool = False,
    rxids: set[str] | None = None,
    concurrency: int | None = None,
    progress: bool | None = None,
) -> DetectSummary:
    """Score the sessions that need it with the newest (or pinned) model versions.
    ``detectors`` None: the two of the combined verdict, and the baseline when one is trained
    (a registry from before it existed still detects)."""
    t0 = time.perf_counter()
    have = available(db)
    if detectors is None:
        detectors = (*KINDS, BASELINE) if BASELINE in have else KINDS
    missing = [k for k in detectors if k not in have]
    if missing:
        raise ModelNotFound(
            f"no trained {' or '.join(missing)} detector in the models table",
            hint="train first: logalyzer train",
        )
    use = {k: (versions or {}).get(k) or have[k] for k in detectors}
    ids, skipped = sessions_to_score(db, use, rescore, rxids)
    summary = DetectSummary(skipped=skipped, versions=use, flagged={k: 0 for k in use})
    if ids:
        ensure_ray(settings)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        pool = max(1, min(concurrency or cpus, -(-len(ids) // BATCH)))
        ds = ray.data.from_items([{"rxid": r, "session_id": s} for r, s in ids])
        out = ds.map_batches(
            Scorer,
            fn_constructor_args=(db.dsn, use),
            batch_size=BATCH,
            compute=ray.data.ActorPoolStrategy(size=pool),
            num_cpus=1,
            batch_format="numpy",
        )
        show = sys.stderr.isatty() if progress is None else progress
        scored, anomalous = _counters()
        with tqdm(
            total=len(ids),
            unit="session",
            desc=f"detect ({pool} actor{'s' if pool > 1 else ''})",
            disable=not show,
            file=sys.stderr,
        ) as bar:
            for row in out.iter_rows():
                summary.scored += row["scored"]
                summary.anomalous += row["anomalous"]
                for k in use:
                    summary.flagged[k] += row.get(f"flagged_{k}", 0)
                count(scored, row["scored"])
                count(anomalous, row["anomalous"])
                bar.update(row["scored"])
                bar.set_postfix(anomalous=f"{summary.anomalous:,}", refresh=False)
    summary.seconds = time.perf_counter() - t0
    return summary
