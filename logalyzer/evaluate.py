"""Evaluation (``logalyzer eval``): how well the detectors find what is known to be there.

Two yardsticks:

- **synthetic** — a generated fleet with ground truth (``ground_truth.json`` labels every
  session normal or one of the anomaly kinds). The fleet goes through the real pipeline
  (ingest → sessionize → train → detect) and the stored verdicts are compared with the labels:
  precision, recall and F1 of each detector and of the combined verdict, overall and per
  anomaly kind. Per kind, a detector's precision counts that kind's sessions against the
  *normal* sessions it flagged (sessions of other kinds are left out), so each kind's row reads
  "this kind versus normal playback".
- **hdfs** — the public HDFS-100k benchmark (``../shared/data/hdfs-100k``, sessions of
  template ids). The protocol of its README: the LSTM learns from the train split's normal
  sessions only (80 % of the train split, seeded); ``top_g``, ``min_p`` and the threshold are
  chosen on the other 20 % (normal and anomalous: best F1, and among equals the setting that
  flags the fewest sessions); precision, recall and F1 are reported once on the test split.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np

from .db import Database
from .detectors import LSTMDetector
from .errors import LogalyzerError
from .lstm import LSTMConfig
from .settings import Settings


@dataclass
class PRF:
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict:
        return {"precision": round(self.precision, 4), "recall": round(self.recall, 4),
                "f1": round(self.f1, 4), "tp": self.tp, "fp": self.fp, "fn": self.fn}


def prf(predicted, actual) -> PRF:
    p, a = np.asarray(predicted, bool), np.asarray(actual, bool)
    return PRF(int((p & a).sum()), int((p & ~a).sum()), int((~p & a).sum()))


# --------------------------------------------------------------------------- synthetic


def _truth_key(rxid: str, ts) -> tuple[str, str]:
    if isinstance(ts, datetime):
        ts = ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
    return rxid, ts


def score_against_truth(db: Database, truth_path: str | Path) -> dict:
    """Compare the stored verdicts with a synthetic fleet's labels (module docstring)."""
    truth = json.loads(Path(truth_path).read_text())
    labels = {_truth_key(s["rxid"], s["start_ts"]): s["anomaly_kind"] for s in truth["sessions"]}
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT s.rxid, s.start_ts, coalesce(bool_or(a.is_anomaly) FILTER (WHERE a.detector = 'lstm'), false),"
            " coalesce(bool_or(a.is_anomaly) FILTER (WHERE a.detector = 'ae'), false),"
            " coalesce(bool_or(c.is_anomaly), false)"
            " FROM sessions s LEFT JOIN anomalies a USING (rxid, session_id)"
            " LEFT JOIN anomalies_consolidated c USING (rxid, session_id)"
            " GROUP BY s.rxid, s.session_id, s.start_ts").fetchall()
    found = {_truth_key(r[0], r[1]): r[2:] for r in rows}
    missing = [k for k in labels if k not in found]
    kinds = [labels[k] for k in labels if k in found]
    flags = np.array([found[k] for k in labels if k in found], bool).reshape(-1, 3)
    actual = np.array([k is not None for k in kinds])
    out = {"sessions": len(kinds), "anomalous": int(actual.sum()), "unmatched": len(missing),
           "overall": {}, "per_kind": {}}
    for j, name in enumerate(("lstm", "ae", "combined")):
        out["overall"][name] = prf(flags[:, j], actual).as_dict()
    for kind in sorted({k for k in kinds if k}):
        keep = np.array([k is None or k == kind for k in kinds])
        out["per_kind"][kind] = {"sessions": int(sum(k == kind for k in kinds)), **{
            name: prf(flags[keep, j], actual[keep]).as_dict()
            for j, name in enumerate(("lstm", "ae", "combined"))}}
    return out


