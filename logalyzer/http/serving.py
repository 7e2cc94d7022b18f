"""The HTTP service on Ray Serve: replicas that answer HTTP themselves, on the documented port.

**One hop.** Each replica of the ``LogalyzerAPI`` deployment runs the FastAPI app of
:mod:`logalyzer.http.app` under uvicorn, on a thread and event loop of its own, listening on
``--port`` itself (:class:`HTTPServer`). Serve still does what it is good at (placing replicas,
health checks, restarts, ``num_replicas``, rolling updates, the dashboard), but no request
passes through Serve's proxy: Serve's proxies are disabled (``proxy_location: Disabled``).
Why: measured on this project's 2-core machine (bench/README.md), the proxy and the
proxy-to-replica actor call cost about 13 ms of CPU per request, four times the routes' own
work, and past ~100 req/s the default path collapsed; Serve's own direct ingress (Ray 2.60)
removes the hop too, but it is experimental, listens on a port Serve picks from 30000-31000
rather than ``--port``, and must be switched on in the environment of the whole cluster.

Several replicas on one node share the port: the socket is opened with ``SO_REUSEPORT``, so
the kernel spreads connections over them. On a multi-node cluster every node that holds a
replica answers on the port; put the cluster's load balancer in front (KubeRay's serve
Service does it by itself: each replica answers its readiness probe, ``/-/healthz``).

Three ways in, one application:

- ``logalyzer serve`` (:func:`run_forever`): a local Ray (or ``RAY_ADDRESS``), the embedded or
  ``LOGALYZER_DSN`` PostgreSQL resolved and migrated here, then the deployment on
  ``--host/--port`` with ``LOGALYZER_SERVE_REPLICAS`` replicas;
- ``serve run serve.app:app`` (``serve/app.py`` calls :func:`app_builder`);
- ``serve deploy serve/config.yaml`` on a running cluster.

Each replica builds its own :class:`~logalyzer.http.app.Service` (database pool, token cache,
readiness checks), so nothing global is shared. Detector scoring (``/v1/score``,
``/v1/models/reload``) runs inside the same replica, batched with ``@serve.batch`` on the HTTP
loop (why not a deployment of its own: :mod:`logalyzer.http.scoring`). Other deployments can
still be bound as keyword arguments of :func:`build` and reach the routes as
``service.handles[name]``.

**CPU priority.** Ray starts its workers with a lower CPU priority than the processes it
competes with; the HTTP threads of a replica set their own (``LOGALYZER_SERVE_NICE``, default
0, the priority of an ordinary process), so a fleet's polling does not lose the CPU to batch
jobs on the same node. Lowering a nice value needs ``CAP_SYS_NICE`` (root); without it the
replica logs a warning and keeps Ray's priority.

Metrics: ``logalyzer_api_requests`` (route template, method, status) and
``logalyzer_api_latency_ms`` (route template, method), in the Ray dashboard's metrics view;
refusals at capacity are counted there with status 503.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import uvicorn
from ray import serve
from ray.serve import Application
from ray.serve.metrics import Counter, Histogram

from logalyzer.errors import LogalyzerError, PortInUse
from logalyzer.http.app import Service, create_api
from logalyzer.http.score import enable
from logalyzer.jobs.rayutil import ensure_ray
from logalyzer.settings import Settings
from logalyzer.store.db import open_database

log = logging.getLogger(__name__)

APP_NAME = "logalyzer"
LATENCY_BOUNDARIES_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]


class _RayMetrics:
    """Per-route request counter and latency histogram (created in the replica, not at import),
    and the access log: one line per request in the replica's Serve log, with the route
    template rather than the path (RxIDs stay out of the logs)."""

    def __init__(self, access_log: bool):
        self.requests = Counter(
            "logalyzer_api_requests",
            description="HTTP requests by route template, method, status",
            tag_keys=("route", "method", "status"),
        )
        self.latency = Histogram(
            "logalyzer_api_latency_ms",
            description="HTTP request latency in the replica, ms",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=("route", "method"),
        )
        self.access = logging.getLogger("ray.serve") if access_log else None

    def record(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.inc(tags={"route": route, "method": method, "status": str(status)})
        self.latency.observe(seconds * 1000, tags={"route": route, "method": method})
        if self.access is not None:
            self.access.info(  # the replica's log file only: a line per request on the
                "%s %s %s %.1fms",  # driver's terminal would cost more than the request
                method,
                route,
                status,
                seconds * 1000,
                extra={"log_to_stderr": False},
            )


class HTTPServer:
    """uvicorn serving ``app`` on ``host:port`` from a thread (and event loop) of its own.

    The socket is bound here, with ``SO_REUSEPORT``, so replicas on one node share the port
    and a port taken by another program is a clear error at start, not a silent retry loop.
    """

    def __init__(self, app, host: str, port: int, *, nice: int | None):
        self.host, self.port, self.nice = host, port, nice
        config = uvicorn.Config(
            app,
            lifespan="on",
            access_log=False,  # written by _RayMetrics, into the replica's Serve log
            log_config=None,  # leave the replica's logging (Ray's) as it is
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self, timeout: float = 60.0) -> None:
        sock = bind(self.host, self.port, shared=True)
        self.thread = threading.Thread(
            target=self._run, args=(sock,), name="logalyzer-http", daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise LogalyzerError(
                    f"the HTTP server on {self.host}:{self.port} did not start: {self.error!r}"
                )
            time.sleep(0.02)

    def _run(self, sock: socket.socket) -> None:
        set_thread_priority(self.nice)  # threads started from here (the thread pool) inherit it
        try:
            self.server.run(sockets=[sock])
        except BaseException as exc:  # kept for check(); the replica is then restarted
            self.error = exc
            log.exception("the HTTP server stopped")

    def check(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            raise RuntimeError(f"the HTTP server on port {self.port} is not running")

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)


def set_thread_priority(nice: int | None) -> None:
    """Give the calling thread CPU priority ``nice`` (Linux: per thread); None leaves it."""
    if nice is None or not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) != nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError as exc:
        log.warning(
            "cannot set the HTTP threads' CPU priority to nice %s (%s); they keep %s. "
            "Set LOGALYZER_SERVE_NICE to a value this user may set, or leave it unset.",
            nice,
            exc.strerror,
            os.getpriority(os.PRIO_PROCESS, tid),
        )


@serve.deployment(name="LogalyzerAPI", ray_actor_options={"num_cpus": 0.5})
class LogalyzerAPI:
    """One replica: a :class:`Service`, its FastAPI app, and the HTTP server in front of it."""

    def __init__(
        self,
        dsn: str | None = None,
        options: dict | None = None,
        host: str = "0.0.0.0",
        port: int = 8000,
        **handles,
    ):
        settings = Settings(**(options or {}))  # the replica's environment, then the starter's
        self._db = None
        if dsn is None:  # this replica's environment decides (LOGALYZER_DSN or embedded)
            self._db = open_database(settings, migrate_schema=False)  # keeps embedded alive
            dsn = self._db.dsn
        self.service = Service(dsn, settings, handles=handles)
        metrics = _RayMetrics(settings.serve_access_log)
        app = create_api(self.service, on_request=metrics.record, routers=(enable(self.service),))
        self.http = HTTPServer(app, host, port, nice=settings.serve_nice)
        self.http.start()

    def check_health(self) -> None:
        """Serve's periodic health check: a replica whose HTTP server died is replaced."""
        self.http.check()

    def __del__(self):  # Serve calls it when the replica is stopped
        http = getattr(self, "http", None)
        if http is not None:
            http.stop()


