"""The detectors behind one interface, their checkpoints and their thresholds (pure core).

A checkpoint is self-describing: ``torch.save`` bytes of a plain dict holding the detector's
kind, its config dataclass, what it needs to read input (the LSTM's vocabulary, the
autoencoder's feature names and scaler), its threshold and the state dict, so
``from_bytes(data)`` is all it takes to score with it, anywhere. The bytes live in the
``models`` table (:mod:`logalyzer.store.registry`).

**The threshold rule** (no labels, the training history holds some anomalies as real data
does): a robust upper fence over the training scores, ``Q3 + k·IQR`` (Tukey's "far out" fence
with k = 3), never below the 90th percentile, plus a small floor (:data:`MIN_MARGIN`) so a
degenerate distribution (all scores equal) does not flag every session scoring a hair above it.
Quartiles, unlike a mean and standard deviation, barely move when a tenth of the sessions are
anomalous, so the fence follows the normal sessions. The LSTM uses it; the autoencoder uses
:func:`sqrt_fence` (the same fence on square-rooted scores, without the P90 floor, which had
tuned it to fleets with a tenth of their sessions anomalous) over the sessions it kept as
ordinary, to choose them; its threshold is a fixed distance (``AEConfig.threshold_rmse``).
The baseline has its own rule
(:meth:`BaselineDetector.threshold_for`).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch

from logalyzer.core import autoencoder as ae
from logalyzer.core import baseline as bl
from logalyzer.core import lstm
from logalyzer.core.features import (  # noqa: F401 (KINDS re-exported)
    FEATURE_NAMES,
    FLEET_FEATURE_NAMES,
    KINDS,
    SCALE_FLOORS,
    BoxNormals,
    Columns,
    feature_matrix,
)

FENCE_K = 3.0
MIN_MARGIN = 0.05


def threshold_rule(scores: Sequence[float], k: float = FENCE_K) -> float:
    """The documented rule (module docstring): max(Q3 + k·IQR, P90) + MIN_MARGIN."""
    s = np.asarray(scores, dtype=float)
    if s.size == 0:
        return math.inf
    q1, q3, p90 = np.quantile(s, [0.25, 0.75, 0.90])
    return float(max(q3 + k * (q3 - q1), p90) + MIN_MARGIN)


def sqrt_fence(scores: Sequence[float], k: float) -> float:
    """The autoencoder's rule: Tukey's fence on the square roots of its scores (root mean
    squared errors), squared back; no quantile floor. Why: its errors on normal sessions are
    heavy-tailed (a fence on the raw errors flagged 12-13 % of the histories), and the P90
    floor of :func:`threshold_rule` flags at least a tenth of any history: precision <= 0.2 on
    fleets with 2 % anomalies, recall <= 0.67 with 15 %. The autoencoder applies it to the
    sessions it kept as ordinary to choose them (:mod:`logalyzer.core.autoencoder`,
    ``clean_k``); ``+ 1e-4``: equal scores flag nothing."""
    r = np.sqrt(np.maximum(np.asarray(scores, dtype=float), 0.0))
    if r.size == 0:
        return math.inf
    q1, q3 = np.quantile(r, [0.25, 0.75])
    return float((q3 + k * (q3 - q1)) ** 2 + 1e-4)


@dataclass
class Verdict:
    score: float
    threshold: float
    is_anomaly: bool
    details: dict = field(default_factory=dict)


class LSTMDetector:
    kind = "lstm"

    def __init__(
        self,
        cfg: lstm.LSTMConfig,
        vocab: lstm.Vocab,
        model: lstm.NextKeyLSTM,
        threshold: float = math.inf,
        version: int | None = None,
        reference: dict | None = None,
    ):
        self.cfg, self.vocab, self.model = cfg, vocab, model.eval()
        self.threshold, self.version = threshold, version
        # the known-clean history it learnt from (core.reference.Reference.to_json), or None:
        # learnt from the autoencoder's ordinary sessions of the whole history (core.verdict)
        self.reference = reference

    @classmethod
    def new(cls, cfg: lstm.LSTMConfig, sequences) -> LSTMDetector:
        vocab = lstm.Vocab.build(sequences)
        return cls(cfg, vocab, lstm.NextKeyLSTM(len(vocab), cfg))

    @staticmethod
    def inputs(sessions: Sequence[Mapping]) -> list[list[str]]:
        """What this detector reads of ``sessions`` rows: their event keys."""
        return [s["event_keys"] for s in sessions]

    def training_data(self, sequences) -> np.ndarray:
        return lstm.training_windows(self.vocab, sequences, self.cfg.window)

    def _surprise(self, sequences: Sequence[list[str]]):
        nll, rank, rows_of = lstm.surprise_rows(self.model, self.vocab, sequences, self.cfg.window)
        score, n_miss = lstm.session_scores(nll, rank, rows_of, self.cfg)
        return nll, rank, rows_of, score, n_miss

    def scores(self, sequences: Sequence[list[str]]) -> np.ndarray:
        return self._surprise(sequences)[3]

    def score(self, sequences: Sequence[list[str]]) -> list[Verdict]:
        nll, rank, rows_of, score, n_miss = self._surprise(sequences)
        why = lstm.explain(sequences, nll, rank, rows_of, self.cfg)
        return [
            Verdict(
                s,
                self.threshold,
                s > self.threshold,
                {"events": len(seq), "misses": m, "transitions": w},
            )
            for seq, s, m, w in zip(sequences, score.tolist(), n_miss.tolist(), why)
        ]

    def threshold_for(self, scores: Sequence[float]) -> float:
        return threshold_rule(scores)

    def payload(self) -> dict:
        return {"vocab": self.vocab.keys, "reference": self.reference}


class AEDetector:
    kind = "ae"

    def __init__(
        self,
        cfg: ae.AEConfig,
        scaler: ae.Scaler,
        model: ae.SessionAE,
        threshold: float = math.inf,
        version: int | None = None,
        ordinary_below: float | None = None,
        normals: BoxNormals | None = None,
    ):
        self.cfg, self.scaler, self.model = cfg, scaler, model.eval()
        self.threshold, self.version = threshold, version
        # the score under which a session counts as ordinary (what the LSTM learns from);
        # checkpoints from before the cleaned history lack it: half the threshold, as then
        self.ordinary_below = ordinary_below if ordinary_below is not None else threshold / 2
        # each training box's usual counts (features.BoxNormals); None for a model without
        # box-relative features (box_relative=False, checkpoints from before them)
        self.normals = normals

    @classmethod
    def new(cls, cfg: ae.AEConfig, rows: Sequence[Mapping]) -> AEDetector:
        """Untrained, its scaler and box normals fitted on ``rows`` (the sessions it learns)."""
        names = list(FEATURE_NAMES if cfg.box_relative else FLEET_FEATURE_NAMES)
        normals = BoxNormals.fit(rows, cfg.box_normal_min) if cfg.box_relative else None
        x = feature_matrix(rows, names, normals)
        scaler = ae.Scaler.fit(names, x, SCALE_FLOORS)
        return cls(cfg, scaler, ae.SessionAE(len(names), cfg), normals=normals)

    @staticmethod
    def inputs(sessions: Sequence[Mapping]) -> Sequence[Mapping]:
        """What this detector reads of ``sessions`` rows: the rows themselves (their measures)."""
        return sessions

    def features(self, rows: Sequence[Mapping]) -> np.ndarray:
        """(N, F) the features its scaler names, counts against each row's box's usual."""
        return feature_matrix(rows, self.scaler.names, self.normals)

    def training_data(self, rows: Sequence[Mapping]) -> np.ndarray:
        return self.scaler.transform(self.features(rows))

    def scores(self, rows: Sequence[Mapping]) -> np.ndarray:
        return ae.errors(self.model, self.training_data(rows))[0] if len(rows) else np.zeros(0)

    def score(self, rows: Sequence[Mapping]) -> list[Verdict]:
        if not len(rows):
            return []
        cols = Columns(rows, self.normals)  # one box lookup for the features and the reasons
        raw = cols.matrix(self.scaler.names)
        z = self.scaler.transform(raw)
        err, rebuilt = ae.errors(self.model, z)
        shift = cols.offsets(self.scaler.names)
        why = ae.explain(self.scaler, raw, z, rebuilt, self.cfg.top_features, shift)
        return [
            Verdict(float(e), self.threshold, bool(e > self.threshold), {"features": features})
            for e, features in zip(err.tolist(), why)
        ]

    def threshold_for(self, scores: Sequence[float]) -> float:
        """A fixed distance, whatever the scores (:mod:`logalyzer.core.autoencoder`: a fence
        over them moved from one training to the next); the scores are the protocol's."""
        return self.cfg.threshold_rmse**2

    def ordinary_fence(self, kept: Sequence[float]) -> float:
        """The strict fence over the kept sessions' scores: under it a session is ordinary."""
        return max(sqrt_fence(kept, self.cfg.clean_k), self.cfg.clean_floor_rmse**2)

    def payload(self) -> dict:
        normals = self.normals.to_dict() if self.normals is not None else None
        return {
            "scaler": self.scaler.to_dict(),
            "ordinary_below": self.ordinary_below,
            "normals": normals,
        }


