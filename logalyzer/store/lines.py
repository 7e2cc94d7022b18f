"""Loading parsed lines into a device's partition: COPY, duplicates, refused rows, lost servers.

:class:`LineLoader` owns one connection and takes a parsed chunk (an Arrow table of
:data:`LINE_COLUMNS`) at a time. Three things can go wrong, and each costs as little as it can:

- **Duplicates** (a re-read file, the overlap of rotated files, a line repeated in a file):
  COPY cannot skip them, and any index on the lines to find them by cost PostgreSQL as much
  again as the COPY itself (a unique index on every line's random digest; sql/0017's BRIN
  indexes on ``line_key``: bench/README.md, "Digests beside the lines"). So the loader finds
  them first and the lines carry no index for it: a line's twin has the same ``line_key`` (its
  own clock as written, parser docstring), and ``line_ranges`` (sql/0018) holds, for each range
  of keys stored, the digests of its lines. Under a per-device advisory lock
  (:data:`~logalyzer.store.db.LOCK_LINES`) the loader reads the digests of the ranges that meet
  its chunk's key ranges (:func:`key_ranges`), looks up its keyless (unparsed) lines in their
  partial unique index, COPYs only the new lines and records their digests
  (:func:`record_ranges`), all in one transaction. A partition made before sql/0017 still has
  a unique index on ``line_md5`` and is loaded as before (:meth:`LineLoader._insert_legacy`).
- **A row PostgreSQL refuses** (SQLSTATE classes 22 data exception, 23 integrity, 54 program
  limit: a value the parser's clean-up did not foresee): the chunk is split in halves until the
  rows at fault are alone; every other row is stored. A refused row is stored again degraded
  (status ``partial``, VAR fields null, text made storable, its raw message kept); only a row
  refused even so is lost, and counted (``failed``).
- **A database error not about the data** (connection lost, server restarting, statement
  cancelled, deadlock): the transaction is retried on a new connection after a pause that
  doubles (:data:`BACKOFF_S`, about 15 s in all); after that :class:`DatabaseGone` is raised and
  the caller leaves the file for the next run. While the database stays gone, later calls try
  once instead of waiting the whole backoff again, so a run with many files queued ends fast.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from logalyzer.core.storable import storable
from logalyzer.errors import DatabaseGone, DatabaseUnreachable, first_line
from logalyzer.store import pgbinary
from logalyzer.store.db import LOCK_LINES, brin_indexes, connect, partition_name

#: Columns of a parsed chunk in COPY order (= parser.SCHEMA), then the two the loader adds.
LINE_COLUMNS = (
    "line_md5",
    "line_key",
    "line_no",
    "ts",
    "ts_inferred",
    "uptime_s",
    "pid",
    "tid",
    "uid",
    "level",
    "tag",
    "message",
    "status",
    "truncated",
    "category",
    "function",
    "event_type",
    "data",
)
COPY_COLUMNS = LINE_COLUMNS + ("rxid", "file_id")
_JSONB = frozenset({"data"})
_VAR_FIELDS = ("category", "function", "event_type", "data")
_TEXT_FIELDS = ("uid", "level", "tag", "message")
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass
class ChunkResult:
    """What became of a chunk's rows. ``inserted`` counts the degraded rows too; the rest of
    the chunk (:attr:`duplicate`) were already stored."""

    rows: int = 0
    inserted: int = 0
    degraded: int = 0
    failed: int = 0
    reason: str | None = None  # PostgreSQL's word on the first refused row

    @property
    def duplicate(self) -> int:
        return self.rows - self.inserted - self.failed

    def __add__(self, other: ChunkResult) -> ChunkResult:
        return ChunkResult(
            self.rows + other.rows,
            self.inserted + other.inserted,
            self.degraded + other.degraded,
            self.failed + other.failed,
            self.reason or other.reason,
        )


def is_data_error(exc: BaseException) -> bool:
    """Whether PostgreSQL refused the data itself (so retrying the same rows cannot help)."""
    code = getattr(exc, "sqlstate", None) or ""
    return code[:2] in ("22", "23", "54") and code != "23505"


def is_transient(exc: BaseException) -> bool:
    """Whether the error is the server's or the network's, not the data's: worth a retry."""
    if isinstance(exc, DatabaseUnreachable):
        return True
    return isinstance(exc, psycopg.OperationalError) and not is_data_error(exc)


