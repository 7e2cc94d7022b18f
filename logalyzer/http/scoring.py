"""Online scoring in the HTTP service: the loaded detectors, batching, reload (no HTTP here).

**Where scoring runs: inside the ingress replica, not in a separate ``Scorer`` deployment.**
Measured on this project's machines (bench/README.md), one Serve hop (proxy → replica) costs
about 5 ms of CPU per request, ten times the work of scoring one session; a separate scorer
deployment would add a second hop (ingress → scorer through a DeploymentHandle, with its own
serialisation and routing) to every request, halving the request rate on a small box. The
models are small (a few hundred KB each), so every ingress replica can hold them, and scoring
load scales with request load anyway, so scaling ingress replicas scales scoring. What a
separate deployment would buy (GPU scorers, scaling scoring apart from the token checks and
the jam routes) stays open: :class:`ScoringEngine` knows nothing of HTTP, and its
:meth:`ScoringEngine.score` is what a ``Scorer`` deployment's method would call.

**Batching.** Inside a Serve replica each request's sessions are queued with ``@serve.batch``;
a batch (up to ``score_max_batch`` sessions, waiting at most ``score_batch_wait_ms`` for more)
is scored in one pass per detector (the LSTM runs each distinct history once per batch, see
:func:`logalyzer.core.lstm.surprise_rows`) on a worker thread, so the replica's event loop keeps
accepting requests, and the next batch fills while one runs: under load, batches grow and the
cost per session falls. Outside Serve (in-process tests, the benchmark's reference) each call
is scored on its own.

**Models.** The versions to serve are, per detector: the one named by the last
``POST /v1/models/reload`` (kept in ``serving_models``, so every replica and every restart
agrees), else ``LOGALYZER_SCORE_VERSIONS``, else the newest in the registry. A background
thread per replica loads them at start and polls every ``score_model_poll_s`` seconds; a
replica that starts while the database is down keeps trying, and ``/readyz`` says why it is
not ready. Swapping is atomic: new detectors are loaded completely first, then one reference
(:attr:`ScoringEngine.current`) is replaced; a batch takes the reference once, so it is
scored and reported with one consistent set of versions, and requests in flight finish on
the versions they started with. Nothing is dropped. When the registry holds fewer detectors
than are loaded (rows deleted), the loaded ones stay in service.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field

from ray import serve
from ray.serve.exceptions import RayServeException

from logalyzer.core.detectors import Detector, Verdict
from logalyzer.core.features import KINDS
from logalyzer.core.verdict import score_flat
from logalyzer.errors import DatabaseUnreachable, NotFound, NotReady
from logalyzer.store import registry

log = logging.getLogger(__name__)


class ModelsNotLoaded(NotReady):
    """No detector is loaded yet (503)."""


@dataclass(frozen=True)
class ModelSet:
    """One consistent set of loaded detectors (replaced whole, never changed in place)."""

    detectors: dict[str, Detector] = field(default_factory=dict)
    loaded_at: float = 0.0

    @property
    def versions(self) -> dict[str, int]:
        return {k: d.version for k, d in self.detectors.items()}


class _PoolDatabase:
    """What :mod:`logalyzer.store.registry` needs of a Database (``connect()``), over the service's
    pool, so loading models uses the replica's pooled connections."""

    def __init__(self, service):
        self.service = service
        self.dsn = service.dsn

    def connect(self):
        return self.service.connection()


