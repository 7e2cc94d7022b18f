"""The HTTP service as a plain ASGI application (FastAPI): health, readiness, the jam-software
routes, the line search (``/v1/lines``), request limits and metrics. Ray Serve wraps it
(:mod:`logalyzer.http.serving`); tests and benchmarks can also call it in-process without Ray.

Everything a request needs hangs off one :class:`Service` (a PostgreSQL pool, the readiness
checks, handles of other Serve deployments), built by the face that starts the process and
passed to :func:`create_api`: nothing happens at import time.

Errors: :mod:`logalyzer.http.errors`; who may call what: :mod:`logalyzer.http.auth`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import psycopg
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from psycopg_pool import ConnectionPool, PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from logalyzer import __version__
from logalyzer.errors import DatabaseUnreachable
from logalyzer.http.auth import TokenCache
from logalyzer.http.errors import add_error_handlers, overloaded, too_large
from logalyzer.http.jam import router as jam_router
from logalyzer.http.lines import router as lines_router
from logalyzer.settings import Settings
from logalyzer.store.db import describe, migrate

log = logging.getLogger(__name__)

#: (route template, method, status, seconds) -> None; Serve passes Ray metrics, tests nothing.
RequestRecorder = Callable[[str, str, int, float], None]
ReadinessCheck = Callable[[], None]  # raises (with a one-line message) when not ready


class Service:
    """What the routes share: a PostgreSQL pool, the readiness checks, other deployments.

    The pool opens in the background, so a replica starts even while the database is down
    (its routes then answer 503 and ``/readyz`` says why). Pool connections are autocommit:
    each library call's ``with conn.transaction()`` is a real transaction that has committed
    before the response is written. The schema is migrated on first use (idempotent).
    """

    def __init__(
        self,
        dsn: str,
        settings: Settings | None = None,
        *,
        db_timeout: float = 5.0,
        handles: dict | None = None,
    ):
        self.settings = settings or Settings(dsn=dsn)
        self.dsn = dsn
        self.db_timeout = db_timeout
        #: other Serve deployments bound into the app by name (e.g. a detector scorer)
        self.handles = dict(handles or {})
        #: name -> check; /readyz runs them all ("models" is added by http.score.enable)
        self.readiness_checks: dict[str, ReadinessCheck] = {"database": self.check_database}
        #: things with start()/stop() that live as long as the app (the model loader)
        self.background: list = []
        self._pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=self.settings.serve_db_pool,
            open=False,
            timeout=db_timeout,
            name="logalyzer-api",
            kwargs={"autocommit": True, "connect_timeout": max(1, int(db_timeout))},
        )
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self.token_cache = TokenCache(self.settings.serve_token_cache_s)

    async def run(self, fn: Callable, *args):
        """``fn(conn, *args)`` on a pooled connection, off the event loop: the one thread hop a
        route makes for its database work (psycopg's calls block)."""
        return await run_in_threadpool(self._call, fn, args)

    def _call(self, fn: Callable, args: tuple):
        with self.connection() as conn:
            return fn(conn, *args)

    def open(self) -> None:
        """Start filling the pool in the background (again is a no-op)."""
        if self._pool.closed:
            self._pool.open(wait=False)
        for b in self.background:
            b.start()

    def close(self) -> None:
        for b in self.background:
            b.stop()
        self._pool.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection; an unreachable or failing server is :class:`DatabaseUnreachable`."""
        try:
            with self._pool.connection() as conn:
                if not self._schema_ready:
                    self._migrate(conn)
                yield conn
        except PoolTimeout as exc:  # the pool could not connect (it logs why) within db_timeout
            raise DatabaseUnreachable(
                f"{describe(self.dsn)} is unreachable: no connection within {self.db_timeout:g} s"
            ) from exc
        except (
            psycopg.OperationalError
        ) as exc:  # lost connection, server shutting down, deadlock...
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DatabaseUnreachable(
                f"{describe(self.dsn)} failed: {reason}",
                hint="retry; if it persists, check the server",
            ) from exc

    def _migrate(self, conn: psycopg.Connection) -> None:
        with self._schema_lock:
            if not self._schema_ready:
                migrate(conn)
                self._schema_ready = True

    def check_database(self) -> None:
        with self.connection() as conn:
            conn.execute("SELECT 1")

    def check_all(self) -> dict[str, str]:
        """Each readiness check's answer: "ok" or why not (a failed check is an answer)."""
        checks = {}
        for name, check in self.readiness_checks.items():
            try:
                check()
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return checks


def create_api(
    service: Service, *, on_request: RequestRecorder | None = None, routers: tuple = ()
) -> FastAPI:
    """The FastAPI application over ``service``. ``routers`` are extra APIRouters to mount,
    e.g. ``logalyzer.http.score.enable(service)`` for ``/v1/score`` and ``/v1/models/reload``."""

    @asynccontextmanager
    async def lifespan(_app):
        service.open()
        yield
        service.close()

    app = FastAPI(
        title="LOGalyzer",
        version=__version__,
        lifespan=lifespan,
        description="Set-top-box log analysis: health, jam-software rollouts, "
        "anomaly scoring of playback sessions, search of the stored lines. "
        "Authenticate with `Authorization: Bearer <secret>` "
        "(`logalyzer tokens create`).",
    )
    app.state.service = service
    add_error_handlers(app, service.settings.serve_max_body)
    app.add_middleware(
        BodyLimit,
        max_bytes=service.settings.serve_max_body,
        larger={"/v1/score": service.settings.score_max_body},
    )
    app.add_middleware(
        Admission,
        limit=service.settings.serve_max_inflight,
        max_lag_s=service.settings.serve_max_lag_ms / 1000,
    )
    if on_request is not None:  # outermost: it also sees the 413s and 503s
        app.add_middleware(RequestMetrics, record=on_request)

    @app.get("/healthz", tags=["health"], summary="The process is up")
    async def healthz() -> dict:
        return {"status": "ok"}

    # The path and answer KubeRay's readiness probe expects of a Serve node: a pod whose
    # replica answers gets traffic from the RayService's serve Service (cluster/k8s).
    @app.get("/-/healthz", include_in_schema=False)
    async def serve_probe() -> PlainTextResponse:
        return PlainTextResponse("success")

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Ready to serve: every readiness check passes",
        responses={503: {"description": "a check failed; the body says which and why"}},
    )
    async def readyz() -> JSONResponse:
        checks = await run_in_threadpool(service.check_all)
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    app.include_router(jam_router)
    app.include_router(lines_router)
    for r in routers:
        app.include_router(r)
    return app


