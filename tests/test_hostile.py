"""Values PostgreSQL would refuse, through the real database: every line is stored, the ledger's
counts are true, and a row the database refuses costs only itself (issue 11)."""

from __future__ import annotations

import gzip
import json
import math

import psycopg
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from logalyzer.core import storable
from logalyzer.core.parser import FileParser
from logalyzer.errors import DatabaseGone
from logalyzer.jobs.ingest import FileLoader, ingest
from logalyzer.store.db import ensure_partition
from logalyzer.store.lines import LineLoader

from .helpers import query
from .test_ingest import ledger, write_gz

RX = "R1234567891"
HEAD = "03-17 16:13:{:02d}.000  1702  2395 I VAR: "

#: Every trigger of issue 11, in both dialects of VAR data.
TRIGGERS = [
    "PLAYER|play|BlackScreen|dur_ms=NaN",
    "PLAYER|play|BlackScreen|dur_ms=nan state=start",
    "PLAYER|play|VideoFreeze|dur_ms=inf pos=+INF",
    "PLAYER|play|VideoFreeze|dur_ms=Infinity",
    "PLAYER|play|VideoFreeze|pos=1e400",
    "PLAYER|play|DisplayDrop|dropped=" + "7" * 5000,
    'PLAYER|play|BlackScreen|{"dur_ms": NaN}',
    'PLAYER|play|BlackScreen|{"dur_ms": Infinity, "x": -Infinity}',
    'PLAYER|play|BlackScreen|{"dur_ms": 1e400, "pos": -1e400}',
    'PLAYER|play|BlackScreen|{"reason": "a\\u0000b"}',
    'PLAYER|play|BlackScreen|{"re\\u0000ason": "x"}',
    'PLAYER|play|BlackScreen|{"reason": "\\ud800"}',
    'PLAYER|play|BlackScreen|{"reason": "\\udfff\\ud800x"}',
    'PLAYER|play|BlackScreen|{"n": ' + "9" * 5000 + "}",
    "PLAYER|play|BlackScreen|" + '{"a":' * 5000 + "1" + "}" * 5000,
    "[PLAYER] play: BLACK_SCREEN " + '{"a":' * 100 + "1" + "}" * 100,
    '[PLAYER] play: BLACK_SCREEN {"dur_ms": NaN, "r": "\\u0000\\ud83d"}',
]


def lines_with_triggers() -> list[str]:
    out = []
    for i, t in enumerate(TRIGGERS):
        out.append(f"{HEAD.format(i)}PLAYER|play|FirstFrame|ttff_ms={i}")  # a good neighbour
        out.append(HEAD.format(i) + t)
    out.append("12345678901234567890.5  1702  2395 I Tag: a 20-digit epoch header")
    out.append("99999999999.5  1702  2395 I Tag: the year 5138")
    out.append("03-17 16:13:59.000  99999999999999  2395 I Tag: a pid that fits no integer")
    return out


def test_every_trigger_is_stored_and_the_file_is_done(db, settings, ray_local, tmp_path):
    lines = lines_with_triggers()
    write_gz(tmp_path / RX / "hostile.log.gz", lines)
    res = ingest(settings, db, [tmp_path])
    (f,) = res.files
    assert (f.status, f.error) == ("done", None)
    assert f.lines_loaded == len(lines) and f.lines_failed == f.lines_degraded == 0
    row = ledger(db.dsn)["hostile.log.gz"]
    assert row["lines_loaded"] == len(lines) and row["lines_duplicate"] == 0
    data = {
        m: d
        for m, d in query(db.dsn, f"SELECT message, data FROM {RX} WHERE event_type IS NOT NULL")
    }
    assert data["PLAYER|play|BlackScreen|dur_ms=NaN"] == {"dur_ms": "NaN"}
    assert data['PLAYER|play|BlackScreen|{"dur_ms": 1e400, "pos": -1e400}'] == {
        "dur_ms": "1e400",
        "pos": "-1e400",
    }
    assert data['PLAYER|play|BlackScreen|{"reason": "a\\u0000b"}'] == {"reason": "a\ufffdb"}
    assert data['PLAYER|play|BlackScreen|{"reason": "\\ud800"}'] == {"reason": "\ufffd"}
    deep = data["PLAYER|play|BlackScreen|" + '{"a":' * 5000 + "1" + "}" * 5000]
    assert set(deep) == {"_raw"}  # too deep to be JSON in the database: kept as text
    # impossible dates are unparsed lines, kept whole; a pid too big is null, the line kept
    bad = query(db.dsn, f"SELECT status, ts IS NULL OR ts_inferred FROM {RX} WHERE tag IS NULL")
    assert bad == [("unparsed", True)] * 2
    assert query(db.dsn, f"SELECT pid, status FROM {RX} WHERE message LIKE 'a pid%%'") == [
        (None, "ok")
    ]


