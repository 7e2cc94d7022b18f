"""Storage: connections, the embedded server, migrations, device partitions (COPY of lines:
:mod:`logalyzer.store.lines`).

Every identifier built from input (a device's partition) goes through :func:`partition_name`,
which validates the RxID, and is quoted by psycopg's ``sql.Identifier``; every value is a bound
parameter.
"""

from __future__ import annotations

import re
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from logalyzer.core.files import is_valid_rxid
from logalyzer.errors import DatabaseUnreachable, InvalidIdentifier, LogalyzerError
from logalyzer.settings import Settings

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"  # beside the package, in the checkout
_MIGRATION_RE = re.compile(r"(\d{4})_[\w-]+\.sql")
_LOCK_MIGRATE = 7_301_001  # advisory lock keys (arbitrary, fixed)
_LOCK_PARTITION = 7_301_002
#: Held by a loader while it looks for a chunk's lines and stores the new ones (store.lines):
#: one writer per device at a time, so a line cannot be stored twice between look and write.
LOCK_LINES = 7_301_003


@dataclass
class Database:
    """A resolved DSN, plus the embedded server handle that keeps it alive (if any)."""

    dsn: str
    embedded: object | None = None

    def connect(self, **kwargs) -> psycopg.Connection:
        return connect(self.dsn, **kwargs)


def open_database(settings: Settings, migrate_schema: bool = True) -> Database:
    """Resolve the database of ``settings``: ``LOGALYZER_DSN``, else the embedded server.

    The embedded PostgreSQL (the ``pgserver`` package) lives in ``LOGALYZER_HOME/pgdata``; it
    is started on first use and stopped when the last process using it exits. Applies the
    migrations unless told not to.
    """
    if settings.dsn:
        db = Database(settings.dsn)
    else:
        db = _embedded(settings.home)
    if migrate_schema:
        with db.connect() as conn:
            migrate(conn)
    return db


def _embedded(home: Path) -> Database:
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import pgserver  # only without LOGALYZER_DSN; it warns at import, silenced here
    except ImportError as exc:  # pragma: no cover - declared dependency
        raise LogalyzerError(
            "the embedded PostgreSQL needs the pgserver package",
            hint="pip install pgserver, or set LOGALYZER_DSN",
        ) from exc
    home.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(home / "pgdata", cleanup_mode="stop")
    except Exception as exc:  # pgserver raises several kinds; all mean "could not start"
        raise DatabaseUnreachable(
            f"could not start the embedded PostgreSQL in {home / 'pgdata'}: {exc}",
        ) from exc
    _tune_for_bulk_loads(server.get_uri())
    return Database(server.get_uri(), embedded=server)


#: The embedded server's settings for loading gigabytes (its configuration is ours; README
#: "Capacity" recommends the same for a server of your own): checkpoints far enough apart
#: that a load is not one checkpoint after another, and full-page images compressed.
BULK_LOAD_SETTINGS = {"max_wal_size": "4GB", "checkpoint_timeout": "15min", "wal_compression": "on"}
_BULK_LOAD_READS = {"max_wal_size": "4096MB", "checkpoint_timeout": "900s"}


def _tune_for_bulk_loads(dsn: str) -> None:
    """Apply :data:`BULK_LOAD_SETTINGS` once (ALTER SYSTEM, then a reload: none of them needs
    a restart); later starts find them set and write nothing."""
    with connect(dsn, autocommit=True) as conn:
        now = dict(
            conn.execute(
                "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name = ANY(%s)",
                (list(BULK_LOAD_SETTINGS),),
            ).fetchall()
        )
        stale = [
            name
            for name, value in BULK_LOAD_SETTINGS.items()
            if now.get(name) in (None, "off")
            or (name in _BULK_LOAD_READS and now[name] != _BULK_LOAD_READS[name])
        ]
        for name in stale:
            conn.execute(
                sql.SQL("ALTER SYSTEM SET {} = {}").format(
                    sql.Identifier(name), sql.Literal(BULK_LOAD_SETTINGS[name])
                )
            )
        if stale:
            conn.execute("SELECT pg_reload_conf()")