@dataclass
class LineLoader:
    """One connection, its staging table, and the rules of the module docstring."""

    dsn: str
    backoff: tuple[float, ...] = BACKOFF_S
    connect_now: bool = True  # False: the first load connects (and may find the server gone)
    conn: psycopg.Connection | None = field(default=None, init=False, repr=False)
    direct: bool = field(default=True, init=False)  # False after a chunk full of duplicates
    gone: bool = field(default=False, init=False)  # the last retries ran out
    _legacy_parts: dict = field(default_factory=dict, init=False, repr=False)
    _time_indexes: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._cols = sql.SQL(", ").join(map(sql.Identifier, COPY_COLUMNS))
        if self.connect_now:
            self.run(lambda conn: None)  # a bad DSN shows at once

    # ------------------------------------------------------------------ connection
    def run(self, fn):
        """``fn(conn)`` with the retry rule of the module docstring (``fn`` must be safe to
        repeat: one transaction, or idempotent statements)."""
        delays = list(self.backoff[:1] if self.gone else self.backoff)
        while True:
            try:
                if self.conn is None or self.conn.closed:
                    self._reconnect()
                result = fn(self.conn)
                self.gone = False
                return result
            except (psycopg.Error, DatabaseUnreachable) as exc:
                if not is_transient(exc):
                    raise
                self.close()
                if not delays:
                    self.gone = True
                    raise DatabaseGone(first_line(exc)) from exc
                time.sleep(delays.pop(0))

    def _reconnect(self) -> None:
        self.conn = connect(self.dsn, autocommit=True)
        # A chunk's commit need not wait for its WAL to reach the disk: if the server crashes,
        # the last chunks are lost with the ledger row's closing, which comes after them in
        # the WAL, so the file stays `loading` and the next run reads it again.
        self.conn.execute("SET synchronous_commit = off")
        with self.conn.transaction():
            self.conn.execute("DROP TABLE IF EXISTS pg_temp.stage_lines")
            self.conn.execute(
                sql.SQL(
                    "CREATE TEMP TABLE stage_lines ON COMMIT DELETE ROWS AS"
                    " SELECT {} FROM log_lines WITH NO DATA"
                ).format(self._cols)
            )

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg.Error:
                pass
        self.conn = None

    # ------------------------------------------------------------------ loading
    def load(self, rxid: str, file_id: int, table: pa.Table) -> ChunkResult:
        """Store one parsed chunk (columns :data:`LINE_COLUMNS`) of a file of ``rxid``."""
        n = table.num_rows
        if n == 0:
            return ChunkResult()
        part = partition_name(rxid)
        if self._legacy(part):  # md5 order: two loaders take the unique index's locks alike
            table = table.take(pc.sort_indices(table["line_md5"]))
        else:  # each line once (the lookup only sees committed rows), in key order
            table = _first_of_each(table)
        table = table.append_column("rxid", pa.repeat(rxid, table.num_rows)).append_column(
            "file_id", pa.repeat(file_id, table.num_rows).cast(pa.int32())
        )
        result = self._store(rxid, part, table)
        result.rows += n - table.num_rows  # repeated within the chunk: duplicates
        return result

    def _legacy(self, part: str) -> bool:
        """Whether the partition was made before sql/0017: a unique index on ``line_md5``
        alone keeps it idempotent (every row is checked by that index, as before)."""
        if part not in self._legacy_parts:
            self._legacy_parts[part] = bool(
                self.run(
                    lambda conn: conn.execute(
                        "SELECT to_regclass(%s) IS NOT NULL", (f"{part}_md5",)
                    ).fetchone()[0]
                )
            )
        return self._legacy_parts[part]

    def _store(self, rxid: str, part: str, table: pa.Table) -> ChunkResult:
        """Insert ``table``; on a refused row, halve until the refused rows are alone."""
        try:
            inserted = self.run(lambda conn: self._insert(conn, rxid, part, table))
            return ChunkResult(table.num_rows, inserted)
        except psycopg.Error as exc:
            if not is_data_error(exc):
                raise
            if table.num_rows == 1:
                return self._store_degraded(rxid, part, table, first_line(exc))
        half = table.num_rows // 2
        return self._store(rxid, part, table.slice(0, half)) + self._store(
            rxid, part, table.slice(half)
        )

    def _store_degraded(self, rxid: str, part: str, row: pa.Table, reason: str) -> ChunkResult:
        degraded = _degrade(row)
        try:
            inserted = self.run(lambda conn: self._insert(conn, rxid, part, degraded))
        except psycopg.Error as exc:
            if not is_data_error(exc):
                raise
            return ChunkResult(1, failed=1, reason=reason)
        return ChunkResult(1, inserted, degraded=inserted, reason=reason)

    def _insert(self, conn: psycopg.Connection, rxid: str, part: str, table: pa.Table) -> int:
        """One transaction: the rows of ``table`` not yet stored; return how many."""
        if self._legacy(part):
            return self._insert_legacy(conn, sql.Identifier(part), table)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_LINES, rxid))
            stored = _stored_md5s(conn, part, table)
            if len(stored):
                table = table.filter(pc.invert(pc.is_in(table["line_md5"], stored)))
            if table.num_rows:
                self._copy(conn, sql.Identifier(part), pgbinary.encode(table, jsonb=_JSONB))
                record_ranges(conn, part, table)
                self._summarize(conn, part)
        return table.num_rows

    def _summarize(self, conn: psycopg.Connection, part: str) -> None:
        """Summarise the block ranges the chunk filled in the partition's BRIN index on ``ts``,
        so that a search or a drill-down reads only the ranges of its time window: an
        unsummarised range matches every window, and ``autosummarize`` only queues a request
        for autovacuum that a bulk load overflows, leaving the ranges to the table's next
        VACUUM (bench/README.md "Digests beside the lines"). An optimisation, not a promise:
        if VACUUM holds the table, skip."""
        if part not in self._time_indexes:
            self._time_indexes[part] = brin_indexes(conn, part)
        try:
            with conn.transaction():  # a savepoint: a lock timeout undoes only this
                conn.execute("SET LOCAL lock_timeout = '50ms'")
                for index in self._time_indexes[part]:
                    conn.execute("SELECT brin_summarize_new_values(%s::regclass)", (index,))
        except psycopg.errors.LockNotAvailable:
            pass

    def _insert_legacy(self, conn: psycopg.Connection, part: sql.Identifier, table) -> int:
        """The pre-0017 partition: COPY, and on a duplicate the staging table's
        ``ON CONFLICT DO NOTHING`` (module docstring)."""
        data = pgbinary.encode(table, jsonb=_JSONB)
        if self.direct:
            try:
                with conn.transaction():
                    self._copy(conn, part, data)
                return table.num_rows
            except psycopg.errors.UniqueViolation:
                pass
        with conn.transaction():
            self._copy(conn, sql.Identifier("stage_lines"), data)
            cur = conn.execute(
                sql.SQL(
                    "INSERT INTO {} ({cols}) SELECT {cols} FROM stage_lines"
                    " ON CONFLICT (line_md5) DO NOTHING"
                ).format(part, cols=self._cols)
            )
            inserted = cur.rowcount
        self.direct = inserted > table.num_rows // 2  # mostly new lines: try the fast path again
        return inserted

    def _copy(self, conn: psycopg.Connection, table: sql.Composable, data: bytes) -> None:
        stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(table, self._cols)
        with conn.cursor() as cur, cur.copy(stmt) as cp:
            cp.write(data)


