"""The database of `make superset-check` (superset/check.sh), with psycopg only.

    check_db.py create DSN            create DSN's database when it is missing
    check_db.py create-unique SERVER  create a database with a new name on SERVER, print its DSN
    check_db.py drop DSN              drop a database create-unique made (others are refused)

The unique names (lgz_superset_check_<UTC time>_<pid>_<random>) never meet the test suite's
databases or another check's, so checks may run side by side and each starts empty.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

PREFIX = "lgz_superset_check_"


def _maintenance(dsn: str) -> str:
    """The same server, database postgres (to create or drop another one from)."""
    return make_conninfo(**{**conninfo_to_dict(dsn), "dbname": "postgres"})


def _url(server: str, dbname: str) -> str:
    """server's DSN with another database, as a postgresql:// URL (LOGalyzer and Superset read
    URLs; the bundle builder turns it into SQLAlchemy's form)."""
    params = conninfo_to_dict(server)
    host, port = params.get("host", "127.0.0.1"), params.get("port", "5432")
    user = params.get("user", "postgres")
    password = params.get("password")
    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "") + "@"
    return f"postgresql://{auth}{host}:{port}/{dbname}"


def create(dsn: str) -> None:
    name = conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(_maintenance(dsn), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def create_unique(server: str) -> str:
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    name = f"{PREFIX}{stamp}_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(_maintenance(server), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _url(server, name)


def drop(dsn: str) -> None:
    name = conninfo_to_dict(dsn)["dbname"]
    if not name.startswith(PREFIX):
        raise SystemExit(
            f"refusing to drop {name!r}: only databases named {PREFIX}* are the check's"
        )
    with psycopg.connect(_maintenance(dsn), autocommit=True) as conn:
        # Superset's and Ray's connections may linger a moment after their processes were told
        # to stop
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("create", "create-unique", "drop"):
        print(__doc__, file=sys.stderr)
        return 2
    command, dsn = argv
    if command == "create":
        create(dsn)
    elif command == "create-unique":
        print(create_unique(dsn))
    else:
        drop(dsn)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
