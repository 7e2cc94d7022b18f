"""The training job: fleet history → detectors, with Ray Train (``logalyzer train``).

For each detector: read the sessions (and their event keys) from PostgreSQL, build what the
model needs to read its input (the LSTM's vocabulary, the autoencoder's scaler) on the driver,
turn the sessions into a tensor dataset (LSTM: one row per event = its history and itself;
AE: one row per session), and fit it with a ``TorchTrainer`` on ``workers`` data-parallel
workers (DDP, ``gloo`` on CPU; ``use_gpu`` puts each worker on a GPU). About ten times per run
rank 0 reports its loss with a checkpoint of the weights; Ray Train keeps the best one (lowest
loss).
The driver loads it, scores every training session, sets the threshold by the documented rule
(:func:`logalyzer.core.detectors.threshold_rule`) and registers the version in ``models``.

Training needs no labels: the history holds some anomalies, as real data does. Two things keep
them from being learnt as normal:

- the autoencoder trains first, on every session, then again on the sessions it finds
  ordinary (a cleaned history, see :mod:`logalyzer.core.autoencoder`); its bounded output keeps
  storms from being rebuilt however often they occur;
- the LSTM then learns only from the sessions the autoencoder finds ordinary (score under its
  ``ordinary_below``; the newest registered autoencoder when only the LSTM is trained).
  Without this cascade the LSTM learnt each anomaly's sequence from its ~50 occurrences in
  a synthetic fleet and then found only its first event surprising (F1 ≈ 0 on its own);
  with it, it flags with a precision of about 0.98.

The threshold rule (:func:`logalyzer.core.detectors.threshold_rule`) is robust to the rest.

The cascade cannot keep out what the autoencoder rightly finds ordinary: a sequence-only fault
(ordinary amounts, events in a wrong order) that recurs in the history is learnt as ordinary.
So the operator may name a **reference** (:mod:`logalyzer.core.reference`: a time window
and/or boxes known to be clean): the LSTM then learns only from the reference's sessions
(all of them: the operator vouches for them), by probability only and longer
(:data:`logalyzer.core.lstm.REFERENCE_CONFIG`), its threshold still set over the whole
history; the reference is stored with the model, and such an LSTM takes part in the combined
verdict (:func:`logalyzer.core.verdict.verdict_kinds`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import ray
import torch
from ray.util import metrics as ray_metrics
from ray.util.queue import Queue
from tqdm import tqdm

from logalyzer.core import autoencoder, baseline, lstm
from logalyzer.core.detectors import (
    AEDetector,
    BaselineDetector,
    Detector,
    LSTMDetector,
    epochs_for,
    fit_in_process,
    from_bytes,
    to_bytes,
    train_epoch,
)
from logalyzer.core.features import ALL_KINDS, failed_sessions
from logalyzer.core.reference import BadReference, Reference
from logalyzer.errors import LogalyzerError
from logalyzer.jobs.rayutil import ensure_ray
from logalyzer.settings import Settings
from logalyzer.store.db import Database
from logalyzer.store.registry import ModelNotFound, load, register
from logalyzer.store.scores import load_sessions

MIN_SESSIONS = 20


class NotEnoughData(LogalyzerError):
    pass


@dataclass
class TrainResult:
    detector: str
    version: int
    threshold: float
    sessions: int
    rows: int
    epochs: int
    workers: int
    seconds: float
    sessions_per_s: float  # training throughput: sessions per second of an epoch
    losses: list[float] = field(default_factory=list)
    flagged_share: float = 0.0  # share of the training sessions above the threshold


# --------------------------------------------------------------------------- data


def new_detector(kind: str, sessions: list[dict], overrides: dict | None = None) -> Detector:
    """An untrained detector whose vocabulary / scaler come from ``sessions``."""
    cls, cfg = {
        "lstm": (LSTMDetector, lstm.LSTMConfig()),
        "ae": (AEDetector, autoencoder.AEConfig()),
        "baseline": (BaselineDetector, baseline.BaselineConfig()),
    }[kind]
    return cls.new(replace(cfg, **(overrides or {})), cls.inputs(sessions))


def training_array(det: Detector, sessions: list[dict]) -> np.ndarray:
    return det.training_data(det.inputs(sessions))


def session_scores(det: Detector, sessions: list[dict]) -> np.ndarray:
    return det.scores(det.inputs(sessions))


# --------------------------------------------------------------------------- Ray Train


def train_loop_per_worker(config: dict) -> None:
    """One data-parallel worker: the untrained detector travels in ``config`` as checkpoint
    bytes (so every worker has the same vocabulary); rank 0 reports a checkpoint about ten
    times a run (every worker must call report as often)."""
    import ray.train.torch  # as in fit(): Ray Train only once Ray (and its Data logging) is set up

    _quiet_train_logs()
    rank = ray.train.get_context().get_world_rank()
    world = ray.train.get_context().get_world_size()
    seed_everything(config["seed"] + rank)
    det = from_bytes(config["init"])  # the same initial weights on every worker (and run)
    model = ray.train.torch.prepare_model(det.model.train())
    opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
    device = ray.train.torch.get_device()
    # Every worker takes rows rank, rank + n, ... of the one array in the object store: the
    # same rows in the same order every run. (A Ray Data shard is not: which blocks reach
    # which worker varies between runs, and so did the trained weights.) The rows are small
    # (10 M events are ~0.9 GB of int64 windows over all workers) and read once.
    data = torch.from_numpy(np.ascontiguousarray(worker_rows(ray.get(config["data"]), rank, world)))
    # The config's batch size is the global one: each of n workers takes 1/n of it, so the
    # optimisation (and its result) does not change with the number of workers.
    batch_size = max(1, config["batch_size"] // world)
    report_every = max(1, config["epochs"] // 10)
    history: list[float] = []
    epochs_done = ray_metrics.Counter(
        "logalyzer_train_epochs", "training epochs done (rank 0)", tag_keys=("detector",)
    )
    for epoch in range(config["epochs"]):
        t0 = time.perf_counter()
        history.append(train_epoch(model, det.kind, data, opt, batch_size, device))
        if rank == 0:
            epochs_done.inc(1, tags={"detector": det.kind})
            _tell(config.get("progress"), (epoch + 1, history[-1]))
        if (epoch + 1) % report_every and epoch + 1 < config["epochs"]:
            continue
        reported = {
            "epoch": epoch,
            "loss": history[-1],
            "rows": len(data),
            "seconds": time.perf_counter() - t0,
            "history": json.dumps(history),
        }
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                weights = getattr(model, "module", model).state_dict()
                torch.save(weights, os.path.join(tmp, "weights.pt"))
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(reported, checkpoint=checkpoint)


def worker_rows(rows: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Worker ``rank``'s rows: ``rank``, ``rank + world``, ..., the same number for every
    worker. Why the same: data-parallel training averages the gradients of all workers at
    every batch, so a worker with one batch more than the others waits for them forever. With
    rows[rank::world] that happened whenever the rows were 2·64·k + 1 (64 rows a batch on each
    of two workers): `eval synthetic` hung in training. Up to ``world - 1`` rows are left out;
    with fewer rows than workers, every worker takes them all."""
    if len(rows) < world:
        return rows
    return rows[rank : len(rows) // world * world : world]


def _tell(queue, item) -> None:
    """Progress for the driver's bar: best effort, never blocks or fails training."""
    if queue is not None:
        try:
            queue.put_nowait(item)
        except Exception:  # noqa: BLE001 (a full queue or a driver gone: the bar is only a view)
            pass


def seed_everything(seed: int) -> None:
    """Seed every generator a fit draws from (weights, batch order, anything numpy or random
    draws), so one seed gives one model: retraining on the same sessions changes nothing."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _quiet_train_logs() -> None:
    """Ray Train's workers log every report and checkpoint at INFO (two lines per epoch and
    worker, forwarded to the terminal); the job prints its own summary. Some of those loggers
    are named by file path, not under ``ray.train``, hence the match on both."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("ray.train") or "/ray/train/" in name:
            logging.getLogger(name).setLevel(logging.WARNING)