class BaselineDetector:
    """The naive yardstick (:mod:`logalyzer.core.baseline`): fitted, not trained."""

    kind = "baseline"
    model = None

    def __init__(
        self,
        cfg: bl.BaselineConfig,
        mean: Sequence[float],
        scale: Sequence[float],
        threshold: float = math.inf,
        version: int | None = None,
    ):
        self.cfg, self.mean, self.scale = cfg, np.asarray(mean, float), np.asarray(scale, float)
        self.threshold, self.version = threshold, version

    @classmethod
    def new(cls, cfg: bl.BaselineConfig, rows: Sequence[Mapping]) -> BaselineDetector:
        x = bl.matrix(rows)
        return cls(cfg, x.mean(axis=0), np.maximum(x.std(axis=0), cfg.min_scale))

    inputs = staticmethod(AEDetector.inputs)  # the rows themselves, like the autoencoder

    def threshold_for(self, scores: Sequence[float]) -> float:
        """Its own rule: the configured quantile of the training scores."""
        return float(np.quantile(scores, self.cfg.quantile)) if len(scores) else math.inf

    def scores(self, rows: Sequence[Mapping]) -> np.ndarray:
        return bl.max_abs_z(bl.matrix(rows), self.mean, self.scale)[0]

    def score(self, rows: Sequence[Mapping]) -> list[Verdict]:
        x = bl.matrix(rows)
        s, at = bl.max_abs_z(x, self.mean, self.scale)
        return [
            Verdict(
                float(s[i]),
                self.threshold,
                bool(s[i] > self.threshold),
                {"measure": bl.NAMES[at[i]], "value": round(float(x[i, at[i]]), 4)},
            )
            for i in range(len(rows))
        ]

    def payload(self) -> dict:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}


