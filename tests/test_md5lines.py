"""The idempotency key in compiled code (logalyzer/core/_md5lines.c) against hashlib.

Every stored line's key is this digest, so the C path and the hashlib path must agree byte for
byte, for any text, any prefix and any slice of an Arrow array (a chunk is a slice)."""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logalyzer.core import md5lines
from logalyzer.core.parser import FileParser


def test_the_extension_is_built():
    # `make setup` (pip install -e .) compiles it; without a compiler the ingest still works,
    # slower, but on the machines this project is built and tested on it must be there.
    assert md5lines.COMPILED, "logalyzer/core/_md5lines.c was not built: is a C compiler missing?"


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.text(max_size=300), max_size=40),
    prefix=st.binary(max_size=130),
    start=st.integers(0, 40),
)
def test_compiled_digests_equal_hashlib(lines, prefix, start):
    arr = pa.array(lines, pa.string()).slice(min(start, len(lines)))
    want = [hashlib.md5(prefix + s.encode()).digest() for s in arr.to_pylist()]
    assert md5lines.md5_lines(prefix, arr, compiled=True, lanes=False).to_pylist() == want
    if md5lines.LANES:
        assert md5lines.md5_lines(prefix, arr, compiled=True, lanes=True).to_pylist() == want
    assert md5lines.md5_lines(prefix, arr, compiled=False).to_pylist() == want


def test_this_cpu_hashes_eight_lines_at_a_time():
    # every x86-64 machine this project is built and tested on has AVX2; elsewhere the
    # scalar code runs, so this check is only about the machines that have it
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo (not Linux) to read the CPU's flags from")
    has_avx2 = "avx2" in cpuinfo.read_text()
    assert md5lines.LANES == (has_avx2 and platform.machine() in ("x86_64", "AMD64"))


@settings(max_examples=100, deadline=None)
@given(sizes=st.lists(st.integers(0, 700), min_size=1, max_size=60), prefix=st.binary(max_size=70))
def test_lanes_of_every_length_mix(sizes, prefix):
    # eight lanes take lines of different lengths (blocks), each lane refilled as its line ends:
    # any mix of lengths, including more or fewer lines than lanes, gives hashlib's digests
    lines = ["".join(chr(97 + (i + j) % 26) for j in range(n)) for i, n in enumerate(sizes)]
    want = [hashlib.md5(prefix + s.encode()).digest() for s in lines]
    got = md5lines.md5_lines(prefix, pa.array(lines), compiled=True, lanes=md5lines.LANES)
    assert got.to_pylist() == want


@pytest.mark.parametrize("lanes", [False, True])
@pytest.mark.parametrize("size", [0, 1, 43, 44, 51, 52, 55, 56, 63, 64, 65, 119, 120, 128, 10_000])
def test_block_boundaries(size, lanes):
    # MD5 pads to 64-byte blocks: lengths either side of 56 and 64 (with the 12-byte prefix:
    # 44 and 52) take different branches
    if lanes and not md5lines.LANES:
        pytest.skip("this CPU has no AVX2: only the scalar code runs here")
    arr = pa.array(["x" * size, None])
    out = md5lines.md5_lines(b"R0000000001\n", arr, compiled=True, lanes=lanes).to_pylist()
    assert out[0] == hashlib.md5(b"R0000000001\n" + b"x" * size).digest()
    assert out[1] == hashlib.md5(b"R0000000001\n").digest()  # a null hashes as empty


def test_parser_key_is_md5_of_rxid_newline_line():
    line = "03-17 16:13:38.811  1702  2395 D WindowManager: opening app"
    table = FileParser("R0000000001").parse(pa.array([line]))
    key = table["line_md5"][0].as_py()
    assert key == hashlib.md5(("R0000000001\n" + line).encode()).digest()


def test_bad_buffers_are_refused_not_read():
    from logalyzer.core._md5lines import md5_lines

    offsets = pa.array([0, 5, 3], pa.int32()).buffers()[1]  # out of order
    with pytest.raises(ValueError):
        md5_lines(b"", offsets, b"abcde", 0, 2)
    with pytest.raises(ValueError):  # more lines than offsets
        md5_lines(b"", offsets, b"abcde", 0, 5)