def _fit_showing(trainer, progress, kind: str, epochs: int):
    """``trainer.fit()``, with a bar of its epochs and loss on the terminal when ``progress``
    (the queue rank 0 writes to) is given: the fit runs on a thread, the bar here."""
    if progress is None:
        return trainer.fit()
    out: dict = {}

    def run() -> None:
        try:
            out["result"] = trainer.fit()
        except BaseException as exc:  # noqa: BLE001 (raised again below, on the caller's thread)
            out["error"] = exc

    thread = threading.Thread(target=run, name=f"fit-{kind}", daemon=True)
    thread.start()
    with tqdm(total=epochs, unit="epoch", desc=f"train {kind}", file=sys.stderr) as bar:
        while thread.is_alive() or not progress.empty():
            try:
                epoch, loss = progress.get(timeout=0.5)
            except Exception:  # noqa: BLE001 (ray.util.queue.Empty: nothing new yet)
                continue
            bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
            bar.update(epoch - bar.n)
    thread.join()
    ray.kill(progress.actor)
    if "error" in out:
        raise out["error"]
    return out["result"]


def fit(
    settings: Settings,
    det: Detector,
    data: np.ndarray,
    sessions: int,
    workers: int = 2,
    use_gpu: bool = False,
    seed: int = 0,
    show: bool = False,
) -> tuple[Detector, dict]:
    """Train ``det`` on ``data`` with a TorchTrainer; return it with the best weights, and the
    run's metrics. ``show``: a progress bar of the epochs on stderr."""
    ensure_ray(settings)
    # Ray Train imports Ray Data, which reads its logging config at import: after ensure_ray
    import ray.train
    from ray.train.torch import TorchTrainer

    cfg, epochs = det.cfg, epochs_for(det, len(data))
    # rank 0 tells the driver each epoch's loss through a small actor, for the progress bar
    progress = Queue(maxsize=1000, actor_options={"num_cpus": 0}) if show else None
    storage = Path(settings.home).expanduser() / "ray_results"
    storage.mkdir(parents=True, exist_ok=True)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "init": to_bytes(det),
            "epochs": epochs,
            "lr": cfg.lr,
            "batch_size": cfg.batch_size,
            "seed": seed,
            "data": ray.put(data),
            "progress": progress,
        },
        scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=use_gpu),
        run_config=ray.train.RunConfig(
            name=f"{det.kind}-{int(time.time())}",
            storage_path=str(storage),
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute="loss", checkpoint_score_order="min"
            ),
        ),
    )
    result = _fit_showing(trainer, progress, det.kind, epochs)
    best, metrics = (
        result.best_checkpoints[0]
        if result.best_checkpoints
        else (result.checkpoint, result.metrics)
    )
    with best.as_directory() as d:
        weights = torch.load(os.path.join(d, "weights.pt"), weights_only=True, map_location="cpu")
    det.model.load_state_dict(weights)
    det.model.eval()
    last = result.metrics or metrics
    losses = json.loads(last.get("history", "[]"))
    epoch_s = float(last.get("seconds") or 0.0)
    return det, {
        "losses": losses,
        "best_loss": metrics.get("loss"),
        "workers": workers,
        "gpu": use_gpu,
        "epoch_seconds": epoch_s,
        "sessions_per_s": sessions / epoch_s if epoch_s else None,
        "rows_per_epoch": int(len(data)),
    }


