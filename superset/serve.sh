#!/usr/bin/env bash
# Run the Superset that bootstrap.sh set up, on 127.0.0.1 (LOGALYZER_SUPERSET_PORT, default 8088).
set -euo pipefail
cd "$(dirname "$0")/.."
export LOGALYZER_SUPERSET_HOME=$(cd "${LOGALYZER_SUPERSET_HOME:-out/superset}" && pwd)
export SUPERSET_HOME=$LOGALYZER_SUPERSET_HOME SUPERSET_CONFIG_PATH=$PWD/superset/superset_config.py
export FLASK_APP=superset
exec "${LOGALYZER_SUPERSET_VENV:-$LOGALYZER_SUPERSET_HOME/venv}/bin/superset" run -h 127.0.0.1 -p "${LOGALYZER_SUPERSET_PORT:-8088}" \
  --with-threads "$@"
