"""What the benchmarks share: a fresh database on the configured server, dropped afterwards."""

from __future__ import annotations

import secrets
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent


@contextmanager
def fresh_database(base_settings, keep: bool = False):
    """Yield (settings, Database) of a new ``bench_<hex>`` database on the server of
    ``base_settings`` (LOGALYZER_DSN, else the embedded one), migrated; dropped at the end
    (even on failure) unless ``keep``."""
    import psycopg
    from psycopg import sql

    from logalyzer.db import Database, migrate, open_database

    server = open_database(base_settings, migrate_schema=False)
    name = f"bench_{secrets.token_hex(5)}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = psycopg.conninfo.conninfo_to_dict(server.dsn)
    params["dbname"] = name
    dsn = psycopg.conninfo.make_conninfo(**params)
    try:
        with psycopg.connect(dsn) as conn:
            migrate(conn)
        yield base_settings.model_copy(update={"dsn": dsn}), Database(dsn)
    finally:
        if not keep:
            with psycopg.connect(server.dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