def train(
    settings: Settings,
    db: Database,
    detectors: tuple[str, ...] = ALL_KINDS,
    workers: int = 2,
    use_gpu: bool = False,
    rxids: set[str] | None = None,
    epochs: int | None = None,
    seed: int = 0,
    progress: bool | None = None,
    reference: Reference | None = None,
) -> list[TrainResult]:
    """Train the asked detectors on the fleet's sessions and register one version of each.
    ``reference``: the known-clean part of the history the LSTM learns from (module
    docstring); the other detectors learn from the whole history as without it."""
    unknown = [d for d in detectors if d not in ALL_KINDS]
    if unknown:
        raise LogalyzerError(
            f"unknown detector(s): {', '.join(unknown)}",
            hint=f"detectors are: {', '.join(ALL_KINDS)}",
        )
    if reference is not None and "lstm" not in detectors:
        raise BadReference(
            "a reference history is only for the LSTM, and it is not among the detectors",
            hint="add lstm to --detectors, or leave out --reference-*",
        )
    show = sys.stderr.isatty() if progress is None else progress
    sessions = load_sessions(db, rxids)
    if len(sessions) < MIN_SESSIONS:
        raise NotEnoughData(
            f"{len(sessions)} sessions to learn from; training needs at least {MIN_SESSIONS}",
            hint="ingest and sessionize more logs first",
        )
    # checked before any training: a reference without sessions is the user's mistake
    ref_sessions = reference.select(sessions, MIN_SESSIONS) if reference else None
    trained_on = {
        "sessions": len(sessions),
        "devices": len({s["rxid"] for s in sessions}),
        "from": min(s["start_ts"] for s in sessions).isoformat(),
        "to": max(s["start_ts"] for s in sessions).isoformat(),
    }
    out: list[TrainResult] = []
    ae_det, ae_scores = None, None  # the autoencoder trained here, and its scores of sessions
    for kind in sorted(detectors, key=lambda k: k != "ae"):  # the autoencoder first
        t0 = time.perf_counter()
        learn, extra = sessions, {}
        if kind == "lstm":
            ae_det = ae_det or _latest_ae(db)
            learn, extra = _lstm_history(ae_det, sessions, ae_scores, reference, ref_sessions)
        if show and kind == "baseline":
            print(f"fitting the baseline on {len(learn):,} sessions...", file=sys.stderr)
        elif show:
            of = f" of the reference ({reference.describe()})" if extra.get("reference") else ""
            print(
                f"training {kind} on {len(learn):,} sessions{of} with {workers} worker(s)...",
                file=sys.stderr,
            )
        overrides = {**extra.get("overrides", {}), **({"epochs": epochs} if epochs else {})}
        if kind == "ae":
            det, data, metrics, learn, scores = _fit_ae(
                settings, sessions, overrides, workers, use_gpu, seed, show
            )
        else:
            seed_everything(seed)  # the initial weights: one seed, one model
            det = new_detector(kind, learn, overrides)
            if kind == "lstm" and reference is not None:
                det.reference = reference.to_json()
            if det.model is None:  # the baseline: fitted by new_detector, nothing to train
                data, metrics = np.zeros((len(learn), 0)), {"losses": [], "sessions_per_s": None}
            else:
                data = training_array(det, learn)
                det, metrics = fit(settings, det, data, len(learn), workers, use_gpu, seed, show)
            scores = session_scores(det, sessions)
            det.threshold = det.threshold_for(scores)
        flagged = float((scores > det.threshold).mean())
        metrics.update(
            score_quantiles={
                q: float(np.quantile(scores, q)) for q in (0.25, 0.5, 0.75, 0.9, 0.99)
            },
            flagged_share=flagged,
            config=asdict(det.cfg),
            learnt_from=len(learn),
        )
        about = {**trained_on, "learnt_from": len(learn)}
        if extra.get("reference"):
            about["reference"] = extra["reference"]
        version = register(db, det, metrics, about)
        if kind == "ae":
            ae_det, ae_scores = det, scores
        out.append(
            TrainResult(
                kind,
                version,
                det.threshold,
                len(learn),
                len(data),
                len(metrics["losses"]),
                workers,
                time.perf_counter() - t0,
                metrics["sessions_per_s"] or math.nan,
                metrics["losses"],
                flagged,
            )
        )
    return out