def run_synthetic(settings: Settings, db: Database, out_dir: Path, devices: int, hours: float,
                  seed: int, workers: int = 2, progress: bool | None = None) -> dict:
    """Generate a fleet, run the whole pipeline on it, and score the verdicts."""
    from .detect import detect
    from .ingest import ingest
    from .sessionize import sessionize
    from .synth import FleetSpec, generate_fleet
    from .train import train

    spec = FleetSpec(devices=devices, hours=hours, seed=seed, noise_lines_per_minute=5)
    fleet = generate_fleet(out_dir, spec)
    ingest(settings, db, [str(out_dir)], progress=progress)
    sessionize(settings, db, progress=progress)
    trained = train(settings, db, workers=workers, progress=progress)
    detect(settings, db, progress=progress)
    result = score_against_truth(db, fleet.truth_path)
    result["spec"] = {"devices": devices, "hours": hours, "seed": seed}
    result["models"] = {t.detector: {"version": t.version, "threshold": t.threshold,
                                     "flagged_share": t.flagged_share} for t in trained}
    return result


# --------------------------------------------------------------------------- HDFS


def load_hdfs(folder: Path) -> list[dict]:
    path = Path(folder) / "HDFS_100k_sessions.csv"
    if not path.is_file():
        raise LogalyzerError(f"no HDFS benchmark at {path}",
                             hint="pass --data pointing at the hdfs-100k folder")
    with path.open(newline="") as f:
        return [{"seq": r["TemplateSequence"].split(), "anomaly": r["Label"] == "Anomaly",
                 "split": r["DeepLoglizerSplit"], "normal_train": r["InTrainSemiSupervised"] == "1"}
                for r in csv.DictReader(f)]


def run_hdfs(settings: Settings, folder: Path, workers: int = 2, seed: int = 0,
             epochs: int = 20, g_grid: tuple[int, ...] = (2, 3, 4, 5, 6),
             p_grid: tuple[float, ...] = (1e-3, 1e-4, 1e-6)) -> dict:
    """The HDFS protocol (module docstring), training with Ray Train like the fleet's LSTM.
    ``top_g``, ``min_p`` and the threshold are chosen together on the validation part."""
    import torch

    from . import lstm
    from .train import fit

    rows = load_hdfs(folder)
    train_rows = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    order = np.random.default_rng(seed).permutation(len(train_rows))
    n_val = len(train_rows) // 5
    val = [train_rows[i] for i in order[:n_val]]
    learn = [train_rows[i]["seq"] for i in order[n_val:] if train_rows[i]["normal_train"]]
    torch.manual_seed(seed)
    det = LSTMDetector.new(replace(LSTMConfig(), epochs=epochs), learn)
    det, metrics = fit(settings, det, det.training_data(learn), len(learn), workers, seed=seed)

    def surprise(part):  # (nll, rank) per session, computed once for every candidate setting
        return [lstm.event_surprise(det.model, det.vocab, r["seq"], det.cfg.window) for r in part]

    def scores(stats, cfg):
        return np.array([lstm.session_score(n, k, cfg) for n, k in stats])

    val_stats, labels = surprise(val), [r["anomaly"] for r in val]
    best, best_key = (-1.0, det.cfg, 0.0), (-1.0, 0)
    for g in g_grid:
        for p in p_grid:
            cfg = replace(det.cfg, top_g=g, min_p=p)
            vs = scores(val_stats, cfg)
            for th in np.unique(vs):
                flagged = vs > th
                # best F1; among equals, the setting that flags the fewest sessions
                key = (round(prf(flagged, labels).f1, 6), -int(flagged.sum()))
                if key > best_key:
                    best, best_key = (key[0], cfg, float(th)), key
    det.cfg, det.threshold = best[1], best[2]
    ts = scores(surprise(test), det.cfg)
    result = prf(ts > det.threshold, [r["anomaly"] for r in test])
    return {"train_normal_sessions": len(learn), "validation_sessions": len(val),
            "test_sessions": len(test), "test_anomalies": int(sum(r["anomaly"] for r in test)),
            "chosen": {"top_g": det.cfg.top_g, "min_p": det.cfg.min_p,
                       "threshold": round(best[2], 4), "validation_f1": round(best[0], 4)},
            "test": result.as_dict(), "training": {k: metrics[k] for k in (
                "losses", "epoch_seconds", "sessions_per_s", "workers")}}
