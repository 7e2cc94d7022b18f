"""The sequence detector: a DeepLog-style LSTM over event keys (pure core, PyTorch).

It learns, from the ``window`` keys before an event, the distribution of that event's key. A
session is scored by how surprising its events are under that model: an event is a *miss*
when its key is not among the ``top_g`` most likely next keys (DeepLog's rule; ``top_g = 0``
turns that rule off) or had a probability under ``min_p``, and the
session's score is its number of misses plus, to break ties between sessions with the same
count, the mean surprise (-log p) of its misses scaled into [0, 1). So a score of 2.4 reads
"two unexpected events"; the detail names them.

Every session starts with a ``<bos>`` key and ends with an ``<eos>`` key, so its first event
(usually ``ChangeContent``) and its end are predicted too: a session that stops where sessions
never stop (right after a fatal error, half-way through a start-up) is itself a miss. On the
HDFS benchmark the end key alone moved test recall from 0.32 to 0.53. Keys never seen in
training map to ``<unk>``, which the model never predicts: an unseen key is always a miss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"


@dataclass
class LSTMConfig:
    window: int = 10  # keys of history the model sees
    top_g: int = 1  # an event outside the g most likely next keys is a miss (0: no rank rule,
    # only improbable events are misses: what finds sequence-only faults, bench/README.md),
    min_p: float = 1e-3  # and so is one the model gave less than this probability
    embed: int = 16
    hidden: int = 64
    layers: int = 2
    epochs: int = 5
    min_steps: int = 0  # at least this many optimiser steps (more epochs on a small history;
    # detectors.epochs_for): a reference history is small and its model must be confident
    batch_size: int = 512
    lr: float = 3e-3


#: What an LSTM learnt from a reference history (``train --reference-*``) changes of the
#: defaults, chosen on the seed-29 fleet only (bench/README.md, "A reference history"): misses
#: by probability only (with the rank rule a busy session is a strange one: recall 0.00 on
#: sequence-only faults even from a clean history), ``min_p`` 5e-4 (the faults are never seen
#: in the reference, legitimate rare transitions are, once or twice: at 1e-3 those were false
#: alarms, P 0.92, at 3e-4 and below recall fell, 0.87 and 0.69) and about 800 optimiser steps
#: (8 hours of 40 boxes are ~14 batches an epoch, so ~58 epochs; ~260 steps found 0.77 of the
#: faults, 1,200 or more learnt the reference by heart: P 0.68-0.80). The defaults stay for an
#: LSTM without a reference, whose rank rule finds storms.
REFERENCE_CONFIG = {"top_g": 0, "min_p": 5e-4, "epochs": 20, "min_steps": 800}


class Vocab:
    """Keys ↔ ids; 0 = padding, 1 = unknown, 2 = begin, 3 = end of session."""

    def __init__(self, keys: list[str]):
        self.keys = list(keys)
        self.index = {k: i for i, k in enumerate(self.keys)}

    @classmethod
    def build(cls, sequences) -> Vocab:
        seen = sorted({k for seq in sequences for k in seq})
        return cls([PAD, UNK, BOS, EOS] + seen)

    def __len__(self) -> int:
        return len(self.keys)


def many_windows(vocab: Vocab, seqs, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The model's input rows of many sessions, stacked: ((N, window + 1) rows, (S,) rows per
    session). A session of n keys is framed ``<bos> keys <eos>`` and gives n + 1 rows, one per
    key and one for its end: the ``window`` ids before it (left-padded with 0, never reaching
    into the previous session) and the id itself in the last column. Built with a few array
    operations for the whole batch (one call per session cost as much as the model on a
    scoring batch)."""
    unk, index = vocab.index[UNK], vocab.index
    size = np.fromiter((len(s) for s in seqs), np.int64, count=len(seqs)) + 2  # BOS .. EOS
    ends = np.cumsum(size)
    starts = ends - size
    flat = np.zeros(int(ends[-1]) if len(size) else 0, np.int64)
    inner = np.ones(len(flat), bool)
    inner[starts], inner[ends - 1] = False, False
    flat[inner] = np.fromiter(
        (index.get(k, unk) for s in seqs for k in s), np.int64, count=int(inner.sum())
    )
    flat[starts], flat[ends - 1] = index[BOS], index[EOS]
    not_bos = np.ones(len(flat), bool)
    not_bos[starts] = False
    target = np.flatnonzero(not_bos)  # (N,) every position but each session's BOS
    first = np.repeat(starts, size - 1)  # (N,) where each row's session begins
    at = target[:, None] + np.arange(-window, 1)  # (N, window + 1) positions in flat
    rows = np.where(at >= first[:, None], flat[np.maximum(at, 0)], 0)
    return rows, size - 1


