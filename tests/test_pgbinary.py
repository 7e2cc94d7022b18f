"""The binary COPY encoder, checked by PostgreSQL itself: what goes in comes back out."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pyarrow as pa
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from logalyzer.store.pgbinary import encode

COLUMNS = (
    "u uuid, i8 bigint, i4 integer, f double precision, b boolean, ts timestamptz, s text, j jsonb"
)


def roundtrip(dsn: str, table: pa.Table) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TEMP TABLE rt ({COLUMNS})")
        with conn.cursor() as cur, cur.copy("COPY rt FROM STDIN (FORMAT binary)") as cp:
            cp.write(encode(table, jsonb=frozenset({"j"})))
        return conn.execute("SELECT * FROM rt").fetchall()


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