def _chunk(lines: list[str]) -> pa.Table:
    return FileParser(RX, tz="UTC").parse(pa.array(lines, pa.string()))


def test_a_row_the_database_refuses_costs_only_itself(db):
    """Rows made unstorable behind the parser's back: the chunk is split until they are alone;
    a refused row is stored degraded or, if even that fails, counted as failed."""
    lines = [f"{HEAD.format(i % 60)}PLAYER|play|FirstFrame|ttff_ms={i}" for i in range(1000)]
    table = _chunk(lines)
    data = table["data"].to_pylist()
    data[10] = '{"broken json'  # refused by jsonb: stored degraded
    msgs = table["message"].to_pylist()
    msgs[500] = "NUL \x00 in the text"  # refused by text: stored degraded, NUL replaced
    ts = table["ts"].cast(pa.int64()).to_pylist()
    ts[900] = -(2**62)  # out of timestamptz's range: refused even degraded
    col = table.schema.get_field_index
    table = table.set_column(col("data"), "data", pa.array(data, pa.string()))
    table = table.set_column(col("message"), "message", pa.array(msgs, pa.string()))
    table = table.set_column(
        col("ts"), "ts", pa.array(ts, pa.int64()).cast(table.schema.field("ts").type)
    )
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        ensure_partition(conn, RX)
    loader = LineLoader(db.dsn)
    got = loader.load(RX, 1, table)
    assert (got.inserted, got.degraded, got.failed) == (999, 2, 1)
    assert got.reason
    rows = dict(query(db.dsn, f"SELECT line_no, status FROM {RX} WHERE status = 'partial'"))
    assert rows == {11: "partial", 501: "partial"}
    assert query(db.dsn, f"SELECT count(*) FROM {RX}") == [(999,)]
    assert query(db.dsn, f"SELECT message FROM {RX} WHERE line_no = 501") == [
        ("NUL \ufffd in the text",)
    ]
    # the same chunk again: nothing new, and the refused row is refused again, not duplicated
    again = loader.load(RX, 1, table)
    assert (again.inserted, again.failed) == (0, 1)
    loader.close()


def test_loader_survives_a_killed_backend_and_reports_a_dead_server(db, pg_dsn):
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        ensure_partition(conn, RX)
    loader = LineLoader(db.dsn, backoff=(0.05, 0.1))
    first = [f"{HEAD.format(i % 60)}PLAYER|play|FirstFrame|ttff_ms={i}" for i in range(100)]
    assert loader.load(RX, 1, _chunk(first)).inserted == 100
    pid = loader.conn.info.backend_pid
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    second = [f"{HEAD.format(i % 60)}PLAYER|play|FirstFrame|ttff_ms=x{i}" for i in range(100)]
    assert loader.load(RX, 1, _chunk(second)).inserted == 100  # reconnected, not lost
    assert loader.conn.info.backend_pid != pid
    assert query(db.dsn, f"SELECT count(*) FROM {RX}") == [(200,)]
    loader.close()
    # a server that cancels every statement: retried with backoff, then DatabaseGone (the
    # table held locked, so that the loader's set-up always waits past its 1 ms, however fast
    # the machine)
    params = psycopg.conninfo.conninfo_to_dict(db.dsn)
    params["options"] = "-c statement_timeout=1 -c lock_timeout=1"
    with psycopg.connect(db.dsn) as holder:
        holder.execute("LOCK TABLE log_lines IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(DatabaseGone, match="went away"):
            LineLoader(psycopg.conninfo.make_conninfo(**params), backoff=(0.01, 0.01))


def test_partial_file_cut_short_is_finished_by_the_next_run(db, settings, ray_local, tmp_path):
    """A load cut short (status partial, damage not in the input) is read again; one whose
    damage is in the input stays partial and is skipped while unchanged."""
    good = [f"{HEAD.format(i % 60)}PLAYER|play|FirstFrame|ttff_ms={i}" for i in range(300)]
    path = write_gz(tmp_path / RX / "cut.log.gz", good)
    res = ingest(settings, db, [tmp_path])
    assert res.files[0].status == "done"
    with psycopg.connect(db.dsn, autocommit=True) as conn:  # as a cancelled COPY leaves it
        conn.execute(f"DELETE FROM {RX} WHERE line_no > 100")
        conn.execute("UPDATE ingested_files SET status = 'partial', input_damaged = false")
    res = ingest(settings, db, [tmp_path])
    (f,) = res.files
    assert f.status == "done" and f.lines_loaded == 200 and f.lines_duplicate == 100
    assert query(db.dsn, f"SELECT count(*) FROM {RX}") == [(300,)]
    # damaged input: truncated gzip → partial, input_damaged, skipped on the next run
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    assert ingest(settings, db, [tmp_path]).files[0].status == "partial"
    assert ledger(db.dsn)["cut.log.gz"]["input_damaged"] is True
    assert ingest(settings, db, [tmp_path]).files[0].status == "unchanged"


# --------------------------------------------------------------------------- property-based

_json_scalars = (
    st.none()
    | st.booleans()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers()
    | st.text(max_size=20)
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
_kv_values = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Cc")), min_size=0, max_size=30
).filter(lambda v: '"' not in v)
_KEYS = ("dur_ms", "pos", "rate", "state", "connected", "seq", "x")


def _var_line(i: int, data: str) -> str:
    return f"{HEAD.format(i % 60)}PLAYER|play|BlackScreen|{data}"


@hsettings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    json_data=st.lists(_json_values.map(lambda v: {"v": v}), min_size=1, max_size=8),
    kv_data=st.lists(st.tuples(st.sampled_from(_KEYS), _kv_values), min_size=1, max_size=8),
)
def test_any_var_value_is_stored_through_postgresql(db, json_data, kv_data):
    """Arbitrary JSON (NaN, infinities, huge ints, NUL and lone surrogates as escapes) and
    arbitrary ``key=value`` values: every line stored, none degraded or failed."""
    lines = [_var_line(i, json.dumps(d)) for i, d in enumerate(json_data)]
    lines += [_var_line(i, f"{k}={v}") for i, (k, v) in enumerate(kv_data)]
    lines = list(dict.fromkeys(lines))  # distinct lines: each one must be stored once
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        ensure_partition(conn, RX)
        conn.execute(f"TRUNCATE {RX}")
    loader = LineLoader(db.dsn)
    got = loader.load(RX, 1, _chunk(lines))
    loader.close()
    assert (got.inserted, got.degraded, got.failed) == (len(lines), 0, 0)
    stored = query(db.dsn, f"SELECT message, data FROM {RX}")
    assert len(stored) == len(lines)
    for _, data in stored:  # every float the database holds is finite
        assert all(math.isfinite(x) for x in _floats(data))