class ScoringEngine:
    """The detectors of one replica, a batcher in front of them, and reloading."""

    def __init__(self, service):
        self.service = service
        self.settings = service.settings
        self.db = _PoolDatabase(service)
        self.current = ModelSet()
        self.error: str | None = "loading the models"
        self._lock = threading.Lock()  # one load-and-swap at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._batched = None  # the @serve.batch function, made on first use
        self.batches = 0  # batches scored (for tests and metrics)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._watch, name="logalyzer-models", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread = None

    def _watch(self) -> None:
        """Load the models now, then follow the wanted versions every poll interval (every
        2 s while none could be loaded yet)."""
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception as exc:  # keep trying; /readyz shows the reason
                self.error = _line(exc)
                if not self.current.detectors:
                    log.warning("loading models failed: %s", self.error)
            poll = self.settings.score_model_poll_s
            if self.current.detectors and not poll:
                return
            if self._stop.wait(poll if self.current.detectors else 2.0):
                return

    # ------------------------------------------------------------------ versions
    def wanted(self) -> dict[str, int]:
        """Per detector, the version to serve (module docstring); detectors never trained are
        absent."""
        newest = registry.available(self.db)
        pins = registry.serving_pins(self.db)
        fixed = self.settings.score_versions
        out = {}
        for k in KINDS:
            if k in pins:
                v = pins[k] or newest.get(k)
            else:
                v = fixed.get(k) or newest.get(k)
            if v is not None:
                out[k] = int(v)
        return out

    def _load(self, versions: dict[str, int]) -> ModelSet:
        try:
            return ModelSet(
                {k: registry.load(self.db, k, v) for k, v in versions.items()}, time.time()
            )
        except registry.ModelNotFound as exc:
            raise NotFound(
                str(exc), hint="see `logalyzer models` for the registered versions"
            ) from exc

    def refresh(self) -> bool:
        """Load and swap in the wanted versions when they differ from the loaded ones."""
        with self._lock:
            want = self.wanted()
            if not want:
                if not self.current.detectors:
                    self.error = (
                        "no trained detector in the models table (train one: logalyzer train)"
                    )
                return False
            have = self.current.versions
            if all(have.get(k) == v for k, v in want.items()):
                self.error = None
                return False
            self.current = self._load(want)
            self.error = None
            log.info("serving detector versions %s", self.current.versions)
            return True

    def reload(self, versions: dict[str, int | None], by: str = "") -> tuple[dict, dict]:
        """``POST /v1/models/reload``: load the asked versions (None = newest) of every detector,
        record them for the other replicas, then swap. Returns (before, after) versions. A
        version that does not exist is :class:`NotFound` and changes nothing."""
        with self._lock:
            before = self.current.versions
            newest = registry.available(self.db)
            want = {k: versions.get(k) or newest.get(k) for k in KINDS}
            want = {k: int(v) for k, v in want.items() if v is not None}
            if not want:
                raise NotFound(
                    "no trained detector in the models table",
                    hint="train one first: logalyzer train",
                )
            new = self._load(want)  # 1. load everything (may fail: nothing changed)
            # 2. tell the other replicas
            registry.pin_serving(self.db, {k: versions.get(k) for k in KINDS}, by)
            self.current = new  # 3. swap: one reference
            self.error = None
            log.info("reloaded detector versions %s -> %s", before, new.versions)
            return before, new.versions

    # ------------------------------------------------------------------ readiness
    def check_ready(self) -> None:
        if not self.current.detectors:
            raise ModelsNotLoaded(f"no detector loaded: {self.error or 'loading'}")

    # ------------------------------------------------------------------ scoring
    def _score_now(
        self, jobs: list[list[dict]]
    ) -> list[tuple[list[dict[str, Verdict]], ModelSet, int]]:
        """Score a batch of requests' sessions with one set of models; each request gets its
        verdicts, the models, and how many sessions the batch held."""
        models = self.current
        flat = [s for job in jobs for s in job]
        verdicts = score_flat(models.detectors, flat)
        out, i = [], 0
        for job in jobs:
            out.append((verdicts[i : i + len(job)], models, len(flat)))
            i += len(job)
        self.batches += 1
        return out

    async def _run_batch(self, jobs: list[list[dict]]):
        return await asyncio.to_thread(self._score_now, jobs)

    def _batcher(self):
        if self._batched is None:
            try:
                serve.get_replica_context()
            except RayServeException:  # not in a replica: @serve.batch cannot run here
                self._batched = False
            else:

                async def score_batch(jobs: list[list[dict]]):
                    return await self._run_batch(jobs)

                self._batched = serve.batch(
                    max_batch_size=self.settings.score_max_batch,
                    batch_wait_timeout_s=self.settings.score_batch_wait_ms / 1000,
                    batch_size_fn=lambda jobs: sum(len(j) for j in jobs),
                )(score_batch)
        return self._batched

    async def score(self, sessions: list[dict]) -> tuple[list[dict[str, Verdict]], ModelSet, int]:
        """Verdicts for ``sessions`` (measures with ``event_keys`` or None), the models that
        gave them, and the size of the (largest) batch they were scored in. A request larger than
        a batch is cut into batch-sized parts; should a reload land between its parts, the whole
        request is scored again with the new models, so one answer never mixes versions."""
        self.check_ready()
        batched = self._batcher()
        if not batched:
            (res,) = await self._run_batch([sessions])
            return res
        size = self.settings.score_max_batch
        parts = [sessions[i : i + size] for i in range(0, len(sessions), size)] or [[]]
        results = await asyncio.gather(*(batched(p) for p in parts))
        verdicts = [v for vs, _, _ in results for v in vs]
        models = results[0][1]
        if any(m is not models for _, m, _ in results[1:]):  # a reload landed between parts: redo
            (res,) = await self._run_batch([sessions])
            return res
        return verdicts, models, max(n for _, _, n in results)


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, DatabaseUnreachable):
        return text.splitlines()[0]
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
