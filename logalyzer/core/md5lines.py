"""The idempotency key of every line of a chunk: MD5(RxID, newline, raw line) (LOG_FORMAT.md §2).

Computed by the small C extension ``_md5lines`` (built by ``pip install``; setup.py) over the
Arrow array's buffers, with the GIL released, eight lines at a time where the CPU has AVX2
(:data:`LANES`); where the extension was not built (no C compiler on the machine), by hashlib,
about 1.5 µs a line slower. All give the same digests (tested).
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

try:
    from logalyzer.core._md5lines import has_lanes as _has_lanes
    from logalyzer.core._md5lines import md5_lines as _compiled
except ImportError:  # installed without a C compiler: the pure-Python path below
    _compiled = _has_lanes = None

COMPILED = _compiled is not None
#: Whether the compiled code hashes eight lines at a time (AVX2) on this CPU.
LANES = bool(_has_lanes and _has_lanes())


def string_buffers(lines: pa.Array) -> tuple[int, pa.Buffer, pa.Buffer | bytes]:
    """(first element, int32 offsets, data) of a text array, as the C extensions read it:
    large strings cast down, null slots made empty (their bytes are unspecified)."""
    if lines.type != pa.string():
        lines = lines.cast(pa.string())
    if lines.null_count:
        lines = lines.fill_null("")
    offsets, data = lines.buffers()[1], lines.buffers()[2]
    return lines.offset, offsets, data if data is not None else b""


def md5_lines(
    prefix: bytes, lines: pa.StringArray, compiled: bool = COMPILED, lanes: bool = LANES
) -> pa.Array:
    """``fixed_size_binary(16)`` array: MD5(prefix + line) of each line (a null as empty).
    ``lanes=False`` makes the compiled code hash one line at a time (the tests compare)."""
    n = len(lines)
    if compiled and n:
        first, offsets, data = string_buffers(lines)
        digests = _compiled(prefix, offsets, data, first, n, int(lanes))
    else:
        md5 = hashlib.md5
        digests = b"".join(
            [md5(prefix + (b or b"")).digest() for b in lines.cast(pa.binary()).to_pylist()]
        )
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), n, [None, pa.py_buffer(digests)])