def _floats(value):
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _floats(v)
    elif isinstance(value, list):
        for v in value:
            yield from _floats(v)


@given(st.text(max_size=40))
def test_storable_dumps_never_raises_and_is_strict_json(text):
    value = {"s": text, text: [float("nan"), float("inf"), 10**5000, text]}
    out = storable.dumps(value)
    out.encode("utf-8")  # no lone surrogate left
    back = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert not any("\x00" in s for s in _strings(back))


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


# --------------------------------------------------------------------------- input


def test_symlinked_folders_are_followed_once_and_loops_end(tmp_path):
    from logalyzer.core.files import discover

    real = tmp_path / "real" / RX
    write_gz(real / "a.log.gz", ["03-17 16:13:00.000  1  1 I A: x"])
    (real / "loop").symlink_to(tmp_path / "real")  # a link back up the tree
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "top").mkdir()
    (tmp_path / "top" / "dev").symlink_to(real)
    assert [p.name for p in discover([tmp_path / "link"])] == ["a.log.gz"]
    assert [p.name for p in discover([tmp_path / "top"])] == ["a.log.gz"]
    assert len(discover([tmp_path])) == 1


def test_gzip_inside_gzip_is_refused_with_a_reason_not_stored_as_junk(
    db, settings, ray_local, tmp_path
):
    inner = gzip.compress(b"03-17 16:13:00.000  1  1 I A: x\n" * 50)
    (tmp_path / RX).mkdir()
    (tmp_path / RX / "double.log.gz").write_bytes(gzip.compress(inner))
    (f,) = ingest(settings, db, [tmp_path]).files
    assert f.status == "failed" and "gzip file inside a gzip file" in f.error
    assert f.lines_loaded == 0
    assert query(db.dsn, "SELECT count(*) FROM log_lines") == [(0,)]


def test_a_loader_starting_after_the_server_went_away_leaves_its_files_for_later(tmp_path):
    """An ingest actor that starts while the database is down (its neighbours were loading)
    must not die: Ray would report the pipeline broken (exit 1) instead of the database gone
    (exit 4). Each file it is given is left, unfinished, for the next run."""
    path = write_gz(tmp_path / RX / "late.log.gz", [f"{HEAD.format(1)}PLAYER|play|x|y=1"])
    nobody = "postgresql://postgres@127.0.0.1:1/none"  # nothing listens on port 1
    loader = FileLoader(nobody, "UTC", backoff=(0.01, 0.01))
    task = {"path": str(path), "rxid": RX, "size": 1, "mtime": 0.0, "file_id": 1}
    res = loader(task)
    assert res["database_gone"] and res["status"] == "failed"
    assert "went away" in res["error"] and "127.0.0.1" in res["error"]
