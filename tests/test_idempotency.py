"""Each distinct line once per device, without an index on the lines to find twins by.

The loader looks for a chunk's twins among the digests recorded for the key ranges that meet
the chunk's ranges of ``line_key`` (the line's own clock as its text writes it; ``line_ranges``,
sql/0018), under a per-device lock; only unparsed lines keep a unique index. These tests load
through the real loader into the real database (no Ray: the loader is what decides), with the
cases where a time-window check could go wrong: another time zone, kernel lines beside logcat
lines, lines without a header, repeats within a chunk, a year-less Feb 29, two loaders at once,
lines deleted or a partition dropped by hand, a database upgraded from 0017, and a partition
made before 0017. And one thing the loader does for the reads: a time window right after a load
reads only its block ranges."""

from __future__ import annotations

import threading
from datetime import datetime

import psycopg
import pyarrow as pa
import pytest
from click.testing import CliRunner

from logalyzer.cli import main
from logalyzer.core.parser import FileParser
from logalyzer.store.db import LOCK_LINES, SQL_DIR, ensure_partition, legacy_partitions
from logalyzer.store.lines import MAX_RANGES, LineLoader, key_ranges

from .helpers import execute, query

RX = "R1234567890"


def logcat(i: int) -> str:
    clock = f"{10 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}"
    return f"03-17 {clock}.000  1702  2395 I Tag: line {i}"


def chunk(lines: list[str], tz: str = "UTC", anchor: datetime | None = None) -> pa.Table:
    return FileParser(RX, tz=tz, anchor=anchor or datetime(2026, 3, 20)).parse(pa.array(lines))


@pytest.fixture()
def loader(db):
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        ensure_partition(conn, RX)
    ld = LineLoader(db.dsn)
    yield ld
    ld.close()


def stored(dsn: str) -> tuple[int, int]:
    return query(dsn, f"SELECT count(*), count(DISTINCT line_md5) FROM {RX}")[0]


def test_overlapping_chunks_add_only_their_new_lines(db, loader):
    lines = [logcat(i) for i in range(3000)]
    assert loader.load(RX, 1, chunk(lines[:2000])).inserted == 2000
    again = loader.load(RX, 2, chunk(lines[1500:]))
    assert (again.rows, again.inserted, again.duplicate) == (1500, 1000, 500)
    assert stored(db.dsn) == (3000, 3000)


def test_another_time_zone_does_not_store_the_lines_again(db, loader):
    # the key is the clock as written, so a re-read with LOGALYZER_TZ changed finds its twins
    lines = [logcat(i) for i in range(500)]
    assert loader.load(RX, 1, chunk(lines, tz="UTC")).inserted == 500
    assert loader.load(RX, 1, chunk(lines, tz="America/New_York")).inserted == 0
    assert loader.load(RX, 1, chunk(lines, anchor=datetime(2031, 1, 1))).inserted == 0
    assert stored(db.dsn) == (500, 500)


def test_kernel_lines_beside_logcat_lines(db, loader):
    lines = []
    for i in range(1200):
        lines.append(logcat(i))
        if i % 3 == 0:
            lines.append(f"<6>[ {1000 + i}.{i:06d}] hdmitx: event {i}")
    table = chunk(lines)
    assert len(key_ranges(table["line_key"])) == 2  # uptimes and dates: two narrow windows
    half = len(lines) // 2
    assert loader.load(RX, 1, chunk(lines[:half])).inserted == half
    assert loader.load(RX, 2, table).inserted == len(lines) - half
    assert stored(db.dsn) == (len(lines), len(lines))


def test_lines_without_a_header_are_stored_once(db, loader):
    lines = [f"garbage without a header {i % 50}" for i in range(100)]  # 50 distinct
    first = loader.load(RX, 1, chunk(lines))
    assert (first.inserted, first.duplicate) == (50, 50)
    assert loader.load(RX, 2, chunk(lines[:70] + [logcat(1)])).inserted == 1
    assert stored(db.dsn) == (51, 51)
    assert query(db.dsn, f"SELECT count(*) FROM {RX} WHERE line_key IS NULL") == [(50,)]


def test_a_line_repeated_within_a_chunk_is_stored_once(db, loader):
    lines = [logcat(i % 10) for i in range(100)]  # the same ten lines, ten times each
    got = loader.load(RX, 1, chunk(lines))
    assert (got.rows, got.inserted, got.duplicate) == (100, 10, 90)
    assert stored(db.dsn) == (10, 10)


