"""Superset configuration for LOGalyzer's dashboards (read by Superset via SUPERSET_CONFIG_PATH).

Everything Superset keeps lives in LOGALYZER_SUPERSET_HOME (bootstrap.sh sets it; default
out/superset): the SQLite metadata database and the SECRET_KEY, which bootstrap.sh generates
once (it encrypts the stored database password: keep the file, or re-import the bundle).
Jinja templating is on because the datasets are virtual SQL parameterised by the dashboard's
time range and granularity.
"""

import os
from pathlib import Path

_HOME = Path(os.environ.get("LOGALYZER_SUPERSET_HOME", "out/superset")).resolve()

SECRET_KEY = (_HOME / "secret_key").read_text().strip()
SQLALCHEMY_DATABASE_URI = f"sqlite:///{_HOME / 'superset.db'}"
FEATURE_FLAGS = {"ENABLE_TEMPLATE_PROCESSING": True}

# One small local instance: no example data, no telemetry, no external requests at start.
SUPERSET_WEBSERVER_PORT = int(os.environ.get("LOGALYZER_SUPERSET_PORT", "8088"))
SQLLAB_CTAS_NO_LIMIT = True
ROW_LIMIT = 50000
SCHEDULED_QUERIES = {}
DEFAULT_TIME_FILTER = "No filter"
RATELIMIT_STORAGE_URI = "memory://"
# Render every chart at once (the check takes full-page screenshots, and dashboards here are short).
FEATURE_FLAGS["DASHBOARD_VIRTUALIZATION"] = False