#: Settings the process that starts Serve passes on to the replicas (their own environment
#: may differ, e.g. on a cluster); the DSN travels separately.
REPLICA_SETTINGS = (
    "serve_max_body",
    "serve_db_pool",
    "serve_access_log",
    "serve_nice",
    "serve_max_inflight",
    "serve_max_lag_ms",
    "serve_token_cache_s",
    "tz",
    "score_max_body",
    "score_max_batch",
    "score_batch_wait_ms",
    "score_versions",
    "score_model_poll_s",
)


def build(
    dsn: str | None = None,
    settings: Settings | None = None,
    *,
    host: str = "0.0.0.0",
    port: int = 8000,
    replicas: int | None = None,
    **handles,
) -> Application:
    """The bound application: ``replicas`` (default ``settings.serve_replicas``) replicas each
    answering on ``host:port``. ``handles``: other deployments' bound apps, e.g.
    ``build(dsn, other=Other.bind())``, reachable in routes as ``service.handles["other"]``."""
    options = settings.model_dump(include=set(REPLICA_SETTINGS)) if settings else None
    replicas = replicas or (settings.serve_replicas if settings else 1)
    deployment = LogalyzerAPI.options(num_replicas=replicas)
    return deployment.bind(dsn, options, host, port, **handles)


def app_builder(args: dict) -> Application:
    """For ``serve run`` / ``serve deploy``: ``args`` may give ``dsn``, ``host`` (default
    0.0.0.0: a cluster's load balancer must reach the replicas) and ``port`` (default
    LOGALYZER_SERVE_PORT, 8000). Without a DSN each replica reads LOGALYZER_DSN (set it in the
    runtime_env's env_vars) or uses the embedded server. The replica count is the config's
    ``num_replicas`` (``serve deploy``), else LOGALYZER_SERVE_REPLICAS."""
    settings = Settings()
    return build(
        args.get("dsn"),
        settings,
        host=str(args.get("host", "0.0.0.0")),
        port=int(args.get("port", settings.serve_port)),
        replicas=args.get("replicas"),
    )