#: A gap in a chunk's keys wider than this (an hour) starts another range: a chunk that holds
#: kernel lines (uptime keys) and logcat lines (date keys), or a clock set mid-file, asks for
#: (and records) two narrow windows instead of one that spans everything between.
KEY_GAP_US = 3_600_000_000
MAX_RANGES = 32


def key_ranges(keys: pa.Array) -> list[tuple[int, int]]:
    """The chunk's keys (nulls ignored) as at most :data:`MAX_RANGES` closed ranges, none of
    which holds both negative keys (kernel uptimes) and others (clocks), which are apart
    whatever their distance."""
    return _ranges(np.sort(pc.drop_null(keys).to_numpy()))


def _ranges(k: np.ndarray) -> list[tuple[int, int]]:
    """:func:`key_ranges` of keys already sorted, without nulls."""
    if len(k) == 0:
        return []
    gaps = np.diff(k).astype(float)
    gaps[(k[:-1] < 0) & (k[1:] >= 0)] = np.inf  # uptimes and clocks: never one range
    cut = np.flatnonzero(gaps > KEY_GAP_US)
    if len(cut) >= MAX_RANGES:  # keep the widest gaps
        cut = np.sort(cut[np.argsort(gaps[cut], kind="stable")[-(MAX_RANGES - 1) :]])
    starts = np.concatenate(([0], cut + 1))
    ends = np.concatenate((cut, [len(k) - 1]))
    return [(int(k[a]), int(k[b])) for a, b in zip(starts, ends)]


