"""System-line templates: masking, Drain3 mining and matching, and the "unusually frequent" rule.

Pure core: no database (the miner's state travels as bytes; :mod:`logalyzer.store.templates`
keeps it in PostgreSQL through Drain3's ``PersistenceHandler`` interface).

A line's *key* is its tag and its message with the obviously variable parts masked
(``ActivityManager: ANR in <*>``): numbers, hex words and ids become ``<*>`` before Drain3 sees
the text. The masked key is also the cache key of :class:`Matcher`, so a fleet's millions of
lines cost one Drain3 tree search per distinct masked message, not per line. The tag goes in
first because Drain3's parse tree branches on the first tokens: templates never mix tags.

Drain3 settings (measured on Loghub's Android sample, ``tests/test_templates.py``): similarity
0.7, depth 6 (one level more than Drain's usual 4-5, as the tag takes the first token). With the
masking below, Drain3 groups the 2,000 lines as Loghub's own templates file does for 91.7 % of
them (:func:`grouping_accuracy`; Loghub's published Drain figure on this sample is 0.911);
similarity 0.5 gave 0.56, depth 5 at 0.7 gave 0.80, and depth 7 0.82.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig

WILD = "<*>"
SIM_TH = 0.7
DEPTH = 6
MAX_CHILDREN = 100

# Order matters: hex and long hex-ish words before plain numbers.
_MASKS = (
    re.compile(r"0[xX][0-9a-fA-F]+"),
    re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
    re.compile(r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{6,}\b"),
    re.compile(r"(?<![A-Za-z\d])-?\d+(?:\.\d+)?"),
)

logging.getLogger("drain3").setLevel(logging.WARNING)  # it logs every snapshot at INFO


def mask(message: str) -> str:
    """The message with numbers, hex words and uuids replaced by ``<*>`` (whitespace trimmed
    at the end, as Loghub trims it)."""
    text = message.rstrip()
    for rx in _MASKS:
        text = rx.sub(WILD, text)
    return text


def line_key(tag: str | None, message: str | None) -> str:
    """What the miner sees of one line: ``tag: masked message``."""
    return f"{(tag or '').strip() or '?'}: {mask(message or '')}"


def miner_config() -> TemplateMinerConfig:
    """Drain3's configuration: masking is ours (:func:`mask`), compressed state, no periodic
    snapshots (the caller saves once per batch: Drain3 would save the whole state after every
    new cluster, thousands of database writes while mining)."""
    cfg = TemplateMinerConfig()
    cfg.drain_sim_th = SIM_TH
    cfg.drain_depth = DEPTH
    cfg.drain_max_children = MAX_CHILDREN
    cfg.masking_instructions = []
    cfg.snapshot_compress_state = True
    cfg.snapshot_interval_minutes = 10**9
    cfg.parametrize_numeric_tokens = True
    return cfg


def new_miner(handler=None) -> TemplateMiner:
    """A Drain3 miner with this module's settings; with a ``PersistenceHandler``, restored
    from the state it holds (if any)."""
    return TemplateMiner(persistence_handler=handler, config=miner_config())


def save(miner: TemplateMiner, reason: str = "batch") -> None:
    """Save the miner's whole state through its persistence handler, once."""
    if miner.persistence_handler is not None:
        miner.save_state(reason)


@dataclass
class Template:
    cluster_id: int
    text: str
    size: int


def templates_of(miner: TemplateMiner) -> list[Template]:
    """The miner's clusters as (cluster id, template text, lines it has absorbed)."""
    return sorted(
        (Template(c.cluster_id, c.get_template(), c.size) for c in miner.drain.clusters),
        key=lambda t: t.cluster_id,
    )


class Matcher:
    """Line keys → cluster ids through one miner, cached by key.

    ``learn=True``: a key no cluster matches is added to the miner (it may create a cluster or
    widen one; cluster ids never change), so a rare system message that the mining sample
    missed (an ANR burst in one session) still gets its template. ``learn=False``: unmatched
    keys map to None."""

    def __init__(self, miner: TemplateMiner, learn: bool = True):
        self.miner = miner
        self.learn = learn
        self.cache: dict[str, int | None] = {}
        self.learnt = 0  # keys that were added to the miner
        self.examples: dict[int, str] = {}  # cluster id -> the key that created it

    def __call__(self, key: str) -> int | None:
        try:
            return self.cache[key]
        except KeyError:
            pass
        cluster = self.miner.match(key, full_search_strategy="fallback")
        if cluster is not None:
            cid = cluster.cluster_id
        elif self.learn:
            # no snapshot per learnt key (Drain3 saves on every change): the caller saves
            handler, self.miner.persistence_handler = self.miner.persistence_handler, None
            try:
                res = self.miner.add_log_message(key)
            finally:
                self.miner.persistence_handler = handler
            cid = res["cluster_id"]
            if res["change_type"] == "cluster_created":
                self.examples[cid] = key
            self.learnt += 1
            # the new or widened cluster may now also cover keys cached as unmatched
            self.cache = {k: v for k, v in self.cache.items() if v is not None}
        else:
            cid = None
        self.cache[key] = cid
        return cid