# --------------------------------------------------------------------------- logalyzer serve


def _dashboard_url() -> str | None:
    try:  # Ray has no public call for it; a missing URL only drops a line of output
        from ray._private.worker import get_dashboard_url  # private: may move in another Ray

        url = get_dashboard_url()
    except Exception:
        return None
    return (url if "://" in url else f"http://{url}") if url else None


def bind(host: str, port: int, *, shared: bool) -> socket.socket:
    """A TCP socket bound to host:port, or :class:`PortInUse`. ``shared``: with
    ``SO_REUSEPORT``, so the replicas of a node listen on one port together."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def check_port_free(host: str, port: int) -> None:
    """Fail fast, before Ray starts, with a clear error instead of replicas that fail to bind.
    Not shared: a `logalyzer serve` still running on the port is refused, not joined."""
    bind(host, port, shared=False).close()


def start(settings: Settings, dsn: str, host: str, port: int, replicas: int | None = None) -> str:
    """Start (or join) Ray, deploy replicas that listen on host:port (no Serve proxy), wait
    until they answer; return the URL."""
    check_port_free(host, port)
    ensure_ray(settings)
    serve.start(proxy_location="Disabled")
    app = build(dsn, settings, host=host, port=port, replicas=replicas)
    serve.run(app, name=APP_NAME, route_prefix=None, blocking=False)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{port}"


def run_forever(settings: Settings, dsn: str, host: str, port: int, echo=print) -> None:
    """``logalyzer serve``: start, print where, block until Ctrl-C, then shut Serve down."""
    url = start(settings, dsn, host, port)
    n = settings.serve_replicas
    echo(
        f"LOGalyzer API at {url} ({n} replica{'s' * (n > 1)}; docs: {url}/docs, "
        f"health: {url}/healthz, ready: {url}/readyz); Ctrl-C stops it"
    )
    dashboard = _dashboard_url()
    if dashboard:
        echo(f"Ray dashboard (requests and latency per route under Metrics): {dashboard}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        echo("stopping ...")
    finally:
        serve.shutdown()
