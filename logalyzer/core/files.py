"""Input files: RxIDs and dates from paths, fingerprints, and a streaming line reader.

The reader never holds a whole file in memory: it decompresses gzip in small pieces and hands
out complete lines in chunks of a few MiB. Damage is never fatal (LOG_FORMAT.md section 1):

- a truncated gzip stream yields every byte that was decompressed before the end, and the read
  is marked partial;
- a corrupt member is replayed with the standard library's zlib, byte by byte around the
  damage, so every byte that decodes before it is kept;
- the magic bytes decide the compression, not the file name: a plain-text file named ``.gz``
  is read as text (and said so); a file that is neither gzip nor text is refused;
- invalid UTF-8 is replaced, NUL bytes are removed, CRLF is accepted, and a line longer than
  :data:`MAX_LINE_BYTES` is cut there and counted (its tail is skipped, never buffered).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

try:  # ISA-L inflates about 3x faster than zlib; the reader works without it.
    from isal import isal_zlib as _fast_zlib
except ImportError:  # pragma: no cover - isal is a declared dependency
    _fast_zlib = zlib

MAX_LINE_BYTES = 64 * 1024
CHUNK_BYTES = 4 * 1024 * 1024  # decompressed bytes per chunk of lines handed out
PIECE_BYTES = 64 * 1024  # compressed bytes fed to the inflater at a time
GZIP_MAGIC = b"\x1f\x8b"
LOG_SUFFIXES = (".gz", ".log", ".txt")

_RXID_RE = re.compile(r"(?<![0-9])R([0-9]{10})(?![0-9])", re.IGNORECASE)  # ASCII, as RXID_PATTERN
#: A device id: R + 10 ASCII digits ([0-9], not \d: that also matches other scripts' digits).
#: The one definition, for paths, the CLI, SQL identifiers and the HTTP models.
RXID_PATTERN = r"^R[0-9]{10}$"
_RXID_EXACT = re.compile(RXID_PATTERN)
_PATH_DATE_RE = re.compile(
    r"(?<!\d)(20\d\d)-?(0[1-9]|1[0-2])-?(0[1-9]|[12]\d|3[01])"
    r"(?:[T_-]?([01]\d|2[0-3])-?([0-5]\d)-?([0-5]\d))?(?!\d)"
)


def rxid_from_path(path: str | Path) -> str | None:
    """The device id of a file: the last path component holding ``R`` + 10 digits, upper-cased.

    The file name is searched first, then its parent folders from the nearest outwards, so
    ``fleet/R1111111111/R2222222222_x.log.gz`` belongs to R2222222222.
    """
    for part in reversed(Path(path).parts):
        found = _RXID_RE.findall(part)
        if found:
            return "R" + found[-1]
    return None


def is_valid_rxid(rxid: str) -> bool:
    return isinstance(rxid, str) and _RXID_EXACT.fullmatch(rxid) is not None


def date_from_path(path: str | Path) -> datetime | None:
    """A date (and time, when present) written in the path, e.g. ``logcat_20240317T161338``.

    Used as a year anchor for year-less headers. The file name wins over its folders.
    """
    for part in reversed(Path(path).parts):
        for m in reversed(list(_PATH_DATE_RE.finditer(part))):
            y, mo, d, hh, mi, ss = m.groups()
            try:
                return datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0))
            except ValueError:
                continue
    return None


def fingerprint(path: str | Path, size: int) -> str:
    """A cheap content fingerprint: MD5 of the size, the first and the last 64 KiB.

    Together with size and mtime it tells an unchanged file (skip) from a grown or rewritten
    one (read again; the line MD5s make the re-read idempotent).
    """
    h = hashlib.md5(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(65536))
        if size > 65536:
            f.seek(max(65536, size - 65536))
            h.update(f.read(65536))
    return h.hexdigest()


def discover(paths: list[str | Path]) -> list[Path]:
    """Expand folders into the log files under them (sorted); explicit files are kept as given.

    A folder contributes files ending in .gz, .log or .txt (any case) and files whose name
    starts with ``logcat``; hidden files are skipped. Symbolic links to folders are followed,
    each real folder once (a link back up the tree is a loop, not a reason to hang). Paths that
    do not exist are returned too, so the ingest can report them instead of silently dropping
    them.
    """
    out: list[Path] = []
    visited: set[str] = set()  # real paths of the folders walked
    for p in map(Path, paths):
        if p.is_dir():
            for root, dirs, files in os.walk(p, followlinks=True):
                real = os.path.realpath(root)
                if real in visited:
                    dirs[:] = []
                    continue
                visited.add(real)
                dirs[:] = sorted(
                    d
                    for d in dirs
                    if not d.startswith(".")
                    and os.path.realpath(os.path.join(root, d)) not in visited
                )
                for name in sorted(files):
                    low = name.lower()
                    if name.startswith("."):
                        continue
                    if low.endswith(LOG_SUFFIXES) or low.startswith("logcat"):
                        out.append(Path(root) / name)
        else:
            out.append(p)
    seen: set[Path] = set()
    return [p for p in out if not (p in seen or seen.add(p))]


# --------------------------------------------------------------------------- reading


@dataclass
class ReadReport:
    """What reading one file found; filled in while the reader runs."""

    compression: str = "unknown"  # gzip | plain
    bytes_in: int = 0  # bytes of the file consumed
    bytes_out: int = 0  # decompressed bytes
    lines: int = 0
    truncated_lines: int = 0  # lines cut at MAX_LINE_BYTES
    damaged: bool = False  # the stream ended early or was corrupt: the read is partial
    notes: list[str] = field(default_factory=list)

    @property
    def error(self) -> str | None:
        return "; ".join(self.notes) or None


class Chunk(NamedTuple):
    """Consecutive lines of a file, and which of them were cut at the length limit (or None)."""

    lines: pa.StringArray
    truncated: np.ndarray | None


class NotALogFile(Exception):
    """The file is neither gzip nor text: nothing in it can be read as log lines."""


_TEXT_CONTROLS = frozenset(b"\t\n\r\x0c\x1b")


def _looks_binary(head: bytes) -> bool:
    """True when over 5 % of the first bytes are control characters, as in a binary file.

    Log text has almost none (a stray NUL is removed, not a reason to refuse the file).
    """
    if not head:
        return False
    controls = sum(1 for b in head if b < 32 and b not in _TEXT_CONTROLS)
    return controls / len(head) > 0.05


def _gunzip_pieces(f: BinaryIO, report: ReadReport) -> Iterator[bytes]:
    """Decompress every gzip member of ``f``, yielding decompressed bytes as they come.

    On a corrupt member the member is replayed with the standard library's zlib, whose state
    can be copied, so that the piece that failed is fed one byte at a time and every byte
    before the damage is still yielded. Reading then stops: nothing after the damage is
    trustworthy.
    """
    member_start = 0
    while True:
        f.seek(member_start)
        d = _fast_zlib.decompressobj(31)
        emitted = 0  # decompressed bytes of this member already yielded
        consumed = 0  # compressed bytes of this member fed so far
        try:
            while not d.eof:
                piece = f.read(PIECE_BYTES)
                if not piece:
                    report.damaged = True
                    report.notes.append(
                        f"gzip stream truncated after {member_start + consumed} bytes"
                    )
                    return
                consumed += len(piece)
                report.bytes_in = member_start + consumed
                out = d.decompress(piece)
                if out:
                    emitted += len(out)
                    yield out
        except (zlib.error, _fast_zlib.error, OSError) as exc:
            report.damaged = True
            report.notes.append(f"corrupt gzip data near byte {member_start + consumed}: {exc}")
            yield from _replay_member(f, member_start, emitted)
            return
        tail = d.unused_data
        member_start += consumed - len(tail)
        report.bytes_in = member_start
        # Another member follows when the leftover bytes start with the magic.
        f.seek(member_start)
        nxt = f.read(2)
        if not nxt:
            return
        if nxt != GZIP_MAGIC:
            report.damaged = True
            report.notes.append(f"{_size_after(f, member_start)} bytes of trailing garbage ignored")
            return


def _size_after(f: BinaryIO, pos: int) -> int:
    return os.fstat(f.fileno()).st_size - pos


def _replay_member(f: BinaryIO, start: int, skip: int) -> Iterator[bytes]:
    """Re-inflate one member with zlib and yield what decodes past ``skip`` bytes of output."""
    f.seek(start)
    d = zlib.decompressobj(31)
    produced = 0

    def emit(out: bytes) -> Iterator[bytes]:
        nonlocal produced
        lo = max(0, skip - produced)
        produced += len(out)
        if lo < len(out):
            yield out[lo:]

    while True:
        piece = f.read(PIECE_BYTES)
        if not piece:
            return
        saved = d.copy()
        try:
            yield from emit(d.decompress(piece))
        except zlib.error:
            d = saved
            for i in range(len(piece)):
                try:
                    yield from emit(d.decompress(piece[i : i + 1]))
                except zlib.error:
                    return
            return
        if d.eof:
            return


def _plain_pieces(f: BinaryIO, report: ReadReport) -> Iterator[bytes]:
    while True:
        piece = f.read(CHUNK_BYTES)
        if not piece:
            return
        report.bytes_in += len(piece)
        yield piece


class LineReader:
    """Iterate over a file's lines in chunks: ``for lines in LineReader(path): ...``.

    Each :class:`Chunk` holds a ``pyarrow.StringArray`` of cleaned lines (valid UTF-8, no NUL,
    no CR, at most :data:`MAX_LINE_BYTES`). ``report`` tells, during and after iteration, how the
    read went. Raises :class:`NotALogFile` (before yielding anything) for a binary non-gzip file
    and ``OSError`` when the file cannot be opened.
    """

    def __init__(self, path: str | Path, chunk_bytes: int = CHUNK_BYTES):
        self.path = Path(path)
        self.chunk_bytes = chunk_bytes
        self.report = ReadReport()

    def __iter__(self) -> Iterator[Chunk]:
        with open(self.path, "rb") as f:
            head = f.read(4096)
            f.seek(0)
            if head[:2] == GZIP_MAGIC:
                self.report.compression = "gzip"
                pieces = _gunzip_pieces(f, self.report)
                first = next(pieces, b"")
                if first[:2] == GZIP_MAGIC:  # stored as is, it would be lines of binary junk
                    raise NotALogFile(
                        "a gzip file inside a gzip file: decompress the outer layer first "
                        "(gunzip -c FILE > FILE.inner.gz), then ingest that"
                    )
                pieces = itertools.chain([first], pieces)
            elif _looks_binary(head):
                raise NotALogFile("neither gzip nor text (looks binary)")
            else:
                self.report.compression = "plain"
                if self.path.name.lower().endswith(".gz"):
                    self.report.notes.append("named .gz but not gzip: read as plain text")
                pieces = _plain_pieces(f, self.report)
            yield from self._lines(pieces)

    def _lines(self, pieces: Iterator[bytes]) -> Iterator[Chunk]:
        pending: list[bytes] = []  # pieces not yet handed out, ending in an incomplete line
        pending_len = 0
        tail_len = 0  # bytes after the last newline in ``pending``
        skipping = False  # inside the tail of an over-long line
        for piece in pieces:
            self.report.bytes_out += len(piece)
            if skipping:
                nl = piece.find(b"\n")
                if nl < 0:
                    continue
                piece, skipping = piece[nl + 1 :], False
            pending.append(piece)
            pending_len += len(piece)
            nl = piece.rfind(b"\n")
            tail_len = tail_len + len(piece) if nl < 0 else len(piece) - nl - 1
            if pending_len < self.chunk_bytes and tail_len <= MAX_LINE_BYTES:
                continue
            data = b"".join(pending)
            cut = data.rfind(b"\n")
            if cut >= 0:
                yield self._clean(data[:cut])
            rest = data[cut + 1 :]
            if len(rest) > MAX_LINE_BYTES:  # one line growing past the limit: cut, skip its tail
                yield self._clean(rest[:MAX_LINE_BYTES], cut=True)
                rest, skipping = b"", True
            pending, pending_len, tail_len = [rest], len(rest), len(rest)
        data = b"".join(pending)
        if data:  # the last line, with or without its newline
            yield self._clean(data[:-1] if data.endswith(b"\n") else data)

    def _clean(self, blob: bytes, cut: bool = False) -> Chunk:
        """Newline-separated bytes → clean lines (UTF-8 repaired, no NUL, no trailing CR).

        ``cut``: the blob is the head of one over-long line whose tail is being skipped.
        """
        if b"\x00" in blob:
            blob = blob.replace(b"\x00", b"")
        try:  # Arrow checks UTF-8 in C++ without making a Python str (the common case)
            whole = pa.array([blob], pa.binary()).cast(pa.string())
        except pa.ArrowInvalid:  # invalid bytes: Python's decoder puts U+FFFD in their place
            whole = pa.array([blob.decode("utf-8", "replace")], pa.string())
        arr = pc.split_pattern(whole, "\n").flatten()
        truncated = None
        if cut:
            truncated = np.ones(len(arr), dtype=bool)
        elif pc.max(pc.binary_length(arr)).as_py() > MAX_LINE_BYTES:
            raw = [s.encode("utf-8") for s in arr.to_pylist()]
            truncated = np.array([len(b) > MAX_LINE_BYTES for b in raw])
            arr = pa.array([b[:MAX_LINE_BYTES].decode("utf-8", "ignore") for b in raw], pa.string())
        if b"\r" in blob:
            arr = pc.utf8_rtrim(arr, "\r")
        if truncated is not None:
            self.report.truncated_lines += int(truncated.sum())
        self.report.lines += len(arr)
        return Chunk(arr, truncated)


def text_lines(text: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[Chunk]:
    """Lines of a text already in memory (e.g. a request body), cleaned exactly as a file's
    lines are (UTF-8 repaired, no NUL, no CR, over-long lines cut at :data:`MAX_LINE_BYTES`)."""
    blob = text.encode("utf-8", "surrogatepass")  # a lone surrogate becomes U+FFFD below
    return LineReader("<memory>", chunk_bytes)._lines(iter([blob]))
