"""Shared fixtures: one real PostgreSQL database and one local Ray per test session.

The database server is ``LOGALYZER_TEST_DSN`` when set (CI points it at the machine's server),
else an embedded ``pgserver`` in a temporary folder. Either way the session creates its own
database and drops it at the end.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import psycopg
import pytest
import ray
from psycopg import sql

from logalyzer.jobs.rayutil import ensure_ray
from logalyzer.settings import Settings
from logalyzer.store.db import Database, migrate


def _server_dsn(tmp_root: Path) -> tuple[str, object | None]:
    dsn = os.environ.get("LOGALYZER_TEST_DSN")
    if dsn:
        return dsn, None
    import pgserver  # only without LOGALYZER_TEST_DSN: it starts a server of its own

    server = pgserver.get_server(tmp_root / "pgdata", cleanup_mode="delete")
    return server.get_uri(), server


def _with_dbname(dsn: str, dbname: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**params)


@pytest.fixture(scope="session")
def pg_dsn(tmp_path_factory) -> str:
    """DSN of a brand-new database, dropped when the session ends."""
    base, server = _server_dsn(tmp_path_factory.mktemp("pg"))
    name = f"logalyzer_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = _with_dbname(base, name)
    with psycopg.connect(dsn) as conn:
        migrate(conn)
    yield dsn
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
    del server


def empty_database(dsn: str) -> None:
    """No device partitions and every other table empty (the schema stays;
    ``schema_migrations`` is kept). For a module that loads its data once, too."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        parts = [
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'log_lines'::regclass"
            )
        ]
        for p in parts:
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(p)))
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename NOT IN ('schema_migrations', 'log_lines')"
            )
        ]
        if tables:
            conn.execute(
                sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                    sql.SQL(", ").join(sql.Identifier(t) for t in tables)
                )
            )


@pytest.fixture()
def db(pg_dsn) -> Database:
    """The test database, emptied (:func:`empty_database`)."""
    empty_database(pg_dsn)
    return Database(pg_dsn)


@pytest.fixture(scope="session")
def settings(pg_dsn, tmp_path_factory) -> Settings:
    return Settings(dsn=pg_dsn, home=tmp_path_factory.mktemp("home"), ingest_concurrency=2)


@pytest.fixture(scope="session")
def ray_local(settings):
    """One local Ray for the whole session (ray.init costs seconds on 2 cores)."""
    ensure_ray(settings)
    yield ray
    ray.shutdown()