def mine(miner: TemplateMiner, keys: Iterable[str]) -> dict[int, str]:
    """Feed line keys to the miner (learning); return cluster id -> the key that created it."""
    examples: dict[int, str] = {}
    for key in keys:
        res = miner.add_log_message(key)
        if res["change_type"] == "cluster_created":
            examples[res["cluster_id"]] = key
    return examples


# --------------------------------------------------------------------------- yardstick


def grouping_accuracy(truth: Sequence, predicted: Sequence) -> float:
    """Zhu et al.'s grouping accuracy (ICSE-SEIP 2019): the share of lines whose predicted
    group holds exactly the lines of their true group."""
    if len(truth) != len(predicted):
        raise ValueError("truth and prediction differ in length")
    if not truth:
        return 1.0
    true_groups: dict = {}
    pred_groups: dict = {}
    for i, (t, p) in enumerate(zip(truth, predicted)):
        true_groups.setdefault(t, set()).add(i)
        pred_groups.setdefault(p, set()).add(i)
    good = 0
    for members in pred_groups.values():
        i = next(iter(members))
        if true_groups[truth[i]] == members:
            good += len(members)
    return good / len(truth)


# --------------------------------------------------------------------------- the rule

#: A system template is named among a session's reasons when it appears at least MIN_COUNT
#: times, a Poisson count at the *higher* of the box's and the cohort's normal rate (per
#: viewing hour, times the session's hours) would reach that many with probability under
#: MAX_P (it must be unusual against both), and bursts of it (MIN_COUNT or more in a session)
#: are rare in the cohort's other sessions (at most MAX_BURST_SHARE of them). The normal rates
#: count each other session's lines of the template up to MIN_COUNT - 1 only (winsorized):
#: one other burst on the same box must not make the next one look usual, while a template
#: that comes in bursts routinely is caught by the burst share instead.
MIN_COUNT = 3
MAX_P = 1e-3
#: The autoencoder's feature (``sessions.system_unusual_lines``) counts only the lines of
#: templates far stricter than a reason's MAX_P: with MAX_P, one normal session in 130-200 had
#: some (chance, over ~50 templates per session) and the feature cost F1 on fleets without
#: system faults (seed-29 tuning fleet at 2 %: 0.920 without, 0.828 with); at 1e-6 no normal
#: session of four 4,000-session fleets had any, and every system fault kept its lines
#: (bench/README.md, "System templates as an autoencoder feature").
FEATURE_MAX_P = 1e-6
MAX_BURST_SHARE = 0.1
MIN_HOURS = 1 / 6  # sessions shorter than 10 minutes count as 10 (as the features do)
MAX_REASONS = 3


def poisson_sf(k: int, lam: float) -> float:
    """P(X >= k) for X ~ Poisson(lam). Above the mean it sums the tail's own terms: 1 minus
    the terms below loses every digit once the tail is under ~1e-16 (a burst of 30 lines)."""
    if k <= 0:
        return 1.0
    if lam <= 0:
        return 0.0
    if k > lam:
        term = math.exp(k * math.log(lam) - lam - math.lgamma(k + 1))
        total, i = 0.0, k
        while term > total * 1e-17:
            total += term
            i += 1
            term *= lam / i
        return min(total, 1.0)
    term = math.exp(-lam)
    below = term
    for i in range(1, k):
        term *= lam / i
        below += term
    return max(0.0, 1.0 - below)


@dataclass
class Unusual:
    template_id: int
    template: str
    count: int
    usual: float  # expected count in this session at the normal rate
    p: float

    @property
    def text(self) -> str:
        return f"{self.template} {self.count} times (usually {_fmt(self.usual)})"

    def as_reason(self) -> dict:
        return {
            "template_id": self.template_id,
            "template": self.template,
            "count": self.count,
            "usual": round(self.usual, 3),
            "p": self.p,
            "text": self.text,
        }


def _fmt(x: float) -> str:
    if x < 0.05:
        return "0"
    return f"{x:.1f}".rstrip("0").rstrip(".") if x < 10 else f"{x:.0f}"


def unusual(
    template_id: int,
    template: str,
    count: int,
    hours: float,
    box_rate: float,
    cohort_rate: float,
    burst_share: float = 0.0,
) -> Unusual | None:
    """The template's count in a session judged against the box's and the cohort's normal
    rates per viewing hour and the share of the cohort's other sessions with a burst of it
    (see MIN_COUNT, MAX_P, MAX_BURST_SHARE); None when it is ordinary."""
    if count < MIN_COUNT or burst_share > MAX_BURST_SHARE:
        return None
    lam = max(box_rate, cohort_rate) * max(hours, MIN_HOURS)
    p = poisson_sf(count, lam)
    if p >= MAX_P:
        return None
    return Unusual(template_id, template, count, lam, p)


def rank(found: Iterable[Unusual], top: int = MAX_REASONS) -> list[Unusual]:
    """The most surprising first (smallest p, then largest count)."""
    return sorted(found, key=lambda u: (u.p, -u.count, u.template_id))[:top]