Detector = LSTMDetector | AEDetector | BaselineDetector


def to_bytes(det: Detector, extra: dict | None = None) -> bytes:
    """The self-describing checkpoint of a detector (see the module docstring)."""
    buf = io.BytesIO()
    torch.save(
        {
            "kind": det.kind,
            "config": asdict(det.cfg),
            "threshold": det.threshold,
            "state_dict": det.model.state_dict() if det.model is not None else {},
            **det.payload(),
            "extra": extra or {},
        },
        buf,
    )
    return buf.getvalue()


def _config(cls, saved: dict):
    """A config dataclass from a checkpoint's dict, leaving out fields since retired (a
    checkpoint from before ``AEConfig.threshold_rmse`` holds ``fence_k``): its threshold is
    saved beside it, so it scores as it did."""
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in saved.items() if k in known})


def from_bytes(data: bytes, version: int | None = None) -> Detector:
    """Load a checkpoint made by :func:`to_bytes` (plain types only: ``weights_only``)."""
    ck = torch.load(io.BytesIO(data), weights_only=True)
    if ck["kind"] == "lstm":
        cfg = _config(lstm.LSTMConfig, ck["config"])
        vocab = lstm.Vocab(ck["vocab"])
        model = lstm.NextKeyLSTM(len(vocab), cfg)
        model.load_state_dict(ck["state_dict"])
        return LSTMDetector(cfg, vocab, model, ck["threshold"], version, ck.get("reference"))
    if ck["kind"] == "ae":
        cfg = _config(ae.AEConfig, ck["config"])
        sc = ck["scaler"]
        model = ae.SessionAE(len(sc["names"]), cfg)
        model.load_state_dict(ck["state_dict"])
        scaler = ae.Scaler(sc["names"], sc["mean"], sc["scale"])
        normals = BoxNormals.from_dict(ck.get("normals"))
        return AEDetector(
            cfg, scaler, model, ck["threshold"], version, ck.get("ordinary_below"), normals
        )
    if ck["kind"] == "baseline":
        cfg = _config(bl.BaselineConfig, ck["config"])
        return BaselineDetector(cfg, ck["mean"], ck["scale"], ck["threshold"], version)
    raise ValueError(f"unknown detector kind in checkpoint: {ck['kind']!r}")