class BodyLimit:
    """Pure ASGI middleware: 413 for a body over ``max_bytes`` (``larger``: path -> a larger
    limit, e.g. for batches of sessions to score), decided from Content-Length before anything
    is read, and from the bytes actually received when there is none (chunked uploads) or it
    lies. The body is never buffered here."""

    def __init__(self, app, max_bytes: int, larger: dict[str, int] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.larger = dict(larger or {})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.larger.get(scope.get("path", ""), self.max_bytes)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            if not length.isdigit():
                return await JSONResponse(
                    {"detail": "bad Content-Length header", "hint": None}, status_code=400
                )(scope, receive, send)
            return await too_large(limit)(scope, receive, send)
        received = 0
        started = False

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # An HTTPException: FastAPI's body reader re-raises these (others become 400)
                    raise StarletteHTTPException(413, detail=limit)
            return message

        async def watched(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except StarletteHTTPException as exc:
            if exc.status_code != 413 or started:
                raise
            await too_large(limit)(scope, receive, send)


class Admission:
    """Pure ASGI middleware that refuses work the replica cannot do in time: a request is
    refused at once, with a JSON 503 and ``Retry-After`` (:func:`.errors.overloaded`), when
    ``limit`` requests are already in progress, or when the event loop runs more than
    ``max_lag_s`` behind while a quarter of ``limit`` is in progress (it is short of CPU:
    whatever is admitted now would wait; a late loop with little in progress is one large
    request, such as a batch of sessions to score, not an overload).

    Why refuse rather than queue: past capacity, a queue only makes every admitted request
    wait longer, until clients time out and their work is wasted (measured: bench/README.md).
    A refusal costs a fraction of a millisecond, so admitted requests keep their latency, and
    a polling box simply comes back a second later. The lag is measured by a task that sleeps
    ``LAG_TICK_S`` and notes how late it wakes (started with the first request, on the loop that
    serves). Health probes are never refused.
    """

    EXEMPT = frozenset({"/healthz", "/-/healthz"})
    LAG_TICK_S = 0.005

    def __init__(self, app, limit: int, max_lag_s: float):
        self.app = app
        self.limit = limit
        self.max_lag_s = max_lag_s
        self.busy = max(2, limit // 4)  # in progress, at least, for a late loop to refuse
        self.inflight = 0
        self.lag = 0.0  # seconds the loop was late at the last tick
        self._ticker: asyncio.Task | None = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(self.LAG_TICK_S)
            self.lag = loop.time() - t - self.LAG_TICK_S

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") in self.EXEMPT:
            return await self.app(scope, receive, send)
        if self._ticker is None and self.max_lag_s > 0:
            self._ticker = asyncio.get_running_loop().create_task(self._tick())
        if self.inflight >= self.limit:
            reason = f"{self.limit} requests in progress on this replica"
        elif self.max_lag_s > 0 and self.lag > self.max_lag_s and self.inflight >= self.busy:
            reason = f"this replica is {self.lag * 1000:.0f} ms behind"
        else:
            self.inflight += 1
            try:
                return await self.app(scope, receive, send)
            finally:
                self.inflight -= 1
        return await overloaded(reason)(scope, receive, send)


class RequestMetrics:
    """Pure ASGI middleware: per request, the matched route's template (not the raw path, so
    RxIDs and ids do not explode the metric's cardinality), method, status and latency."""

    def __init__(self, app, record: RequestRecorder):
        self.app = app
        self.record = record

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            try:
                self.record(route, scope.get("method", ""), status[0], time.perf_counter() - start)
            except Exception:  # metrics must never break a request
                log.exception("recording request metrics failed")
