"""The binary COPY encoder, checked by PostgreSQL itself: what goes in comes back out; and its
two paths (the C module logalyzer/store/_pgcopy.c, the numpy fallback) give the same bytes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from logalyzer.store import pgbinary

COLUMNS = (
    "u uuid, i8 bigint, i4 integer, f double precision, b boolean, ts timestamptz, s text, j jsonb"
)


def encode(table: pa.Table, jsonb=frozenset({"j"})) -> bytes:
    """Both paths' stream, after checking they are the same bytes."""
    stream = pgbinary.encode(table, jsonb=jsonb, compiled=True)
    assert stream == pgbinary.encode(table, jsonb=jsonb, compiled=False)
    return stream


def roundtrip(dsn: str, table: pa.Table) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TEMP TABLE rt ({COLUMNS})")
        with conn.cursor() as cur, cur.copy("COPY rt FROM STDIN (FORMAT binary)") as cp:
            cp.write(encode(table))
        return conn.execute("SELECT * FROM rt").fetchall()


def test_the_extension_is_built():
    # `make setup` compiles it; without a compiler ingest falls back to numpy, slower.
    assert pgbinary.COMPILED, "logalyzer/store/_pgcopy.c was not built: is a C compiler missing?"


def test_every_type_with_nulls_and_slices(pg_dsn):
    t = pa.table(
        {
            "u": pa.array([b"\x00" * 15 + b"\x01", None, b"\xff" * 16], pa.binary(16)),
            "i8": pa.array([1, None, -5], pa.int64()),
            "i4": pa.array([None, 7, -1], pa.int32()),
            "f": pa.array([1.5, None, -2.25]),
            "b": pa.array([True, None, False]),
            "ts": pa.array([0, 1710692018811000, None], pa.int64()).cast(
                pa.timestamp("us", tz="UTC")
            ),
            "s": pa.array(["héllo ✓", None, ""]),
            "j": pa.array(['{"a": 1}', None, "{}"]),
        }
    )
    rows = roundtrip(pg_dsn, t)
    utc = UTC
    assert rows[0] == (
        uuid.UUID(int=1),
        1,
        None,
        1.5,
        True,
        datetime(1970, 1, 1, tzinfo=utc),
        "héllo ✓",
        {"a": 1},
    )
    assert rows[1] == (
        None,
        None,
        7,
        None,
        None,
        datetime(2024, 3, 17, 16, 13, 38, 811000, tzinfo=utc),
        None,
        None,
    )
    assert rows[2] == (uuid.UUID(int=2**128 - 1), -5, -1, -2.25, False, None, "", {})
    assert roundtrip(pg_dsn, t.slice(1, 2)) == rows[1:]
    assert roundtrip(pg_dsn, t.slice(0, 0)) == []


@hsettings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.text(
                alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
            ),
        ),
        max_size=30,
    )
)
def test_any_text_survives(pg_dsn, texts):
    n = len(texts)
    t = pa.table(
        {
            "u": pa.nulls(n, pa.binary(16)),
            "i8": pa.nulls(n, pa.int64()),
            "i4": pa.nulls(n, pa.int32()),
            "f": pa.nulls(n, pa.float64()),
            "b": pa.nulls(n, pa.bool_()),
            "ts": pa.nulls(n, pa.timestamp("us", tz="UTC")),
            "s": pa.array(texts, pa.string()),
            "j": pa.nulls(n, pa.string()),
        }
    )
    assert [r[6] for r in roundtrip(pg_dsn, t)] == texts


@hsettings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.none() | st.binary(min_size=16, max_size=16),
            st.none() | st.integers(-(2**63), 2**63 - 1),
            st.none() | st.integers(-(2**31), 2**31 - 1),
            st.none() | st.floats(allow_nan=True),
            st.none() | st.booleans(),
            st.none() | st.integers(0, 4_102_444_800 * 10**6),
            st.none() | st.text(max_size=20),
        ),
        max_size=25,
    ),
    start=st.integers(0, 25),
)
def test_compiled_stream_equals_numpy_stream(rows, start):
    # Every type, nulls anywhere, and a slice that starts mid-bitmap (a chunk is a slice).
    cols = list(zip(*rows)) if rows else [()] * 7
    types = [
        pa.binary(16),
        pa.int64(),
        pa.int32(),
        pa.float64(),
        pa.bool_(),
        pa.timestamp("us", tz="UTC"),
        pa.string(),
    ]
    names = "u i8 i4 f b ts s".split()
    t = pa.table({n: pa.array(list(c), ty) for n, c, ty in zip(names, cols, types)})
    t = t.slice(min(start, len(rows)))
    t = t.append_column("j", t["s"])
    encode(t)


def test_unsupported_types_are_named():
    t = pa.table({"d": pa.array([1], pa.int16())})
    for compiled in (True, False):
        with pytest.raises(TypeError, match="column d"):
            pgbinary.encode(t, compiled=compiled)