def _fit_ae(settings, sessions, overrides, workers, use_gpu, seed, show, in_process=False):
    """The autoencoder on a cleaned history (:mod:`logalyzer.core.autoencoder`): fitted on
    every session but the failed ones, then again, scaler included, on those it scored under
    its strict fence (``clean_rounds`` fits choose them, in this process), the last fit with
    Ray Train (here too with ``in_process``: experiments in bench/); its threshold is
    ``AEConfig.threshold_rmse``.
    Every fit after the first shows rare ordinary sessions more often (:func:`balanced`).
    Returns (detector, training array with those repeats, metrics, the sessions it learnt
    from, every session's score)."""
    cfg = replace(autoencoder.AEConfig(), **(overrides or {}))
    failed = failed_sessions(sessions)  # never ordinary (the autoencoder module's docstring)
    keep, rounds = ~failed, cfg.clean_rounds
    if keep.sum() < MIN_SESSIONS:  # a history of little but failures: learn from all of it
        keep, failed = np.ones(len(sessions), bool), np.zeros(len(sessions), bool)
    for round_ in range(rounds):  # choosing the sessions: in this process (a Ray Train run
        # costs ~30 s of start-up on a small machine, these fits a few seconds each)
        learn = [s for s, k in zip(sessions, keep) if k]
        seed_everything(seed)  # every fit starts from the same weights: one seed, one model
        det = new_detector("ae", learn, overrides)
        data = training_array(det, learn)  # the first fit learns from every session as is
        fit_in_process(det, balanced(det, data) if round_ else data, seed=seed)
        scores = session_scores(det, sessions)
        ordinary = (scores <= det.ordinary_fence(scores[keep])) & ~failed
        ordinary |= _ordinary_for_their_box(det, sessions, scores, keep) & ~failed
        if ordinary.sum() < MIN_SESSIONS:
            break
        keep = ordinary
        if show:
            print(
                f"round {round_ + 1} of {rounds}: ae finds {int(keep.sum()):,} of "
                f"{len(sessions):,} sessions ordinary",
                file=sys.stderr,
            )
    learn = [s for s, k in zip(sessions, keep) if k]  # the model itself: with Ray Train
    seed_everything(seed)
    det = new_detector("ae", learn, overrides)
    data = balanced(det, training_array(det, learn))
    if in_process:
        metrics = {"losses": fit_in_process(det, data, seed=seed)}
    else:
        det, metrics = fit(settings, det, data, len(learn), workers, use_gpu, seed, show)
    scores = session_scores(det, sessions)
    det.threshold = det.threshold_for(scores[keep])
    det.ordinary_below = det.ordinary_fence(scores[keep])
    metrics["clean_rounds"], metrics["kept"] = rounds, int(keep.sum())
    return det, data, metrics, learn, scores


