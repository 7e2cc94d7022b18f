"""The templates job: what else the box logged (``logalyzer templates``).

Two phases, both reading stored lines (nothing in the ingest path, so the ingest is as fast as
before):

1. **Mine** each model/firmware cohort that has no miner yet (or all with ``remine``): one Ray
   task per cohort reads a sample of its boxes' non-VAR lines (``--sample`` lines per cohort,
   spread over its boxes, ``TABLESAMPLE SYSTEM``), feeds ``tag: masked message`` to a Drain3
   miner (:mod:`logalyzer.core.templates`) and saves the miner's state in
   ``template_miners`` (a Drain3 ``PersistenceHandler``) and its clusters in ``templates``.
   Per cohort rather than fleet-wide, as the issue asks: a firmware's own messages get their
   own templates, and a cohort's normal rate is counted over its own templates.
2. **Count** the devices whose sessions changed since their last count (``devices.analysed_at``
   moved; ``full`` all): one Ray task per device reads the non-VAR lines inside each session's
   window (one BRIN range scan per session), masks them (cached by raw text) and counts the
   masked keys per session. The driver maps the keys to templates through each cohort's miner,
   cached by key (one Drain3 tree search per distinct masked message of the run), and replaces
   the device's ``session_templates`` and mark in one transaction. A key no template matches
   is added to the miner (learning; the state is saved with the counts), so a system message
   too rare for the sample (an ANR burst in one session) still gets its template.

Matching runs in the driver because it is the one place that may change a miner: the Ray
tasks do the per-line work (reading, masking, counting), the driver only the per-key work.
Idempotent: a re-run with nothing new does nothing; ``full`` rewrites the same counts.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import ray
from ray.util import metrics
from tqdm import tqdm

from logalyzer.core import templates as core
from logalyzer.core.files import is_valid_rxid
from logalyzer.errors import InvalidIdentifier, TemplatesBusy
from logalyzer.jobs.rayutil import count, ensure_ray
from logalyzer.settings import Settings
from logalyzer.store import templates as store
from logalyzer.store.db import Database, connect

DEFAULT_SAMPLE = 50_000  # lines per cohort to mine from
_KEY_CACHE = 200_000  # raw (tag, message) -> key, per device task


@dataclass
class TemplatesSummary:
    mined: dict[str, dict] = field(default_factory=dict)  # cohort -> {lines, templates}
    devices: int = 0  # devices counted
    skipped: int = 0  # up to date
    lines: int = 0  # lines inside session windows, counted
    rows: int = 0  # session_templates rows written
    learnt: int = 0  # keys the miners learnt while counting
    unusual: int = 0  # sessions whose unusual system lines changed (store.mark_unusual)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    mine_s: float = 0.0
    count_s: float = 0.0


# --------------------------------------------------------------------------- Ray tasks


def mine_cohort(dsn: str, cohort: str, rxids: list[str], sample: int) -> dict:
    """Mine one cohort from a sample of its boxes' lines; save state and templates."""
    with connect(dsn) as conn:
        per_device = max(1, -(-sample // max(1, len(rxids))))
        lines = store.sample_lines(conn, rxids, per_device)
        miner = core.new_miner()  # no handler while mining: Drain3 would save per new cluster
        examples = core.mine(miner, (core.line_key(t, m) for t, m in lines))
        handler = store.PgPersistence(conn, cohort)
        handler.lines_mined = len(lines)
        miner.persistence_handler = handler
        with conn.transaction():
            core.save(miner, "mined")
            found = core.templates_of(miner)
            store.save_templates(conn, cohort, found, examples)
    return {"cohort": cohort, "lines": len(lines), "templates": len(found)}


def count_device(dsn: str, rxid: str) -> dict:
    """Masked keys per session of one device: {session id: {key: count}}."""
    keys: dict[tuple, str] = {}
    by_session: dict[str, Counter] = {}
    lines = 0
    with connect(dsn) as conn:
        model, fw, analysed_at = store.session_marks(conn, rxid)
        for sid, tag, msg in store.read_session_lines(conn, rxid):
            raw = (tag, msg)
            key = keys.get(raw)
            if key is None:
                key = core.line_key(tag, msg)
                if len(keys) < _KEY_CACHE:
                    keys[raw] = key
            c = by_session.get(sid)
            if c is None:
                c = by_session[sid] = Counter()
            c[key] += 1
            lines += 1
    return {
        "rxid": rxid,
        "cohort": store.cohort_of(model, fw),
        "analysed_at": analysed_at,
        "lines": lines,
        "counts": {str(s): dict(c) for s, c in by_session.items()},
    }


# --------------------------------------------------------------------------- the driver


class _Cohorts:
    """The driver's miners, one per cohort, restored from PostgreSQL on first use."""

    def __init__(self, conn):
        self.conn = conn
        self.matchers: dict[str, core.Matcher] = {}
        self.ids: dict[str, dict[int, int]] = {}  # cohort -> cluster id -> template_id

    def matcher(self, cohort: str) -> core.Matcher:
        m = self.matchers.get(cohort)
        if m is None:
            miner = core.new_miner(store.PgPersistence(self.conn, cohort))
            m = self.matchers[cohort] = core.Matcher(miner, learn=True)
            self.ids[cohort] = store.save_templates(self.conn, cohort, [], {})
        return m

    def apply(self, d: dict) -> tuple[dict, int]:
        """Keys → template ids for one device's counts; saves what the miner learnt."""
        m = self.matcher(d["cohort"])
        before = m.learnt
        per_session: dict[str, dict[int, int]] = {}
        for sid, keys in d["counts"].items():
            out = per_session[sid] = {}
            for key, n in keys.items():
                cid = m(key)
                if cid is not None:
                    out[cid] = out.get(cid, 0) + n
        learnt = m.learnt - before
        known = self.ids[d["cohort"]]
        if learnt or any(c not in known for v in per_session.values() for c in v):
            core.save(m.miner, "learnt")
            self.ids[d["cohort"]] = store.save_templates(
                self.conn, d["cohort"], core.templates_of(m.miner), m.examples
            )
        ids = self.ids[d["cohort"]]
        return {s: {ids[c]: n for c, n in v.items()} for s, v in per_session.items()}, learnt


def _counters():
    return (
        metrics.Counter("logalyzer_templates_lines", "non-VAR lines counted in session windows"),
        metrics.Counter("logalyzer_templates_devices", "devices whose template counts were saved"),
    )


def templates(
    settings: Settings,
    db: Database,
    rxids: set[str] | None = None,
    sample: int = DEFAULT_SAMPLE,
    full: bool = False,
    remine: bool = False,
    progress: bool | None = None,
) -> TemplatesSummary:
    """Mine the cohorts that need it, then count templates in the stale devices' sessions."""
    t0 = time.perf_counter()
    bad = sorted(r for r in rxids or () if not is_valid_rxid(r))
    if bad:
        raise InvalidIdentifier(f"not RxIDs: {', '.join(bad[:5])}")
    summary = TemplatesSummary()
    show = sys.stderr.isatty() if progress is None else progress
    with db.connect(autocommit=True) as conn:
        if not store.lock(conn):
            raise TemplatesBusy("another `logalyzer templates` run is working on this database")
        cohorts = store.device_cohorts(db, rxids)
        members: dict[str, list[str]] = {}
        for rx, c in cohorts.items():
            members.setdefault(c, []).append(rx)
        have = store.mined_cohorts(db)
        to_mine = sorted(c for c in members if remine or c not in have)
        if remine:
            for c in to_mine:
                store.forget_cohort(conn, c)
        if to_mine:
            ensure_ray(settings)
            task = ray.remote(num_cpus=1, max_retries=2)(mine_cohort)
            refs = [task.remote(db.dsn, c, members[c], sample) for c in to_mine]
            with tqdm(
                total=len(refs), unit="cohort", desc="mine", disable=not show, file=sys.stderr
            ) as bar:
                for ref in refs:
                    r = ray.get(ref)
                    summary.mined[r["cohort"]] = {"lines": r["lines"], "templates": r["templates"]}
                    bar.update(1)
        t1 = time.perf_counter()
        summary.mine_s = t1 - t0
        todo = store.stale_devices(db, rxids, full)
        summary.skipped = len(cohorts) - len(todo)
        if todo:
            _count_all(settings, db, conn, todo, summary, show)
        # the counted devices moved their cohorts' normal: judge those cohorts' sessions again
        judge = {cohorts[rx] for rx in todo if rx in cohorts} | store.unjudged_cohorts(conn)
        summary.unusual = store.mark_unusual(conn, sorted(judge))
        summary.count_s = time.perf_counter() - t1
    summary.seconds = time.perf_counter() - t0
    return summary


def _count_all(settings, db, conn, todo, summary, show) -> None:
    ensure_ray(settings)
    task = ray.remote(num_cpus=1, max_retries=2)(count_device)
    limit = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    lines_c, devices_c = _counters()
    miners = _Cohorts(conn)
    pending: dict = {}
    queue = list(reversed(todo))
    with tqdm(
        total=len(todo), unit="dev", desc="templates", disable=not show, file=sys.stderr
    ) as bar:
        while queue or pending:
            while queue and len(pending) < limit:
                rx = queue.pop()
                pending[task.remote(db.dsn, rx)] = rx
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                rx = pending.pop(ref)
                try:
                    d = ray.get(ref)
                    with conn.transaction():
                        counts, learnt = miners.apply(d)
                        summary.rows += store.write_counts(
                            conn, rx, d["cohort"], counts, d["analysed_at"], d["lines"], 0
                        )
                except Exception as exc:  # one bad device must not stop the fleet
                    cause = getattr(exc, "cause", None) or exc
                    text = str(cause).strip().splitlines()
                    summary.failed[rx] = f"{type(cause).__name__}: {text[-1] if text else ''}"
                else:
                    summary.devices += 1
                    summary.lines += d["lines"]
                    summary.learnt += learnt
                    count(lines_c, d["lines"])
                    count(devices_c, 1)
                bar.update(1)
                bar.set_postfix(lines=f"{summary.lines:,}", refresh=False)
