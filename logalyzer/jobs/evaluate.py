"""Evaluation (``logalyzer eval``): how well the detectors find what is known to be there.

Two yardsticks:

- **synthetic** — a generated fleet with ground truth (``ground_truth.json`` labels every
  session normal or one of the anomaly kinds). The fleet goes through the real pipeline
  (ingest → sessionize → templates → train → detect) and the stored verdicts are compared
  with the labels: precision, recall and F1 of each detector and of the combined verdict,
  overall and per anomaly kind. Per kind, a detector's precision counts that kind's sessions
  against the *normal* sessions it flagged (sessions of other kinds are left out), so each
  kind's row reads "this kind versus normal playback".
- **hdfs** — the public HDFS-100k benchmark (``tests/data/hdfs-100k``, sessions of
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
import torch

from logalyzer.core import lstm
from logalyzer.core.detectors import LSTMDetector
from logalyzer.core.features import ALL_KINDS
from logalyzer.core.lstm import LSTMConfig
from logalyzer.core.reference import Reference
from logalyzer.core.synth import SEQUENCE_FAULT_KINDS, FleetSpec, generate_fleet
from logalyzer.errors import LogalyzerError
from logalyzer.jobs.detect import detect
from logalyzer.jobs.pipeline import run_pipeline
from logalyzer.jobs.train import fit, train
from logalyzer.settings import Settings
from logalyzer.store.db import Database
from logalyzer.store.scores import count_sessions, session_flags

#: The public HDFS-100k sample, inside the repository (tests/data/README.md says where from).
HDFS_DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "hdfs-100k"


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
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
        }


def prf(predicted, actual) -> PRF:
    p, a = np.asarray(predicted, bool), np.asarray(actual, bool)
    return PRF(int((p & a).sum()), int((p & ~a).sum()), int((~p & a).sum()))


# --------------------------------------------------------------------------- synthetic


def _truth_key(rxid: str, ts) -> tuple[str, str]:
    if isinstance(ts, datetime):
        ts = ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
    return rxid, ts


def score_against_truth(db: Database, truth_path: str | Path, after=None) -> dict:
    """Compare the stored verdicts with a synthetic fleet's labels (module docstring).

    Beside each detector and the stored combined verdict, two verdict rules side by side:
    ``ae`` (the autoencoder alone, the verdict without a reference) and ``ae_or_lstm`` (what
    the verdict is when the LSTM takes part). ``sequence_only``: the sequence-only kinds
    together against the normal sessions, what only the LSTM can find. ``after`` (the end of
    the fleet's clean reference window): the same figures once more for the sessions starting
    after it, the LSTM's unseen sessions (``outside_reference``)."""
    truth = json.loads(Path(truth_path).read_text())
    labels = {_truth_key(s["rxid"], s["start_ts"]): s["anomaly_kind"] for s in truth["sessions"]}
    rows = session_flags(db, ALL_KINDS)
    found = {_truth_key(r[0], r[1]): r[2:] for r in rows}
    starts = {_truth_key(r[0], r[1]): r[1] for r in rows}
    missing = [k for k in labels if k not in found]
    keys = [k for k in labels if k in found]
    kinds = [labels[k] for k in keys]
    names = (*ALL_KINDS, "combined")
    flags = np.array([found[k] for k in keys], bool).reshape(-1, len(names))
    at = {n: j for j, n in enumerate(names)}
    rules = {
        "ae": flags[:, at["ae"]],
        "ae_or_lstm": flags[:, at["ae"]] | flags[:, at["lstm"]],
    }
    columns = {**{n: flags[:, j] for j, n in enumerate(names)}, **rules}
    out = {
        "sessions": len(kinds),
        "anomalous": int(sum(k is not None for k in kinds)),
        "unmatched": len(missing),
        **_blocks(columns, kinds, np.ones(len(kinds), bool)),
    }
    cohort_of = {d["rxid"]: d.get("cohorts", []) for d in truth["devices"]}
    if any(cohort_of.values()):
        out["per_cohort"] = _per_cohort(columns, kinds, [cohort_of[k[0]] for k in keys])
    if after is not None:
        late = np.array([starts[k] >= after for k in keys], bool)
        out["outside_reference"] = {
            "sessions": int(late.sum()),
            **_blocks(columns, kinds, late),
        }
    return out


def _per_cohort(columns: dict[str, np.ndarray], kinds: list, cohorts: list[list[str]]) -> dict:
    """Per cohort of boxes (``FleetSpec.cohorts``; "none": boxes in no cohort) the sessions of
    its boxes: P/R/F1 of every column and the share of their *normal* sessions each flagged
    (the false alarms a cohort's own normal costs)."""
    actual = np.array([k is not None for k in kinds], bool)
    out = {}
    for name in sorted({c for cs in cohorts for c in cs}) + ["none"]:
        among = np.array([name in cs if name != "none" else not cs for cs in cohorts], bool)
        normal = among & ~actual
        out[name] = {
            "sessions": int(among.sum()),
            "anomalous": int((among & actual).sum()),
            **{n: prf(c[among], actual[among]).as_dict() for n, c in columns.items()},
            "normal_flagged": {
                n: round(float(c[normal].mean()), 4) if normal.any() else 0.0
                for n, c in columns.items()
            },
        }
    return out


def _blocks(columns: dict[str, np.ndarray], kinds: list, among: np.ndarray) -> dict:
    """P/R/F1 of every column over the sessions ``among``: overall, per kind (that kind
    against the normal sessions) and the sequence-only kinds together (when there are any)."""
    kinds_a = np.array([k or "" for k in kinds], dtype=object)
    actual = kinds_a != ""
    out = {
        "overall": {n: prf(c[among], actual[among]).as_dict() for n, c in columns.items()},
        "per_kind": {},
    }
    groups = {k: kinds_a == k for k in sorted(set(kinds_a[among]) - {""})}
    seq = np.isin(kinds_a, SEQUENCE_FAULT_KINDS)
    for name, members in groups.items():
        keep = among & (members | ~actual)
        out["per_kind"][name] = {
            "sessions": int((members & among).sum()),
            **{n: prf(c[keep], actual[keep]).as_dict() for n, c in columns.items()},
        }
    if (seq & among).any():
        keep = among & (seq | ~actual)
        out["sequence_only"] = {
            "sessions": int((seq & among).sum()),
            **{n: prf(c[keep], actual[keep]).as_dict() for n, c in columns.items()},
        }
    return out


def run_synthetic(
    settings: Settings,
    db: Database,
    out_dir: Path,
    devices: int,
    hours: float,
    seed: int,
    workers: int = 2,
    progress: bool | None = None,
    repeats: int = 1,
    train_seed: int = 0,
    anomaly_rate: float = FleetSpec.anomaly_rate,
    epochs: int | None = None,
    system_faults: float = 0.0,
    sequence_faults: float = 0.0,
    reference_clean_hours: float = 0.0,
    cohorts: str | None = None,
) -> dict:
    """Generate a fleet, ingest and sessionize it once, then train and detect ``repeats`` times
    (training seeds ``train_seed``, ``train_seed + 1``, ...) and score each run's verdicts.
    The result is the last run's, with ``runs`` (every run's overall figures) and ``spread``
    (mean and standard deviation over the runs): how far a user's verdicts move when the same
    history is trained on again. The database must hold no sessions yet: the comparison covers
    every stored session. ``reference_clean_hours``: the fleet's first hours hold no anomaly
    (``FleetSpec.reference_clean_hours``) and the LSTM learns from them (``train``'s
    reference), as an operator who names a known-clean period."""
    if count_sessions(db):
        raise LogalyzerError(
            "the database already holds sessions",
            hint="point LOGALYZER_DSN (or LOGALYZER_HOME) at an empty database",
        )
    spec = FleetSpec(
        devices=devices,
        hours=hours,
        seed=seed,
        anomaly_rate=anomaly_rate,
        noise_lines_per_minute=5,
        system_faults=system_faults,
        sequence_faults=sequence_faults,
        reference_clean_hours=reference_clean_hours,
        cohorts=cohorts,
    )
    until = spec.reference_until()
    reference = Reference(until=until) if until else None
    fleet = generate_fleet(out_dir, spec)
    # the templates step too, as `make demo` runs it: the autoencoder reads its verdicts
    steps = ["ingest", "sessionize", "templates"]
    run_pipeline(settings, db, [str(out_dir)], steps, progress=progress)
    runs = []
    for i in range(repeats):
        trained = train(
            settings,
            db,
            workers=workers,
            epochs=epochs,
            seed=train_seed + i,
            progress=progress,
            reference=reference,
        )
        detect(settings, db, rescore=True, progress=progress)
        result = score_against_truth(db, fleet.truth_path, after=until)
        result["train_seed"] = train_seed + i
        result["models"] = {
            t.detector: {
                "version": t.version,
                "threshold": t.threshold,
                "flagged_share": t.flagged_share,
            }
            for t in trained
        }
        runs.append(result)
    result["spec"] = {
        "devices": devices,
        "hours": hours,
        "seed": seed,
        "anomaly_rate": anomaly_rate,
        "system_faults": system_faults,
        "sequence_faults": sequence_faults,
        "reference_clean_hours": reference_clean_hours,
        "cohorts": cohorts,
        "reference": reference.to_json() if reference else None,
    }
    result["runs"] = [{"train_seed": r["train_seed"], **r["overall"]} for r in runs]
    result["spread"] = spread(runs)
    return result


def spread(runs: list[dict]) -> dict:
    """Mean and (population) standard deviation of precision, recall and F1 over runs, per
    detector, overall, per anomaly kind and per cohort of boxes ("cohort NAME"):
    {"overall"|kind|"cohort NAME": {detector: {"f1": [mean, std]}}}."""

    def ms(values) -> list[float]:
        return [round(float(np.mean(values)), 4), round(float(np.std(values)), 4)]

    def block(parts: list[dict]) -> dict:
        return {
            name: {m: ms([p[name][m] for p in parts]) for m in ("precision", "recall", "f1")}
            for name in (*ALL_KINDS, "combined")
        }

    out = {"overall": block([r["overall"] for r in runs])}
    for kind in runs[0]["per_kind"]:
        out[kind] = block([r["per_kind"][kind] for r in runs])
    for cohort in runs[0].get("per_cohort", {}):
        out[f"cohort {cohort}"] = block([r["per_cohort"][cohort] for r in runs])
    return out


# --------------------------------------------------------------------------- HDFS


def load_hdfs(folder: Path | None = None) -> list[dict]:
    """The benchmark's sessions; ``folder`` defaults to the copy in the checkout."""
    folder = folder or HDFS_DATA
    path = Path(folder) / "HDFS_100k_sessions.csv"
    if not path.is_file():
        raise LogalyzerError(
            f"no HDFS benchmark at {path}", hint="pass --data pointing at the hdfs-100k folder"
        )
    with path.open(newline="") as f:
        return [
            {
                "seq": r["TemplateSequence"].split(),
                "anomaly": r["Label"] == "Anomaly",
                "split": r["DeepLoglizerSplit"],
                "normal_train": r["InTrainSemiSupervised"] == "1",
            }
            for r in csv.DictReader(f)
        ]


def run_hdfs(
    settings: Settings,
    folder: Path | None = None,
    workers: int = 2,
    seed: int = 0,
    epochs: int = 20,
    g_grid: tuple[int, ...] = (2, 3, 4, 5, 6),
    p_grid: tuple[float, ...] = (1e-3, 1e-4, 1e-6),
) -> dict:
    """The HDFS protocol (module docstring), training with Ray Train like the fleet's LSTM.
    ``top_g``, ``min_p`` and the threshold are chosen together on the validation part."""
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

    def surprise(part):  # (nll, rank, rows per session), once for every candidate setting
        return lstm.surprise_rows(det.model, det.vocab, [r["seq"] for r in part], det.cfg.window)

    def scores(stats, cfg):
        return lstm.session_scores(*stats, cfg)[0]

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
    return {
        "train_normal_sessions": len(learn),
        "validation_sessions": len(val),
        "test_sessions": len(test),
        "test_anomalies": int(sum(r["anomaly"] for r in test)),
        "chosen": {
            "top_g": det.cfg.top_g,
            "min_p": det.cfg.min_p,
            "threshold": round(best[2], 4),
            "validation_f1": round(best[0], 4),
        },
        "test": result.as_dict(),
        "training": {
            k: metrics[k] for k in ("losses", "epoch_seconds", "sessions_per_s", "workers")
        },
    }