def balanced(det, data: np.ndarray) -> np.ndarray:
    """The training rows, rare ordinary ones repeated (``autoencoder.balance_copies``)."""
    copies = autoencoder.balance_copies(data, det.cfg.rare_share, det.cfg.rare_copies)
    return np.repeat(data, copies, axis=0)


def _ordinary_for_their_box(det, sessions, scores, keep) -> np.ndarray:
    """Sessions ordinary for their own box: under the strict fence over the scores of that
    box's kept sessions, and never above the threshold. Only boxes with at least
    ``AEConfig.box_fence_min`` kept sessions have a fence of their own (0: none).

    Why: a box whose ordinary playback is busier than the fleet's (a poor network, a firmware
    that drops frames) scores higher than the fleet on every session, so the fleet's fence
    left out a third of its ordinary sessions (tuning fleet seed 29, 10 % of the boxes with
    four times every incident: 70 % learnt against 96 % elsewhere), the model never learnt
    them, and it flagged 5 % of that box's ordinary sessions. Under its own box's fence, a
    busy box's ordinary sessions are learnt and its storms still stand out (bench/README.md,
    "Cohorts of boxes"). The threshold caps the box's fence: nothing the model would flag is
    learnt as ordinary."""
    n = det.cfg.box_fence_min
    out = np.zeros(len(sessions), bool)
    if n <= 0:
        return out
    boxes = np.array([str(s.get("rxid")) for s in sessions])  # rows without one: one box
    threshold = det.threshold_for(scores)
    for box in np.unique(boxes[keep]):
        mine = boxes == box
        if (mine & keep).sum() >= n:
            out |= mine & (scores <= min(det.ordinary_fence(scores[mine & keep]), threshold))
    return out


def _lstm_history(ae_det, sessions, ae_scores, reference, ref_sessions) -> tuple[list, dict]:
    """The sessions the LSTM learns from, and what to record of them: the autoencoder's
    ordinary sessions of the whole history, or with a ``reference``, every session of the
    reference, trained as :data:`logalyzer.core.lstm.REFERENCE_CONFIG` says. Why every one:
    the operator vouches for them, and the autoencoder's strict fence also drops ordinary but
    rare sessions (an HDMI unplug during playback), whose transitions the LSTM then never saw
    and flagged wherever they occurred (seed 29 through the product: 33 false alarms with the
    fence, 29 of them about an HDMI unplug; bench/README.md "A reference history")."""
    if reference is None:
        return (ordinary_sessions(ae_det, sessions, ae_scores) if ae_det else sessions), {}
    return ref_sessions, {
        "overrides": dict(lstm.REFERENCE_CONFIG),
        "reference": {**reference.to_json(), "sessions": len(ref_sessions)},
    }


def ordinary_sessions(
    ae_det: AEDetector, sessions: list[dict], scores: np.ndarray | None = None
) -> list[dict]:
    """The sessions the autoencoder finds ordinary (under its ``ordinary_below``); ``scores``:
    its scores of ``sessions`` when the caller has them (it just trained it)."""
    scores = ae_det.scores(sessions) if scores is None else scores
    return [s for s, v in zip(sessions, scores) if v <= ae_det.ordinary_below]


def _latest_ae(db: Database) -> AEDetector | None:
    try:
        return load(db, "ae")
    except ModelNotFound:
        return None