def loss_fn(kind: str):
    return {"lstm": lstm.loss, "ae": ae.loss}[kind]


def train_epoch(
    model: torch.nn.Module,
    kind: str,
    data: torch.Tensor,
    opt,
    batch_size: int,
    device: str | torch.device = "cpu",
) -> float:
    """One pass over ``data`` (rows of :meth:`training_data`) in a random order; the mean loss.
    The same loop runs in each Ray Train worker and in :func:`fit_in_process`."""
    loss, total = loss_fn(kind), 0.0
    model.train()
    for x in torch.split(data[torch.randperm(len(data))], batch_size):
        x = x.to(device)
        opt.zero_grad()
        value = loss(model, x)
        value.backward()
        opt.step()
        total += value.item() * len(x)
    return total / max(len(data), 1)


def epochs_for(det: Detector, rows: int) -> int:
    """Passes over ``rows`` training rows: the config's epochs, and for the autoencoder at
    least enough for ``min_steps`` optimiser steps. Why: its threshold is a fence over its own
    errors, and an autoencoder fitted in 60 epochs of 2 batches (a history of 243 sessions)
    had not yet told storms from ordinary sessions (it flagged none of 22 anomalous sessions).
    How many (bench/README.md, "Small histories"): 300 steps found half the anomalies, 1,500
    overfitted the kept sessions (precision 0.6-0.8 on a 136-session fleet), 1,000 was best on
    both small fleets; a fleet of more than ~2,100 sessions makes 1,000 steps in its 60 epochs."""
    min_steps = getattr(det.cfg, "min_steps", 0)
    batches = max(1, math.ceil(rows / det.cfg.batch_size))
    return max(det.cfg.epochs, math.ceil(min_steps / batches))


def fit_in_process(
    det: Detector, data: np.ndarray, epochs: int | None = None, seed: int = 0
) -> list[float]:
    """Train a detector here, without Ray (small data, tests, the HTTP service's fixtures);
    the jobs use :func:`logalyzer.jobs.train.fit` instead. Returns the loss per epoch."""
    torch.manual_seed(seed)
    x = torch.from_numpy(data)
    opt = torch.optim.Adam(det.model.parameters(), lr=det.cfg.lr)
    losses = [
        train_epoch(det.model, det.kind, x, opt, det.cfg.batch_size)
        for _ in range(epochs or epochs_for(det, len(data)))
    ]
    det.model.eval()
    return losses