def training_windows(vocab: Vocab, sequences, window: int, part: int = 20_000) -> np.ndarray:
    """:func:`many_windows` of every session, built ``part`` sessions at a time, so the
    building takes a fraction of the result's memory on top of it (a fleet's history may hold
    tens of millions of events)."""
    seqs = list(sequences)
    parts = [many_windows(vocab, seqs[i : i + part], window)[0] for i in range(0, len(seqs), part)]
    return np.concatenate(parts) if parts else np.zeros((0, window + 1), np.int64)


class NextKeyLSTM(nn.Module):
    def __init__(self, vocab_size: int, cfg: LSTMConfig):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.embed, padding_idx=0)
        self.lstm = nn.LSTM(cfg.embed, cfg.hidden, cfg.layers, batch_first=True)
        self.head = nn.Linear(cfg.hidden, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.embed(x))  # x (B, W) ids → h (B, W, H)
        return self.head(h[:, -1])  # (B, V) logits of the next key


def loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the next key; batch (B, W+1) = histories and targets."""
    return nn.functional.cross_entropy(model(batch[:, :-1]), batch[:, -1])


def _distinct_rows(hist: np.ndarray, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, W) histories → (the distinct ones (U, W), (N,) index of each row among them).

    When a history fits in 63 bits (vocabularies up to 64 keys with the default window) it is
    packed into one integer first: a 1-D unique is several times faster than ``axis=0``."""
    bits = max(int(vocab_size - 1).bit_length(), 1)
    if bits * hist.shape[1] > 63:
        distinct, inv = np.unique(hist, axis=0, return_inverse=True)
        return distinct, inv.reshape(-1)
    key = np.zeros(len(hist), np.int64)
    for j in range(hist.shape[1]):
        key = (key << bits) | hist[:, j]
    _, first, inv = np.unique(key, return_index=True, return_inverse=True)
    return hist[first], inv.reshape(-1)


