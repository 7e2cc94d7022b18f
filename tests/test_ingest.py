"""The ingest end to end, on a real PostgreSQL and a real local Ray: rows in tables prove that
nothing was lost, that re-runs change nothing, and that bad input is handled and reported."""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
from pathlib import Path

import psycopg
import pytest

from logalyzer.core.synth import FleetSpec, generate_fleet
from logalyzer.errors import InvalidIdentifier
from logalyzer.jobs.ingest import ingest
from logalyzer.store.db import ensure_partition, partition_name

from .helpers import DATA, query

RX = "R1234567890"
GOOD = [f"03-17 16:13:{i:02d}.000  1702  2395 I Tag: good line {i}" for i in range(40)]


def write_gz(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


def ledger(dsn: str) -> dict[str, dict]:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute("SELECT * FROM ingested_files")
        names = [d.name for d in cur.description]
        return {Path(r[names.index("path")]).name: dict(zip(names, r)) for r in cur}


def messages(dsn: str, rxid: str = RX) -> list[str]:
    return [
        r[0]
        for r in query(dsn, f"SELECT message FROM {partition_name(rxid)} ORDER BY file_id, line_no")
    ]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    out = tmp_path_factory.mktemp("fleet")
    res = generate_fleet(out, FleetSpec(devices=4, hours=2, seed=3, noise_lines_per_minute=120))
    return out, res


def test_fleet_loads_every_distinct_line_once(db, settings, ray_local, fleet):
    out, res = fleet
    summary = ingest(settings, db, [out])
    assert {f.status for f in summary.files} == {"done"}
    truth = json.loads(res.truth_path.read_text())
    distinct = set()
    for f in res.files:
        rx = f.parent.name
        with gzip.open(f, "rt") as fh:
            for line in fh.read().splitlines():
                if not line.startswith(("--------- ", "------ ", "== dumpstate")):
                    distinct.add((rx, line))
    assert query(db.dsn, "SELECT count(*) FROM log_lines")[0][0] == len(distinct)
    assert summary.total("lines_loaded") == len(distinct)
    # the overlap of rotated files was read twice and stored once
    assert summary.total("lines_duplicate") > 0
    # one partition per device, queryable by its RxID as a table name
    for dev in truth["devices"]:
        n = query(db.dsn, f"SELECT count(*) FROM {dev['rxid']}")[0][0]
        assert n > 0
    # MD5 is md5(rxid || newline || raw line), checkable in SQL for parsed lines of the golden shape
    bad = query(
        db.dsn,
        "SELECT count(*) FROM log_lines WHERE status = 'unparsed'"
        " AND line_md5 <> md5(rxid || E'\\n' || message)::uuid",
    )[0][0]
    assert bad == 0
    var = query(db.dsn, "SELECT count(*) FROM log_lines WHERE event_type IS NOT NULL")[0][0]
    assert var == sum(d["var_events"] for d in truth["devices"])


def test_rerun_is_idempotent_and_skips_unchanged_files(db, settings, ray_local, fleet):
    out, _ = fleet
    first = ingest(settings, db, [out])
    rows = query(db.dsn, "SELECT count(*) FROM log_lines")[0][0]
    again = ingest(settings, db, [out])
    assert {f.status for f in again.files} == {"unchanged"}
    counts = lambda s: sorted((f.path, f.lines_read, f.lines_loaded) for f in s.files)  # noqa: E731
    assert counts(again) == counts(first)
    forced = ingest(settings, db, [out], force=True)
    assert forced.total("lines_loaded") == 0
    assert forced.total("lines_duplicate") == first.total("lines_read") - sum(
        f.markers for f in first.files
    )
    assert query(db.dsn, "SELECT count(*) FROM log_lines")[0][0] == rows


def test_grown_file_is_read_again_and_only_new_lines_added(db, settings, ray_local, tmp_path):
    f = write_gz(tmp_path / RX / "logcat.log.gz", GOOD[:20])
    ingest(settings, db, [f])
    write_gz(f, GOOD)  # the box appended 20 lines
    res = ingest(settings, db, [f])
    assert (res.files[0].status, res.files[0].lines_loaded, res.files[0].lines_duplicate) == (
        "done",
        20,
        20,
    )
    assert messages(db.dsn) == [f"good line {i}" for i in range(40)]


def test_overlapping_rotated_files_store_each_line_once(db, settings, ray_local, tmp_path):
    a = write_gz(tmp_path / RX / "logcat_20240317T161300.log.gz", GOOD[:30])
    b = write_gz(tmp_path / RX / "logcat_20240317T161320.log.gz", GOOD[20:])
    res = ingest(settings, db, [a, b])
    assert res.total("lines_loaded") == 40 and res.total("lines_duplicate") == 10
    assert sorted(messages(db.dsn)) == sorted(f"good line {i}" for i in range(40))


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_are_handled_counted_and_lose_no_good_line(db, settings, ray_local, tmp_path):
    d = tmp_path / RX
    whole = gzip.compress(("\n".join(GOOD) + "\n").encode())
    (d / "x").mkdir(parents=True)
    # truncated gzip: every line before the damage is loaded, the file is partial
    (d / "truncated.log.gz").write_bytes(whole[: len(whole) * 2 // 3])
    # corrupt gzip: bytes flipped in the middle of the deflate stream
    many = [
        f"03-17 16:14:{i % 60:02d}.{i // 60:03d}  1702  2395 I Tag: corrupt file line {i}"
        for i in range(3000)
    ]
    corrupt = bytearray(gzip.compress(("\n".join(many) + "\n").encode(), compresslevel=1))
    for i in range(len(corrupt) // 2, len(corrupt) // 2 + 40):
        corrupt[i] ^= 0xFF
    (d / "corrupt.log.gz").write_bytes(bytes(corrupt))
    # plain text named .gz, with garbage bytes, NULs, CRLF and an over-long line
    text = (
        "\r\n".join(f"03-17 16:15:0{i}.000  1  1 I P: plain line {i}" for i in range(3))
        + "\r\n\xff\xfe garbage \x00 with NUL\n"
        + "03-17 16:13:50.000  1  1 I Long: "
        + "y" * 100_000
        + "\nlast\n"
    )
    (d / "plain.log.gz").write_bytes(
        text.encode("latin-1", "replace").replace(b"\xff\xfe", b"\xff\xfe\x80")
    )
    # binary junk named .gz: refused with a reason
    (d / "binary.log.gz").write_bytes(bytes(range(256)) * 64)
    (d / "empty.log.gz").write_bytes(b"")
    (d / "dangling.log.gz").symlink_to(d / "does-not-exist")
    (tmp_path / "norxid").mkdir()
    write_gz(tmp_path / "norxid" / "logcat.log.gz", GOOD[:2])

    res = ingest(settings, db, [d, tmp_path / "norxid" / "logcat.log.gz"])
    by = {Path(f.path).name: f for f in res.files}
    rows = ledger(db.dsn)

    assert by["truncated.log.gz"].status == "partial"
    assert "truncated" in by["truncated.log.gz"].error
    got = by["truncated.log.gz"].lines_read
    assert 0 < got < len(GOOD)
    assert by["corrupt.log.gz"].status == "partial" and "corrupt" in by["corrupt.log.gz"].error
    assert by["corrupt.log.gz"].lines_read > 0

    assert by["plain.log.gz"].status == "done" and "not gzip" in by["plain.log.gz"].error
    assert by["plain.log.gz"].lines_truncated == 1
    assert by["binary.log.gz"].status == "failed" and "binary" in by["binary.log.gz"].error
    assert by["empty.log.gz"].status == "done" and by["empty.log.gz"].lines_read == 0
    assert by["dangling.log.gz"].status == "failed" and "unreadable" in by["dangling.log.gz"].error
    assert by["logcat.log.gz"].status == "refused" and "RxID" in by["logcat.log.gz"].error
    assert {n: r["status"] for n, r in rows.items()} == {n: f.status for n, f in by.items()}

    def stored_lines(name):
        return [
            m
            for (m,) in query(
                db.dsn,
                f"SELECT message FROM {RX} WHERE file_id = %s ORDER BY line_no",
                (rows[name]["file_id"],),
            )
        ]

    # every line of the damaged files that was decoded is stored, in order, none invented
    # (the last line read may be a fragment cut by the damage: kept too, as an unparsed line)
    kept = stored_lines("truncated.log.gz")
    assert len(kept) == got and kept[:-1] == [f"good line {i}" for i in range(got - 1)]
    assert kept[-1] == f"good line {got - 1}" or GOOD[got - 1].startswith(kept[-1])
    # the corrupt member decodes garbage past the damage (the CRC fails only at its end):
    # the good lines before it are all there, and every line read is loaded or a duplicate
    kept = stored_lines("corrupt.log.gz")
    good_prefix = next(i for i, m in enumerate(kept + [None]) if m != f"corrupt file line {i}")
    assert good_prefix > 1000
    c = by["corrupt.log.gz"]
    assert (
        c.lines_loaded + c.lines_duplicate == c.lines_read == rows["corrupt.log.gz"]["lines_read"]
    )
    stored = query(
        db.dsn,
        f"SELECT message, status, truncated FROM {RX} WHERE file_id = %s ORDER BY line_no",
        (rows["plain.log.gz"]["file_id"],),
    )
    assert [m for m, _, _ in stored[:3]] == [
        "plain line 0",
        "plain line 1",
        "plain line 2",
    ]  # CRLF accepted
    assert "\x00" not in stored[3][0] and "garbage" in stored[3][0] and stored[3][1] == "unparsed"
    long_msg, _, truncated = stored[4]
    assert truncated and len(long_msg.encode()) < 65536 and long_msg.startswith("yyy")
    assert stored[5][0] == "last"


def test_rxid_option_names_files_without_one(db, settings, ray_local, tmp_path):
    f = write_gz(tmp_path / "box.log.gz", GOOD[:5])
    res = ingest(settings, db, [f], rxid="R0000000001")
    assert res.files[0].status == "done"
    assert query(db.dsn, "SELECT count(*) FROM r0000000001")[0][0] == 5
    with pytest.raises(InvalidIdentifier):
        ingest(settings, db, [f], rxid="R1; DROP TABLE log_lines")


def test_golden_android_file_loads_with_its_fields(db, settings, ray_local, tmp_path):
    src = DATA / "loghub-android" / "Android_2k.log"
    f = tmp_path / RX / "Android_2k_20170317.log"
    f.parent.mkdir()
    f.write_bytes(src.read_bytes())
    res = ingest(settings, db, [f])
    raw = src.read_text().splitlines()
    assert res.files[0].lines_read == 2000
    assert res.files[0].lines_loaded == len(set(raw))  # identical lines are one line
    row = query(db.dsn, f"SELECT ts, pid, tid, level, tag FROM {RX} WHERE line_no = 1")[0]
    assert (str(row[0]), row[1], row[2], row[3], row[4]) == (
        "2017-03-17 16:13:38.811000+00:00",
        1702,
        2395,
        "D",
        "WindowManager",
    )
    md5 = hashlib.md5(f"{RX}\n{raw[0]}".encode()).hexdigest()
    assert query(db.dsn, f"SELECT count(*) FROM {RX} WHERE line_md5 = %s::uuid", (md5,))[0][0] == 1


# --------------------------------------------------------------------------- partitions


def test_new_device_partition_created_once_by_concurrent_workers(db, ray_local):
    """Eight Ray tasks meet the same new device at once; one creates it, none fails."""

    @ray_local.remote
    def create(dsn: str, rxid: str) -> str:
        with psycopg.connect(dsn, autocommit=True) as conn:
            return ensure_partition(conn, rxid)

    names = ray_local.get([create.remote(db.dsn, "R5555555555") for _ in range(8)])
    assert set(names) == {"r5555555555"}
    parts = query(
        db.dsn, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'log_lines'::regclass"
    )
    assert parts[0][0] == 1

    errors = []

    def threaded(rx):
        try:
            with psycopg.connect(db.dsn, autocommit=True) as conn:
                ensure_partition(conn, rx)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=threaded, args=("R6666666666",)) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []


def test_partition_names_are_validated(db):
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        for bad in ("R123", "x; drop table log_lines", "r1234567890", ""):
            with pytest.raises(InvalidIdentifier):
                ensure_partition(conn, bad)


def test_concurrent_loads_of_overlapping_files_of_one_device(db, settings, ray_local, tmp_path):
    """Several files of one device with heavy overlap, loaded by two actors at once."""
    lines = [
        f"03-17 16:{i // 60:02d}:{i % 60:02d}.000  1702  2395 I Tag: line {i}" for i in range(3000)
    ]
    files = [
        write_gz(tmp_path / RX / f"part{k}.log.gz", lines[k * 400 : k * 400 + 1200])
        for k in range(6)
    ]
    res = ingest(settings, db, files)
    assert {f.status for f in res.files} == {"done"}
    assert query(db.dsn, "SELECT count(*), count(DISTINCT line_md5) FROM log_lines")[0] == (
        3000,
        3000,
    )
