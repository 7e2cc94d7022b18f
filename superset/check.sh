#!/usr/bin/env bash
# `make superset-check`: Superset against a database filled by the demo pipeline, end to end.
#   1. a PostgreSQL database gets a synthetic fleet (default a week of 10 boxes) through
#      `logalyzer run --steps ingest,sessionize,train,detect` and a demo jam-software push
#      (superset/demo_jam.py);
#   2. superset/bootstrap.sh --fresh sets Superset up against it and imports the bundle;
#   3. Superset runs on a free loopback port and superset/check.py opens every dashboard in
#      headless Chromium: every chart's /api/v1/chart/data answer must be free of errors and
#      hold rows, every fleet chart must serve another window and granularity, and each
#      dashboard's screenshot goes to SUPERSET_CHECK_SHOTS (default docs/img/).
# It talks to LOGalyzer through its CLI only (.venv/bin/logalyzer) and to the database through
# SQL, never through the package's Python modules.
#
# Environment (all optional):
#   SUPERSET_CHECK_DSN      use (and keep) this database, created if missing; unset: a new
#                           database with a unique name on SUPERSET_CHECK_SERVER, dropped at exit
#   SUPERSET_CHECK_SERVER   where that database is made (default
#                           postgresql://postgres@127.0.0.1:5432/postgres)
#   SUPERSET_CHECK_DEVICES, _HOURS, _NOISE, _SEED   the synthetic fleet (10, 168, 5, 7)
#   SUPERSET_CHECK_STEPS    pipeline steps (default ingest,sessionize,train,detect);
#                           ingest,sessionize skips retraining in a kept SUPERSET_CHECK_DSN
#   SUPERSET_CHECK_SHOTS    where the screenshots go (default docs/img)
#   SUPERSET_CHECK_FLEET    where the fleet is written (default out/superset-fleet-<parameters>;
#                           reused when it is there)
#   LOGALYZER_SUPERSET_HOME Superset's metadata, secret and password (default out/superset-check)
#   LOGALYZER_SUPERSET_VENV Superset's venv (default ${XDG_CACHE_HOME:-~/.cache}/logalyzer/
#                           superset-6.1.0-venv, kept between runs and clones; installed when absent)
# Needs Debian's chromium (apt-get install -y chromium) and, the first time, PyPI for Superset
# and Playwright's Python package (which drives that Chromium; it downloads no browser).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
LOGALYZER=.venv/bin/logalyzer
SUPERSET_VERSION=6.1.0  # keep in step with bootstrap.sh
export LOGALYZER_SUPERSET_HOME=${LOGALYZER_SUPERSET_HOME:-out/superset-check}
export LOGALYZER_SUPERSET_VENV=${LOGALYZER_SUPERSET_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/logalyzer/superset-$SUPERSET_VERSION-venv}
DEVICES=${SUPERSET_CHECK_DEVICES:-10}
HOURS=${SUPERSET_CHECK_HOURS:-168}
NOISE=${SUPERSET_CHECK_NOISE:-5}
SEED=${SUPERSET_CHECK_SEED:-7}
FLEET=${SUPERSET_CHECK_FLEET:-out/superset-fleet-d$DEVICES-h$HOURS-n$NOISE-s$SEED}
STEPS=${SUPERSET_CHECK_STEPS:-ingest,sessionize,train,detect}
SHOTS=${SUPERSET_CHECK_SHOTS:-docs/img}
CHROMIUM=$(command -v chromium || true)
if [[ -z $CHROMIUM ]]; then
  echo "Error: no chromium on PATH" >&2
  echo "Hint: apt-get install -y chromium" >&2
  exit 1
fi
[[ -x $LOGALYZER ]] || { echo "Error: no $LOGALYZER" >&2; echo "Hint: make setup" >&2; exit 1; }
IFS=, read -ra step_list <<< "$STEPS"
for s in "${step_list[@]}"; do
  case $s in ingest|sessionize|train|detect|alerts) ;;
    *) echo "Error: unknown step '$s' in SUPERSET_CHECK_STEPS" >&2
       echo "Hint: steps are ingest,sessionize,train,detect,alerts" >&2; exit 1 ;;
  esac
done
start=$SECONDS
lap=$SECONDS
phase() { echo "   ($1: $(( SECONDS - lap )) s)"; lap=$SECONDS; }

server=
made_db=
cleanup() {
  local rc=$?
  if [[ -n $server ]]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  if [[ -n $made_db ]]; then
    "$PY" superset/check_db.py drop "$LOGALYZER_DSN" || echo "Warning: could not drop $made_db" >&2
  fi
  return $rc
}
trap cleanup EXIT

echo "== database"
if [[ -n ${SUPERSET_CHECK_DSN:-} ]]; then
  export LOGALYZER_DSN=$SUPERSET_CHECK_DSN
  "$PY" superset/check_db.py create "$LOGALYZER_DSN"
else
  export LOGALYZER_DSN=$("$PY" superset/check_db.py create-unique \
    "${SUPERSET_CHECK_SERVER:-postgresql://postgres@127.0.0.1:5432/postgres}")
  made_db=${LOGALYZER_DSN##*/}
fi
echo "   ${LOGALYZER_DSN}"

echo "== demo data ($FLEET; steps $STEPS)"
[[ -f $FLEET/ground_truth.json ]] \
  || "$LOGALYZER" synth "$FLEET" --devices "$DEVICES" --hours "$HOURS" --noise "$NOISE" --seed "$SEED"
"$LOGALYZER" run "$FLEET" --steps "$STEPS" --no-progress
"$PY" superset/demo_jam.py
phase "demo data"

echo "== Superset ($LOGALYZER_SUPERSET_VENV)"
superset/bootstrap.sh --fresh
# the venv may be shared by several checks: one installs Playwright, the others wait
(
  command -v flock >/dev/null && flock 9
  "$LOGALYZER_SUPERSET_VENV/bin/python" -c 'import playwright' 2>/dev/null \
    || "$LOGALYZER_SUPERSET_VENV/bin/pip" install --quiet playwright
) 9>"$LOGALYZER_SUPERSET_VENV.lock"
phase "Superset set up"
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
LOGALYZER_SUPERSET_PORT=$port superset/serve.sh > "$LOGALYZER_SUPERSET_HOME/server.log" 2>&1 &
server=$!
healthy() { "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' \
  "http://127.0.0.1:$port/health" 2>/dev/null; }
for _ in $(seq 120); do
  healthy && break
  kill -0 "$server" 2>/dev/null || { tail -20 "$LOGALYZER_SUPERSET_HOME/server.log"; exit 1; }
  sleep 1
done
healthy || { echo "Error: Superset did not answer on :$port in 120 s" >&2
             tail -20 "$LOGALYZER_SUPERSET_HOME/server.log"; exit 1; }
phase "Superset started"

echo "== dashboards in headless Chromium"
"$LOGALYZER_SUPERSET_VENV/bin/python" superset/check.py --url "http://127.0.0.1:$port" --out "$SHOTS" \
  --chromium "$CHROMIUM"
phase "dashboards checked"
echo "superset-check took $(( SECONDS - start )) s (fleet: $DEVICES devices x $HOURS h; steps: $STEPS)"