def describe(dsn: str) -> str:
    """'database X on host Y' for messages: never the password."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "the database given by LOGALYZER_DSN (unparsable URL)"
    host = info.get("host") or "localhost"
    port = f":{info['port']}" if info.get("port") else ""
    return f"database {info.get('dbname') or info.get('user') or '?'} on {host}{port}"


def connect(dsn: str, **kwargs) -> psycopg.Connection:
    """A psycopg connection, or :class:`DatabaseUnreachable` naming host and database."""
    try:
        return psycopg.connect(dsn, connect_timeout=10, **kwargs)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        reason = reason.replace(
            psycopg.conninfo.conninfo_to_dict(dsn).get("password") or "\0", "***"
        )
        raise DatabaseUnreachable(f"cannot reach {describe(dsn)}: {reason}") from exc
    except psycopg.ProgrammingError as exc:
        raise DatabaseUnreachable(f"LOGALYZER_DSN is not a valid PostgreSQL URL: {exc}") from exc


# --------------------------------------------------------------------------- migrations


def migrations(sql_dir: Path = SQL_DIR) -> list[tuple[str, Path]]:
    """Numbered SQL files in order: [('0001', path), ...]."""
    if not sql_dir.is_dir():
        raise LogalyzerError(
            f"schema folder {sql_dir} not found",
            hint="run from a checkout of LOGalyzer (sql/ sits beside logalyzer/)",
        )
    found = []
    for p in sorted(sql_dir.iterdir()):
        m = _MIGRATION_RE.fullmatch(p.name)
        if m:
            found.append((m.group(1), p))
    return found


def migrate(conn: psycopg.Connection, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply the migrations not yet recorded in ``schema_migrations``; return their names.

    Safe to run from many processes at once: an advisory lock serialises them, and each file
    is applied in its own transaction together with its record.
    """
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_MIGRATE,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
        for version, path in migrations(sql_dir):
            if version in done:
                continue
            conn.execute(path.read_text())
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (version, path.name),
            )
            applied_now.append(path.name)
    return applied_now


# --------------------------------------------------------------------------- partitions


def partition_name(rxid: str) -> str:
    """The partition of a device: ``R1234567890`` → ``r1234567890`` (validated)."""
    if not is_valid_rxid(rxid):
        raise InvalidIdentifier(f"not an RxID: {rxid!r}")
    return rxid.lower()


def ensure_partition(conn: psycopg.Connection, rxid: str) -> str:
    """Create the device's ``log_lines`` partition if it does not exist; return its name.

    Several workers may meet a new device at once: an advisory lock per device lets one of
    them create it while the others wait and then find it. Runs in its own transaction, so
    it must not be called inside one that has written to ``log_lines`` (the creation needs a
    lock on the parent table).
    """
    name = partition_name(rxid)
    if _exists(conn, name):
        return name
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_PARTITION, rxid))
        if not _exists(conn, name):
            table = sql.Identifier(name)
            conn.execute(
                sql.SQL("CREATE TABLE {} PARTITION OF log_lines FOR VALUES IN ({})").format(
                    table, sql.Literal(rxid)
                )
            )
            # digests of a dropped table whose OID the new one was given: sql/0019's event
            # trigger deletes a dropped table's digests, but only a superuser can create it
            conn.execute("DELETE FROM line_ranges WHERE part = %s::regclass", (name,))
            # Only lines without a key need a unique index (sql/0017); a partition made
            # before 0017 has `{name}_md5` on every line instead, and keeps it.
            conn.execute(
                sql.SQL("CREATE UNIQUE INDEX {} ON {} (line_md5) WHERE line_key IS NULL").format(
                    sql.Identifier(f"{name}_md5_nokey"), table
                )
            )
            # the loader summarises the ranges it fills; autovacuum's queue would overflow
            # (sql/0020)
            for index in brin_indexes(conn, name):
                conn.execute(
                    sql.SQL("ALTER INDEX {} SET (autosummarize = off)").format(
                        sql.Identifier(index)
                    )
                )
            # keyed lines' digests follow the rows when a user deletes some (sql/0018)
            conn.execute(
                sql.SQL(
                    "CREATE TRIGGER line_ranges_follow AFTER DELETE OR UPDATE OR TRUNCATE ON {}"
                    " FOR EACH STATEMENT EXECUTE FUNCTION line_ranges_follow()"
                ).format(table)
            )
    return name


def brin_indexes(conn: psycopg.Connection, table: str) -> list[str]:
    """The names of ``table``'s BRIN indexes (a device table has one, on ``ts``: sql/0012)."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT c.relname FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam"
            " WHERE i.indrelid = to_regclass(%s) AND am.amname = 'brin'",
            (table,),
        )
    ]


def legacy_partitions(conn: psycopg.Connection) -> list[str]:
    """Device partitions made before sql/0017: a unique index on ``line_md5`` checks every
    line they receive (the loader keeps using it; README "Upgrading" converts them)."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = to_regclass('log_lines')"
            " AND to_regclass(quote_ident(c.relname || '_md5')) IS NOT NULL ORDER BY 1"
        )
    ]


def _exists(conn: psycopg.Connection, name: str) -> bool:
    # A plain query of pg_class, not to_regclass(): the latter reads the backend's catalog
    # cache, which an advisory lock does not refresh, so it can miss a table another session
    # has just created and committed.
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_class WHERE relname = %s"
        " AND relnamespace = current_schema()::regnamespace)",
        (name,),
    ).fetchone()
    return bool(row and row[0])


# --------------------------------------------------------------------------- scratch databases


@contextmanager
def scratch_database(dsn: str, prefix: str = "logalyzer_scratch") -> Iterator[Database]:
    """A new, migrated database on the server of ``dsn``, dropped on the way out (an
    evaluation's fleets each get one, so the user's own data is never touched)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    scratch = psycopg.conninfo.make_conninfo(**{**params, "dbname": name})
    with connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with connect(scratch) as conn:
            migrate(conn)
        yield Database(scratch)
    finally:
        with connect(dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
