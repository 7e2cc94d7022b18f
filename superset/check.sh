#!/usr/bin/env bash
# `make superset-check`: Superset against a database filled by the demo pipeline, end to end.
#   1. a PostgreSQL database (SUPERSET_CHECK_DSN, default the machine's server on 127.0.0.1,
#      database logalyzer_dashboards, created if missing) gets a synthetic week of 10 boxes
#      through `logalyzer run --steps ingest,sessionize,train,detect` (the steps built) and a
#      demo jam-software push (superset/demo_jam.py);
#   2. superset/bootstrap.sh --fresh sets Superset up against it and imports the bundle;
#   3. Superset runs on a free loopback port and superset/check.py opens every dashboard in
#      headless Chromium: every chart's /api/v1/chart/data answer must be free of errors and
#      hold rows, every fleet chart must serve another window and granularity, and each
#      dashboard's screenshot goes to docs/img/.
# Needs Debian's chromium (apt-get install -y chromium) and, the first time, PyPI for Superset
# and Playwright's Python package (which drives that Chromium; it downloads no browser).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export LOGALYZER_DSN=${SUPERSET_CHECK_DSN:-postgresql://postgres@127.0.0.1:5432/logalyzer_dashboards}
export LOGALYZER_SUPERSET_HOME=${LOGALYZER_SUPERSET_HOME:-out/superset-check}
export LOGALYZER_SUPERSET_VENV=${LOGALYZER_SUPERSET_VENV:-$PWD/out/superset/venv}
FLEET=${SUPERSET_CHECK_FLEET:-out/superset-fleet}
CHROMIUM=$(command -v chromium || true)
if [[ -z $CHROMIUM ]]; then
  echo "Error: no chromium on PATH" >&2
  echo "Hint: apt-get install -y chromium" >&2
  exit 1
fi
start=$(date +%s)

echo "== database and demo data ($FLEET)"
"$PY" - "$LOGALYZER_DSN" <<'PYEOF'
import sys
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
target = conninfo_to_dict(sys.argv[1])
with psycopg.connect(make_conninfo(**{**target, "dbname": "postgres"}), autocommit=True) as conn:
    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target["dbname"],)).fetchone():
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target["dbname"])))
PYEOF
[[ -f $FLEET/ground_truth.json ]] || .venv/bin/logalyzer synth "$FLEET" --devices 10 --hours 168 --noise 5 --seed 7
# SUPERSET_CHECK_STEPS=ingest,sessionize skips training again when only superset/ changed
steps=${SUPERSET_CHECK_STEPS:-$("$PY" -c 'from logalyzer.pipeline import AVAILABLE, STEPS; print(",".join(s for s in STEPS if s in AVAILABLE))')}
.venv/bin/logalyzer run "$FLEET" --steps "$steps"
"$PY" superset/demo_jam.py

echo "== Superset"
superset/bootstrap.sh --fresh
"$LOGALYZER_SUPERSET_VENV/bin/python" -c 'import playwright' 2>/dev/null \
  || "$LOGALYZER_SUPERSET_VENV/bin/pip" install --quiet playwright
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
LOGALYZER_SUPERSET_PORT=$port superset/serve.sh > "$LOGALYZER_SUPERSET_HOME/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  kill -0 $server 2>/dev/null || { tail -20 "$LOGALYZER_SUPERSET_HOME/server.log"; exit 1; }
  sleep 1
done

echo "== dashboards in headless Chromium"
"$LOGALYZER_SUPERSET_VENV/bin/python" superset/check.py --url "http://127.0.0.1:$port" --out docs/img \
  --chromium "$CHROMIUM"
echo "superset-check took $(( $(date +%s) - start )) s (steps: $steps)"
