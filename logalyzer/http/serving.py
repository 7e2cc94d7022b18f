"""The HTTP service on Ray Serve: one deployment whose FastAPI ingress is :mod:`logalyzer.http.app`.

Three ways in, one application:

- ``logalyzer serve`` (:func:`run_forever`): a local Ray (or ``RAY_ADDRESS``), the embedded or
  ``LOGALYZER_DSN`` PostgreSQL resolved and migrated here, then Serve on ``--host/--port``;
- ``serve run serve.app:app`` (``serve/app.py`` calls :func:`app_builder`);
- ``serve deploy serve/config.yaml`` on a running cluster.

The ingress app is built inside each replica (``__serve_build_asgi_app__``, the late-bound form
of ``@serve.ingress``) around that replica's own :class:`~logalyzer.http.app.Service`, so the
database pool and the readiness checks belong to the replica and nothing global is shared.
Detector scoring (``/v1/score``, ``/v1/models/reload``) runs inside this same replica, batched
with ``@serve.batch`` (why not a deployment of its own: :mod:`logalyzer.http.scoring`). Other
deployments can still be bound as keyword arguments of :func:`build` and reach the routes as
``service.handles[name]``.

Metrics: Serve's own (``ray_serve_num_http_requests``, ``ray_serve_http_request_latency_ms``,
per route) plus ``logalyzer_api_requests`` (route template, method, status) and
``logalyzer_api_latency_ms`` (route template, method), in the Ray dashboard's metrics view.
"""

from __future__ import annotations

import socket
import time

from ray import serve
from ray.serve import Application
from ray.serve.metrics import Counter, Histogram

from logalyzer.errors import PortInUse
from logalyzer.http.app import Service, create_api
from logalyzer.http.score import enable
from logalyzer.jobs.rayutil import ensure_ray
from logalyzer.settings import Settings
from logalyzer.store.db import open_database

APP_NAME = "logalyzer"
LATENCY_BOUNDARIES_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]


class _RayMetrics:
    """Per-route request counter and latency histogram (created in the replica, not at import)."""

    def __init__(self):
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

    def record(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.inc(tags={"route": route, "method": method, "status": str(status)})
        self.latency.observe(seconds * 1000, tags={"route": route, "method": method})


# max_queued_requests: past 64 waiting requests the proxy answers 503 at once instead of
# queueing; measured without it, an overloaded replica collapsed (timeouts, cancelled work, the
# request rate falling far below capacity; bench/README.md).
@serve.deployment(
    name="LogalyzerAPI",
    max_ongoing_requests=32,
    max_queued_requests=64,
    ray_actor_options={"num_cpus": 0.5},
)  # I/O bound: it waits on PostgreSQL
@serve.ingress()
class LogalyzerAPI:
    def __init__(self, dsn: str | None = None, options: dict | None = None, **handles):
        settings = Settings(
            **(options or {})
        )  # the replica's environment, then what the starter chose
        self._db = None
        if (
            dsn is None
        ):  # no DSN passed: this replica's environment decides (LOGALYZER_DSN or embedded)
            self._db = open_database(
                settings, migrate_schema=False
            )  # keeps an embedded server alive
            dsn = self._db.dsn
        self.service = Service(dsn, settings, handles=handles)
        self._metrics = _RayMetrics()

    def __serve_build_asgi_app__(self):
        return create_api(
            self.service, on_request=self._metrics.record, routers=(enable(self.service),)
        )


#: Settings the process that starts Serve passes on to the replicas (their own environment
#: may differ, e.g. on a cluster); the DSN travels separately.
REPLICA_SETTINGS = (
    "serve_max_body",
    "serve_db_pool",
    "tz",
    "score_max_body",
    "score_max_batch",
    "score_batch_wait_ms",
    "score_versions",
    "score_model_poll_s",
)


def build(
    dsn: str | None = None, settings: Settings | None = None, replicas: int = 1, **handles
) -> Application:
    """The bound application. ``handles``: other deployments' bound apps, e.g.
    ``build(dsn, other=Other.bind())``, reachable in routes as ``service.handles["other"]``."""
    options = settings.model_dump(include=set(REPLICA_SETTINGS)) if settings else None
    deployment = LogalyzerAPI if replicas == 1 else LogalyzerAPI.options(num_replicas=replicas)
    return deployment.bind(dsn, options, **handles)


def app_builder(args: dict) -> Application:
    """For ``serve run`` / ``serve deploy``: ``args`` may give ``dsn``; without it each replica
    reads LOGALYZER_DSN (set it in the runtime_env's env_vars) or uses the embedded server."""
    return build(args.get("dsn"))


# --------------------------------------------------------------------------- logalyzer serve


def _dashboard_url() -> str | None:
    try:  # Ray has no public call for it; a missing URL only drops a line of output
        from ray._private.worker import get_dashboard_url  # private: may move in another Ray

        url = get_dashboard_url()
    except Exception:
        return None
    return (url if "://" in url else f"http://{url}") if url else None


def check_port_free(host: str, port: int) -> None:
    """Fail fast with a clear error instead of a proxy that retries binding forever."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as exc:
        raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def start(settings: Settings, dsn: str, host: str, port: int, replicas: int = 1) -> str:
    """Start (or join) Ray, start Serve's HTTP proxy on host:port, deploy; return the URL."""
    check_port_free(host, port)
    ensure_ray(settings)
    serve.start(http_options={"host": host, "port": port})
    app = build(dsn, settings, replicas=replicas)
    serve.run(
        app,
        name=APP_NAME,
        route_prefix="/",
        blocking=False,
        logging_config={"enable_access_log": settings.serve_access_log},
    )
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{port}"


def run_forever(settings: Settings, dsn: str, host: str, port: int, echo=print) -> None:
    """``logalyzer serve``: start, print where, block until Ctrl-C, then shut Serve down."""
    url = start(settings, dsn, host, port)
    echo(
        f"LOGalyzer API at {url} (docs: {url}/docs, health: {url}/healthz, ready: {url}/readyz); "
        "Ctrl-C stops it"
    )
    dashboard = _dashboard_url()
    if dashboard:
        echo(f"Ray dashboard (requests and latency per route under Serve / Metrics): {dashboard}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        echo("stopping ...")
    finally:
        serve.shutdown()