def _stored_md5s(conn: psycopg.Connection, part: str, table: pa.Table) -> pa.Array:
    """The digests (16 bytes) stored in partition ``part`` that may be the chunk's lines.

    A line's twin has the same key (its own clock as written), so the digests recorded for the
    key ranges that meet the chunk's hold every twin of its keyed lines (sql/0018); lines
    without a key are looked up by digest in the partial unique index. Read under the device's
    lock, so no other loader adds a twin meanwhile.
    """
    blobs: list[bytes] = []
    ranges = key_ranges(table["line_key"])
    if ranges:
        meets = sql.SQL(" OR ").join([sql.SQL("(key_lo <= %s AND key_hi >= %s)")] * len(ranges))
        query = sql.SQL("SELECT md5s FROM line_ranges WHERE part = %s::regclass AND ({})")
        params = [part, *(bound for lo, hi in ranges for bound in (hi, lo))]
        blobs += [b for (b,) in conn.execute(query.format(meets), params, binary=True)]
    nokey = pc.is_null(table["line_key"])
    if pc.any(nokey).as_py():
        md5s = [uuid.UUID(bytes=b) for b in table["line_md5"].filter(nokey).to_pylist()]
        query = sql.SQL(
            "SELECT line_md5 FROM {} WHERE line_key IS NULL AND line_md5 = ANY(%s)"
        ).format(sql.Identifier(part))
        blobs += [u.bytes for (u,) in conn.execute(query, (md5s,))]
    found = b"".join(blobs)
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(16), len(found) // 16, [None, pa.py_buffer(found)]
    )


def record_ranges(conn: psycopg.Connection, part: str, table: pa.Table) -> None:
    """Record the digests of the keyed lines just stored (``table``, in key order as
    :func:`_first_of_each` leaves it), one ``line_ranges`` row per range of their keys."""
    keys = table["line_key"].combine_chunks()
    keyed = len(keys) - keys.null_count  # nulls sort last
    if not keyed:
        return
    k = keys.slice(0, keyed).to_numpy()
    md5 = table["line_md5"].combine_chunks()
    digests = memoryview(md5.buffers()[1])[md5.offset * 16 : (md5.offset + keyed) * 16]
    rows = []
    for lo, hi in _ranges(k):
        a, b = np.searchsorted(k, lo, "left"), np.searchsorted(k, hi, "right")
        rows.append((part, lo, hi, int(b - a), bytes(digests[a * 16 : b * 16])))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO line_ranges (part, key_lo, key_hi, lines, md5s)"
            " VALUES (%s::regclass, %s, %s, %s, %b)",
            rows,
        )


def digest_totals(conn: psycopg.Connection) -> tuple[int, int]:
    """(key ranges, lines) whose digests ``line_ranges`` holds, over every device."""
    ranges, lines = conn.execute(
        "SELECT count(*), coalesce(sum(lines), 0) FROM line_ranges"
    ).fetchone()
    return int(ranges), int(lines)


def _first_of_each(table: pa.Table) -> pa.Table:
    """The chunk in (key, digest) order, each digest once.

    Copies of a line have the same key and digest, so in that order they are neighbours.
    """
    table = table.take(
        pc.sort_indices(table, [("line_key", "ascending"), ("line_md5", "ascending")])
    )
    md5 = table["line_md5"].combine_chunks()
    halves = np.frombuffer(md5.buffers()[1], np.uint64, count=2 * len(md5), offset=md5.offset * 16)
    halves = halves.reshape(-1, 2)
    repeat = (halves[1:] == halves[:-1]).all(axis=1)
    if not repeat.any():
        return table
    return table.filter(pa.array(np.concatenate(([True], ~repeat))))


def _degrade(row: pa.Table) -> pa.Table:
    """A refused row as it can still be stored: VAR fields null, text made storable, status
    ``partial``. Its idempotency key, time and raw message stay."""
    cols = {}
    for name in row.column_names:
        col = row[name]
        if name in _VAR_FIELDS:
            col = pa.nulls(row.num_rows, col.type)
        elif name in _TEXT_FIELDS:
            col = pa.array([storable(v) for v in col.to_pylist()], col.type)
        elif name == "status":
            col = pa.array(["partial"] * row.num_rows, col.type)
        cols[name] = col
    return pa.table(cols, schema=row.schema)
