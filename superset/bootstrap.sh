#!/usr/bin/env bash
# Superset 6.1.0 for LOGalyzer's dashboards, set up without questions:
#   LOGALYZER_DSN=postgresql://user@host:5432/logs superset/bootstrap.sh [--fresh]
# then `superset/serve.sh` (or the command it prints) and log in as admin.
#
# Superset gets its own virtual environment: it cannot share one with Ray (6.1.0 pins
# pandas < 2.2 and pyarrow < 19); flask-caching 2.3.1, rich and cachetools are missing from its
# requirements. Everything lives in LOGALYZER_SUPERSET_HOME (default out/superset): venv/,
# superset.db (SQLite metadata), secret_key and admin_password (both generated, mode 600),
# and the built bundle (LOGALYZER_SUPERSET_VENV puts the venv elsewhere, e.g. outside the checkout
# where several runs share it: installing it takes a lock). Re-running is safe: it upgrades the metadata schema and re-imports
# the dashboards. `--fresh` deletes the metadata database first, which also rolls out edited
# datasets and charts (`superset import-dashboards` overwrites dashboards but keeps existing
# datasets and charts with the same uuid).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${LOGALYZER_DSN:-}" ]]; then
  echo "Error: LOGALYZER_DSN is not set" >&2
  echo "Hint: Superset needs a PostgreSQL server that stays up, e.g. LOGALYZER_DSN=postgresql://postgres@127.0.0.1:5432/logalyzer" >&2
  exit 1
fi
PYTHON=${PYTHON:-python3.11}
export LOGALYZER_SUPERSET_HOME=${LOGALYZER_SUPERSET_HOME:-out/superset}
mkdir -p "$LOGALYZER_SUPERSET_HOME"
export LOGALYZER_SUPERSET_HOME=$(cd "$LOGALYZER_SUPERSET_HOME" && pwd)
export SUPERSET_HOME=$LOGALYZER_SUPERSET_HOME
export SUPERSET_CONFIG_PATH=$PWD/superset/superset_config.py
export FLASK_APP=superset SUPERSET_LOAD_EXAMPLES=no
VENV=${LOGALYZER_SUPERSET_VENV:-$LOGALYZER_SUPERSET_HOME/venv}  # may be shared between homes
SUPERSET=$VENV/bin/superset
umask 077

if [[ "${1:-}" == "--fresh" ]]; then
  rm -f "$LOGALYZER_SUPERSET_HOME/superset.db"
fi

stamp=$VENV/.installed-6.1.0
# A venv outside the checkout may be shared by several runs: one installs, the others wait. One
# without its stamp (an install that was cut short) or whose Python is gone is made again.
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
command -v flock >/dev/null && flock 9
if [[ ! -f $stamp ]] || ! "$VENV/bin/python" -c '' 2>/dev/null; then
  echo "== installing Superset 6.1.0 into $VENV (a few minutes the first time)"
  if [[ -e $VENV && ! -f $VENV/pyvenv.cfg ]]; then
    echo "Error: $VENV exists and is not a virtual environment" >&2; exit 1
  fi
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet 'apache-superset==6.1.0' 'flask-caching==2.3.1' rich cachetools \
    'psycopg2-binary>=2.9'
  touch "$stamp"
fi
exec 9>&-

[[ -s $LOGALYZER_SUPERSET_HOME/secret_key ]] || "$VENV/bin/python" -c \
  'import secrets; print(secrets.token_urlsafe(48))' > "$LOGALYZER_SUPERSET_HOME/secret_key"
if [[ -n "${LOGALYZER_SUPERSET_PASSWORD:-}" ]]; then
  printf '%s\n' "$LOGALYZER_SUPERSET_PASSWORD" > "$LOGALYZER_SUPERSET_HOME/admin_password"
fi
[[ -s $LOGALYZER_SUPERSET_HOME/admin_password ]] || "$VENV/bin/python" -c \
  'import secrets; print(secrets.token_urlsafe(16))' > "$LOGALYZER_SUPERSET_HOME/admin_password"

echo "== metadata database, roles and the admin user"
"$SUPERSET" db upgrade >/dev/null 2>&1 || "$SUPERSET" db upgrade
"$SUPERSET" fab create-admin --username admin --firstname LOGalyzer --lastname Admin \
  --email admin@localhost --password "$(cat "$LOGALYZER_SUPERSET_HOME/admin_password")" >/dev/null
"$SUPERSET" init >/dev/null 2>&1 || "$SUPERSET" init

echo "== dashboards"
bundle=$LOGALYZER_SUPERSET_HOME/logalyzer_dashboards.zip
"$VENV/bin/python" superset/build_bundle.py --dsn "$LOGALYZER_DSN" -o "$bundle"
"$SUPERSET" import-dashboards -p "$bundle" -u admin
# A bundle's database is only created, never updated: keep the connection at LOGALYZER_DSN.
uri=$("$VENV/bin/python" -c 'import sys; sys.path.insert(0, "superset"); import build_bundle as b; print(b.sqlalchemy_uri(sys.argv[1]))' "$LOGALYZER_DSN")
"$SUPERSET" set-database-uri --database_name LOGalyzer --uri "$uri" >/dev/null

echo "Superset is ready: LOGALYZER_SUPERSET_HOME=$LOGALYZER_SUPERSET_HOME superset/serve.sh"
echo "  then http://127.0.0.1:${LOGALYZER_SUPERSET_PORT:-8088}/superset/dashboard/logalyzer-fleet/  (admin / the password in $LOGALYZER_SUPERSET_HOME/admin_password)"
