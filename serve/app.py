"""Entry point of the HTTP service for Ray Serve's own tools.

    serve run serve.app:app                 # from the repository root: local Ray, blocks
    serve deploy serve/config.yaml          # onto a running cluster (see serve/README.md)

``app`` uses LOGALYZER_DSN of the replicas' environment (or the embedded PostgreSQL);
``app_builder`` takes ``dsn`` from the config's ``args``. Building the application binds it
only: nothing starts or connects until Serve runs it.
"""

from logalyzer.http.serving import app_builder

app = app_builder({})

__all__ = ["app", "app_builder"]