@torch.no_grad()
def surprise_rows(
    model: nn.Module, vocab: Vocab, seqs, window: int, group: int = 32768
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How surprising each event (and end) of each session is: ((N,) -log p of its key, (N,)
    its rank among the predictions, 0 = best; all sessions stacked as :func:`many_windows`
    rows; (S,) rows per session).

    The windows of a group of sessions (up to ``group`` windows) go through the model together,
    and each *distinct* history only once: sessions of one fleet share most of their histories
    (every session starts ``<bos>, ChangeContent, FirstFrame``), so a batch of a thousand
    sessions needs a fraction of the forward passes. This is what makes batched scoring in the
    HTTP service and the detection job cheap per session.
    """
    seqs = list(seqs)
    rows_of = np.fromiter((len(s) + 1 for s in seqs), np.int64, count=len(seqs))
    upto = np.cumsum(rows_of)  # rows before the end of each session
    nll, rank, i = [], [], 0
    while i < len(seqs):  # groups of whole sessions, at most `group` windows (or one session)
        done = upto[i - 1] if i else 0
        j = max(int(np.searchsorted(upto, done + group, side="right")), i + 1)
        allw, _ = many_windows(vocab, seqs[i:j], window)  # (n, W+1)
        hist, inv = _distinct_rows(allw[:, :-1], len(vocab))  # (U, W), (n,)
        logp = torch.cat(
            [
                torch.log_softmax(model(part), dim=-1)
                for part in torch.split(torch.from_numpy(hist), 4096)
            ]
        )  # (U, V)
        rows = logp[torch.from_numpy(inv)]  # (n, V)
        own = rows.gather(1, torch.from_numpy(allw[:, -1:]))  # (n, 1)
        nll.append((-own[:, 0]).numpy())
        rank.append((rows > own).sum(dim=1).numpy())
        i = j
    if not nll:
        return np.zeros(0, np.float32), np.zeros(0, np.int64), rows_of
    return np.concatenate(nll), np.concatenate(rank), rows_of


def misses(nll: np.ndarray, rank: np.ndarray, cfg: LSTMConfig) -> np.ndarray:
    """Which events are misses: outside the top g, or below ``min_p`` (the top g of a confident
    prediction hold keys the model all but rules out)."""
    improbable = nll > -np.log(cfg.min_p)
    if cfg.top_g <= 0:  # no rank rule: a busy session is not a strange one
        return improbable
    return (rank >= cfg.top_g) | improbable


def session_scores(
    nll: np.ndarray, rank: np.ndarray, rows_of: np.ndarray, cfg: LSTMConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Per session of stacked rows (:func:`surprise_rows`): ((S,) scores, (S,) misses). A
    score is the session's misses plus their mean surprise squashed into [0, 1) as a
    tie-break; a session without misses scores half its largest surprise, squashed."""
    miss = misses(nll, rank, cfg)
    n = len(rows_of)
    if not len(nll):
        return np.zeros(n), np.zeros(n, np.int64)
    seg = np.repeat(np.arange(n), rows_of)  # (N,) the session of each row
    n_miss = np.bincount(seg, weights=miss, minlength=n)
    surprise = np.bincount(seg, weights=np.where(miss, nll, 0.0), minlength=n)
    top = np.maximum.reduceat(nll.astype(np.float64), np.cumsum(rows_of) - rows_of)
    with np.errstate(invalid="ignore", divide="ignore"):
        missed = n_miss + (1 - np.exp(-surprise / n_miss / 10))
    score = np.where(n_miss > 0, missed, (1 - np.exp(-top / 10)) * 0.5)
    return score, n_miss.astype(np.int64)


def explain(
    seqs, nll: np.ndarray, rank: np.ndarray, rows_of: np.ndarray, cfg: LSTMConfig, limit: int = 5
) -> list[list]:
    """Per session of stacked rows (:func:`surprise_rows`), its ``limit`` most surprising
    misses as ``{"after", "event", "p", "rank", "position"}``, most surprising first (ties in
    event order); sorted once for the whole batch."""
    n = len(rows_of)
    start = np.cumsum(rows_of) - rows_of
    hit = np.flatnonzero(misses(nll, rank, cfg))  # (M,) rows that are misses
    seg = np.repeat(np.arange(n), rows_of)[hit]  # (M,) their session
    order = np.lexsort((-nll[hit].astype(np.float64), seg))  # by session, then surprise
    hit, seg = hit[order], seg[order]
    first = np.searchsorted(seg, seg, side="left")  # where each session's misses begin
    keep = np.arange(len(hit)) - first < limit
    hit, seg = hit[keep], seg[keep]
    pos = (hit - start[seg]).tolist()
    p = np.round(np.exp(-nll[hit].astype(np.float64)), 6).tolist()
    out: list[list] = [[] for _ in range(n)]
    for i, at, prob, r in zip(seg.tolist(), pos, p, rank[hit].tolist()):
        seq = seqs[i]
        out[i].append(
            {
                "after": seq[at - 1] if at > 0 else BOS,
                "event": seq[at] if at < len(seq) else EOS,
                "p": prob,
                "rank": int(r),
                "position": at,
            }
        )
    return out