def test_feb_29_without_a_year_is_one_line_in_any_year(db, loader):
    # valid when the file's year is a leap year, an impossible date (unparsed) otherwise: the
    # key reads the text, so both readings find each other
    line = ["02-29 10:00:00.000  1702  2395 I Tag: leap"]
    leap, plain = chunk(line, anchor=datetime(2024, 3, 1)), chunk(line, anchor=datetime(2025, 3, 1))
    assert (leap["status"][0].as_py(), plain["status"][0].as_py()) == ("ok", "unparsed")
    assert loader.load(RX, 1, leap).inserted == 1
    assert loader.load(RX, 2, plain).inserted == 0
    assert stored(db.dsn) == (1, 1)


def test_two_loaders_at_once_store_each_line_once(db, loader):
    lines = [logcat(i) for i in range(4000)] + [f"no header {i}" for i in range(200)]
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        ld = LineLoader(db.dsn)
        try:
            for start in range(offset, 4200, 700):
                ld.load(RX, 1, chunk(lines[start : start + 1400]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            ld.close()

    threads = [threading.Thread(target=work, args=(k * 350,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    work(0)  # and once more from the start: nothing new
    assert stored(db.dsn) == (4200, 4200)


def test_a_partition_from_before_0017_keeps_its_index_and_stays_idempotent(db, cli_env_db):
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        name = ensure_partition(conn, RX)
        conn.execute(f"DROP INDEX {name}_md5_nokey")
        conn.execute(f"CREATE UNIQUE INDEX {name}_md5 ON {name} (line_md5)")
        assert legacy_partitions(conn) == [name]
    ld = LineLoader(db.dsn)
    lines = [logcat(i) for i in range(300)]
    assert ld.load(RX, 1, chunk(lines[:200])).inserted == 200
    assert ld.load(RX, 1, chunk(lines)).inserted == 100
    ld.close()
    assert stored(db.dsn) == (300, 300)
    out = CliRunner().invoke(main, ["db", "migrate"])
    assert out.exit_code == 0, out.output
    assert "1 device table(s) from before 0017_line_key (r1234567890)" in out.output
    assert "re-ingest it" in out.output


def test_key_ranges_split_at_gaps_and_stay_bounded():
    hour = 3_600_000_000
    keys = pa.array([5, 1, 3, None, 10 * hour, 10 * hour + 7], pa.int64())
    assert key_ranges(keys) == [(1, 5), (10 * hour, 10 * hour + 7)]
    assert key_ranges(pa.array([None], pa.int64())) == []
    many = pa.array([k * 2 * hour for k in range(-50, 50)], pa.int64())
    ranges = key_ranges(many)
    assert len(ranges) == MAX_RANGES
    covered = [k for k in many.to_pylist() if any(lo <= k <= hi for lo, hi in ranges)]
    assert len(covered) == 100
    assert all((lo < 0) == (hi < 0) for lo, hi in ranges)  # never across the two indexes
    assert key_ranges(pa.array([-5, -1, 0, 3], pa.int64())) == [(-5, -1), (0, 3)]


def ranges(dsn: str) -> list[tuple]:
    return query(dsn, "SELECT key_lo, key_hi, lines, length(md5s) FROM line_ranges ORDER BY 1")


def test_each_stored_range_records_its_digests_once(db, loader):
    lines = [logcat(i) for i in range(600)]
    loader.load(RX, 1, chunk(lines[:400]))
    loader.load(RX, 1, chunk(lines[:400]))  # nothing new: nothing recorded
    loader.load(RX, 2, chunk(lines[300:]))
    got = ranges(db.dsn)
    assert [(n, size) for _, _, n, size in got] == [(400, 6400), (200, 3200)]
    assert got[0][1] < got[1][0]  # the second chunk recorded only the lines it stored


def test_lines_deleted_by_hand_load_again_and_only_they(db, loader):
    lines = [logcat(i) for i in range(1000)] + [f"no header {i}" for i in range(10)]
    loader.load(RX, 1, chunk(lines))
    execute(db.dsn, f"DELETE FROM {RX} WHERE message LIKE 'line 1__' OR message = 'no header 3'")
    assert stored(db.dsn) == (909, 909)
    again = loader.load(RX, 1, chunk(lines))
    assert (again.inserted, again.duplicate) == (101, 909)
    assert stored(db.dsn) == (1010, 1010)
    execute(db.dsn, "DELETE FROM log_lines WHERE message IN ('line 7', 'line 8')")  # the parent
    assert loader.load(RX, 1, chunk(lines)).inserted == 2
    execute(db.dsn, f"TRUNCATE {RX}")
    assert ranges(db.dsn) == []
    assert loader.load(RX, 1, chunk(lines)).inserted == 1010
    execute(db.dsn, "TRUNCATE log_lines")
    assert ranges(db.dsn) == []


def test_the_digests_rebuild_takes_the_loaders_lock():
    # sql/0018 names the lock by number: it must be the one the loaders take
    assert f"pg_advisory_xact_lock({LOCK_LINES}," in (SQL_DIR / "0018_line_ranges.sql").read_text()


def test_a_partition_dropped_and_made_again_loads_everything_again(db, loader):
    lines = [logcat(i) for i in range(500)]
    loader.load(RX, 1, chunk(lines))
    execute(db.dsn, f"DROP TABLE {RX}")
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        ensure_partition(conn, RX)
    assert ranges(db.dsn) == []  # the dropped partition's digests went with it
    assert LineLoader(db.dsn).load(RX, 1, chunk(lines)).inserted == 500
    assert stored(db.dsn) == (500, 500)


def test_a_database_from_0017_gets_its_digests_and_loses_its_key_indexes(db, loader):
    lines = [logcat(i) for i in range(2000)] + [f"<6>[ {i}.000000] k: {i}" for i in range(300)]
    loader.load(RX, 1, chunk(lines))
    # back to 0017's shape: no digests recorded, the two BRIN indexes on line_key
    execute(db.dsn, "DELETE FROM line_ranges")
    execute(db.dsn, "DELETE FROM schema_migrations WHERE version >= '0018'")
    execute(db.dsn, "CREATE INDEX log_lines_clock_brin ON log_lines USING brin (line_key)")
    out = CliRunner().invoke(main, ["db", "migrate"], env={"LOGALYZER_DSN": db.dsn})
    assert out.exit_code == 0, out.output
    assert "0018_line_ranges.sql" in out.output
    assert "digests of the 2,300 stored lines with a clock in 2 key range(s)" in out.output
    assert query(db.dsn, "SELECT to_regclass('log_lines_clock_brin')") == [(None,)]
    assert sum(n for _, _, n, _ in ranges(db.dsn)) == 2300
    assert {lo < 0 for lo, hi, _, _ in ranges(db.dsn)} == {True, False}
    assert all((lo < 0) == (hi < 0) for lo, hi, _, _ in ranges(db.dsn))
    again = LineLoader(db.dsn).load(RX, 2, chunk(lines + [logcat(5000)]))
    assert (again.inserted, again.duplicate) == (1, 2300)


def test_a_time_window_right_after_the_load_reads_only_its_block_ranges(db, loader):
    # the loader summarises the BRIN ranges it filled: an unsummarised range matches any window
    lines = [logcat(i) for i in range(40_000)]  # 11 hours, a line a second
    for start in range(0, len(lines), 10_000):
        loader.load(RX, 1, chunk(lines[start : start + 10_000]))
    with psycopg.connect(db.dsn) as conn:
        pages = conn.execute(f"SELECT pg_relation_size('{RX.lower()}') / 8192").fetchone()[0]
        conn.execute("SET enable_seqscan = off")  # a fresh table has no statistics
        ((explain,),) = conn.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM"
            f" {RX} WHERE ts BETWEEN '2026-03-17 10:00:00Z' AND '2026-03-17 10:01:00Z'"
        ).fetchall()
    plan = explain[0]["Plan"]
    while "Lossy Heap Blocks" not in plan:
        (plan,) = plan["Plans"]
    assert pages > 512
    assert 0 < plan["Lossy Heap Blocks"] <= 256  # at most two ranges of 128 pages


@pytest.fixture()
def cli_env_db(db, monkeypatch):
    monkeypatch.setenv("LOGALYZER_DSN", db.dsn)
    return db


def brin_options(dsn: str) -> list:
    return query(
        dsn,
        "SELECT c.reloptions FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_am am ON am.oid = c.relam WHERE i.indrelid = %s::regclass"
        " AND am.amname = 'brin'",
        (RX.lower(),),
    )


def test_device_tables_leave_summarising_to_the_loader(db, loader):
    # sql/0020: autovacuum's request queue overflows in bulk loads and logs a line per range;
    # the loader summarises what it fills itself (the test above)
    assert brin_options(db.dsn) == [(["autosummarize=off"],)]
    # a device table made before 0020 is switched by the migration
    execute(db.dsn, f"ALTER INDEX {RX.lower()}_ts_idx SET (autosummarize = on)")
    execute(db.dsn, "DELETE FROM schema_migrations WHERE version >= '0020'")
    out = CliRunner().invoke(main, ["db", "migrate"], env={"LOGALYZER_DSN": db.dsn})
    assert out.exit_code == 0, out.output
    assert "0020_brin_autosummarize_off.sql" in out.output
    assert brin_options(db.dsn) == [(["autosummarize=off"],)]
