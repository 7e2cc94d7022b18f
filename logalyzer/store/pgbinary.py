"""Arrow tables → PostgreSQL's binary COPY format, with numpy, no Python loop over rows.

Why: on the ingest's hot path, COPY in CSV costs PostgreSQL about twice the CPU of binary COPY
(text input functions for timestamps, UUIDs and numbers are slow), and Arrow's CSV writer
costs the loader about as much again. The binary format is simple: a header, then per row a
16-bit field count and, per field, a 32-bit length (-1 = NULL) followed by the value in network
byte order; then a 16-bit -1 trailer.

Supported columns (Arrow type → PostgreSQL type): string → text, or jsonb when named in
``jsonb``; fixed_size_binary(16) → uuid; int64 → bigint; int32 → integer; float64 → double
precision; bool → boolean; timestamp[us, tz] → timestamptz.

The rows are written by the small C extension ``_pgcopy`` (built by ``pip install``; setup.py)
in one pass over the Arrow buffers; where it was not built (no C compiler), by the numpy path
below, about 1.5 µs a line slower. Both give the same bytes (tested).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

try:
    from logalyzer.store._pgcopy import encode as _compiled
except ImportError:  # installed without a C compiler: the numpy path below
    _compiled = None

COMPILED = _compiled is not None
HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds


def _fixed(col: pa.Array) -> tuple[np.ndarray, np.ndarray] | None:
    """(valid mask, big-endian bytes of shape (n, width)) for fixed-width columns."""
    t = col.type
    valid = (
        np.ones(len(col), bool)
        if col.null_count == 0
        else col.is_valid().to_numpy(zero_copy_only=False)
    )
    if pa.types.is_fixed_size_binary(t):
        data = np.frombuffer(
            col.buffers()[1], np.uint8, count=(col.offset + len(col)) * t.byte_width
        )
        return valid, data.reshape(-1, t.byte_width)[col.offset :]
    if pa.types.is_boolean(t):
        vals = col.fill_null(False).to_numpy(zero_copy_only=False).astype(np.uint8)
        return valid, vals.reshape(-1, 1)
    if pa.types.is_timestamp(t):
        us = col.cast(pa.int64()).fill_null(0).to_numpy() - _PG_EPOCH_US
        return valid, us.astype(">i8").view(np.uint8).reshape(-1, 8)
    be = {pa.int64(): ">i8", pa.int32(): ">i4", pa.float64(): ">f8"}.get(t)
    if be is None:
        return None
    vals = col.fill_null(0).to_numpy(zero_copy_only=False).astype(be)
    return valid, vals.view(np.uint8).reshape(len(col), vals.itemsize)


def encode(
    table: pa.Table, jsonb: frozenset[str] = frozenset(), compiled: bool = COMPILED
) -> bytes:
    """The whole table as one binary COPY stream (header, rows, trailer).

    The compiled module writes it row by row. Without it (or with ``compiled=False``) each
    column becomes a binary array holding, per row, its field (length + bytes); Arrow's
    ``binary_join_element_wise`` then lays the fields of each row side by side in C++, and the
    joined array's data buffer is the COPY body.
    """
    n, k = table.num_rows, table.num_columns
    if compiled:
        return _compiled(n, [_spec(name, col, name in jsonb) for name, col in _columns(table)])
    if n == 0:
        return HEADER + TRAILER
    fields = [_field(name, col, name in jsonb) for name, col in _columns(table)]
    count = pa.scalar(k.to_bytes(2, "big"), pa.binary())
    rows = pc.binary_join_element_wise(count, *fields, pa.scalar(b"", pa.binary()))
    offsets = np.frombuffer(
        rows.buffers()[1], np.int32, count=len(rows) + 1, offset=rows.offset * 4
    )
    body = rows.buffers()[2]
    return b"".join((HEADER, body[offsets[0] : offsets[-1]].to_pybytes(), TRAILER))


def _columns(table: pa.Table):
    for name, col in zip(table.column_names, table.columns):
        yield name, col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


#: Arrow type → the C encoder's column kind (the enum in _pgcopy.c).
_KINDS = {
    pa.binary(16): 2,
    pa.int64(): 3,
    pa.int32(): 4,
    pa.float64(): 5,
    pa.bool_(): 6,
}
_TEXT, _JSONB, _TIMESTAMP = 0, 1, 7


def _spec(name: str, col: pa.Array, jsonb: bool) -> tuple:
    """(kind, offset, validity, values, data): what ``_pgcopy.encode`` reads of a column."""
    t = col.type
    if pa.types.is_large_string(t):
        col, t = col.cast(pa.string()), pa.string()
    if pa.types.is_string(t):
        kind = _JSONB if jsonb else _TEXT
    elif pa.types.is_timestamp(t) and t.unit == "us":
        kind = _TIMESTAMP
    elif t in _KINDS:
        kind = _KINDS[t]
    else:
        raise TypeError(f"column {name}: no binary COPY encoding for {t}")
    bufs = col.buffers()
    validity = bufs[0] if col.null_count else None
    data = bufs[2] if kind in (_TEXT, _JSONB) else None
    return kind, col.offset, validity, bufs[1], data


def _field(name: str, col: pa.Array, jsonb: bool) -> pa.Array:
    """Per row: the 32-bit big-endian length (-1 = NULL) followed by the value's bytes."""
    n = len(col)
    fixed = _fixed(col)
    if fixed is not None:
        valid, data = fixed
        w = data.shape[1]
        mat = np.concatenate([_lengths(np.where(valid, w, -1)), data], axis=1)
        if valid.all():
            flat, sizes = mat.reshape(-1), np.full(n, 4 + w)
        else:
            keep = np.ones(mat.shape, bool)
            keep[~valid, 4:] = False
            flat, sizes = mat[keep], np.where(valid, 4 + w, 4)
        offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int32)
        return pa.Array.from_buffers(
            pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(flat)]
        )
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise TypeError(f"column {name}: no binary COPY encoding for {col.type}")
    valid = (
        np.ones(n, bool) if col.null_count == 0 else col.is_valid().to_numpy(zero_copy_only=False)
    )
    body = col.cast(pa.binary())
    lens = pc.fill_null(pc.binary_length(body), 0).to_numpy(zero_copy_only=False) + (
        1 if jsonb else 0
    )
    parts = [_as_binary(_lengths(np.where(valid, lens, -1)))]
    if jsonb:  # jsonb's binary form: version byte 1, then the JSON text
        parts.append(
            pc.if_else(
                pa.array(valid), pa.scalar(b"\x01", pa.binary()), pa.scalar(b"", pa.binary())
            )
        )
    parts.append(pc.fill_null(body, pa.scalar(b"", pa.binary())))
    return pc.binary_join_element_wise(*parts, pa.scalar(b"", pa.binary()))


def _lengths(lens: np.ndarray) -> np.ndarray:
    return lens.astype(">i4").view(np.uint8).reshape(-1, 4)


def _as_binary(mat: np.ndarray) -> pa.Array:
    n, w = mat.shape
    fixed = pa.Array.from_buffers(pa.binary(w), n, [None, pa.py_buffer(np.ascontiguousarray(mat))])
    return fixed.cast(pa.binary())
