"""Searching the stored lines, the pure part: what a search asks for, where a page ends (the
cursor), how hits and their context lines are merged, and how a line is shown. The SQL is
:mod:`logalyzer.store.search`; the faces are ``logalyzer grep`` and ``GET /v1/lines``.

**Order.** Devices come in RxID order. Inside a device, lines are in the order
``(ts, file_id, line_no, line_md5)``: time, then the file and line they came from (the ingest
gives a file's wall-clock-less lines the time of a neighbour, so ties are common and the file
order settles them), the MD5 last because keyset paging needs a total order. Lines with no
time at all (a file without a single wall-clock line, e.g. a dmesg dump) come after the
device's timed lines, in file order: two *segments*, :data:`TIMED` then :data:`UNTIMED`. They
are searched only when no time window is given, since they have no time to compare.

**What a pattern matches** is the stored message (the whole raw line for an unparsed one): a
substring by default (case-sensitive, like grep), a PostgreSQL regular expression with
``regex``; ``ignore_case`` for either. Tag and level have their own exact filters.
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from logalyzer.errors import BadSearch

#: logcat's priorities, lowest first (a level filter names some of them).
LEVELS = "VDIWEFAS"
TIMED, UNTIMED = 0, 1  # the two segments of a device's lines (module docstring)
_CURSOR_MAX = 512  # characters: a cursor is an RxID, a time, three numbers; more is not one


def as_utc(t: datetime) -> datetime:
    """A time in UTC; a time without a zone is read as UTC (the stored times are UTC). One
    that UTC cannot hold (``0001-01-01T00:00+01:00``) is :class:`BadSearch`."""
    try:
        return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    except OverflowError as exc:
        raise BadSearch(f"a time out of range: {t.isoformat()}") from exc


def parse_time(text: str) -> datetime:
    """An ISO 8601 time or date (``2024-03-18``, ``2024-03-18T07:00``, ``...Z``,
    ``...+01:00``) as UTC; no zone means UTC. Anything else is :class:`BadSearch`."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise BadSearch(f"not a time: {text!r} ({exc})") from exc
    return as_utc(parsed)


def window_end(since: datetime, length: timedelta) -> datetime:
    """``since + length``, or the last time Python can hold (a window ending past year 9999
    is simply open-ended)."""
    try:
        return since + length
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC)


def like_pattern(text: str) -> str:
    """``text`` as a LIKE pattern that matches it anywhere: its ``\\``, ``%`` and ``_`` escaped,
    so a plain search never turns into a wildcard one."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True)
class LineFilter:
    """What to search for. ``since`` is inclusive, ``until`` exclusive, both UTC."""

    pattern: str = ""
    regex: bool = False
    ignore_case: bool = False
    since: datetime | None = None
    until: datetime | None = None
    tags: tuple[str, ...] = ()
    levels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        bad = [lv for lv in self.levels if len(lv) != 1 or lv not in LEVELS]
        if bad:
            raise BadSearch(
                f"not a log level: {', '.join(map(repr, bad))}",
                hint=f"levels are one letter of {' '.join(LEVELS)} (logcat's)",
            )
        if "\0" in self.pattern or any("\0" in t for t in self.tags):
            raise BadSearch("a pattern or tag with a NUL character", hint="stored text has none")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, as_utc(value))
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise BadSearch(
                f"empty time window: until ({self.until:%Y-%m-%dT%H:%M:%SZ}) is not after "
                f"since ({self.since:%Y-%m-%dT%H:%M:%SZ})"
            )

    @property
    def segments(self) -> tuple[int, ...]:
        """The segments to search: untimed lines have no time to put in a window."""
        if self.since is not None or self.until is not None:
            return (TIMED,)
        return (TIMED, UNTIMED)


@dataclass(frozen=True)
class Position:
    """Where a line sits in the search order: the keyset a page resumes after."""

    rxid: str
    ts: datetime | None
    file_id: int
    line_no: int
    line_md5: UUID

    @property
    def segment(self) -> int:
        return UNTIMED if self.ts is None else TIMED

    def key(self) -> tuple:
        """The values of the segment's key columns (store.search orders by these)."""
        if self.ts is None:
            return (self.file_id, self.line_no, self.line_md5)
        return (self.ts, self.file_id, self.line_no, self.line_md5)

    def order(self) -> tuple:
        """A Python sort key agreeing with the SQL order across devices and segments."""
        return (self.rxid, self.segment, *self.key())


@dataclass
class Line:
    """One stored line as a search shows it. ``match``: it satisfies the search (false for a
    context line)."""

    rxid: str
    ts: datetime | None
    file_id: int
    line_no: int
    line_md5: UUID
    level: str | None
    tag: str | None
    message: str
    match: bool = True
    path: str | None = field(default=None)

    @property
    def position(self) -> Position:
        return Position(self.rxid, self.ts, self.file_id, self.line_no, self.line_md5)


# --------------------------------------------------------------------------- cursor


def encode_cursor(pos: Position) -> str:
    """An opaque, URL-safe cursor for the page after ``pos``."""
    ts = pos.ts.astimezone(UTC).isoformat() if pos.ts is not None else None
    raw = json.dumps([pos.rxid, ts, pos.file_id, pos.line_no, pos.line_md5.hex])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(text: str) -> Position:
    """The position a cursor names; a damaged or made-up one is :class:`BadSearch`."""
    try:
        if len(text) > _CURSOR_MAX:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        rxid, ts, file_id, line_no, md5 = json.loads(raw)
        if not (isinstance(file_id, int) and isinstance(line_no, int) and isinstance(rxid, str)):
            raise ValueError("bad field types")
        if not (-(2**31) <= file_id < 2**31 and -(2**63) <= line_no < 2**63):
            raise ValueError("numbers out of range")
        when = None if ts is None else as_utc(datetime.fromisoformat(ts))
        return Position(rxid, when, file_id, line_no, UUID(hex=md5))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, BadSearch) as exc:
        raise BadSearch(
            "not a cursor of this search",
            hint="pass next_cursor of the previous page unchanged, or leave cursor out "
            "for the first page",
        ) from exc


# --------------------------------------------------------------------------- context


class ContextMerger:
    """Hits with their context into the lines to show, each line once, in order, and whether
    a separator (grep's ``--``) goes before a block: between blocks that neither overlap nor
    touch. Fed one hit at a time, in order, with up to ``n + 1`` lines before it (the extra
    one only tells whether this block touches the previous) and up to ``n`` after it."""

    def __init__(self, n: int):
        self.n = n
        self.last: Line | None = None  # the last line handed out

    def add(self, before: list[Line], hit: Line, after: list[Line]) -> tuple[bool, list[Line]]:
        """(separator before the new lines?, the new lines)."""
        previous = self.last
        shown = before[1:] if len(before) > self.n else before
        block = [*shown, hit, *after]
        if previous is not None:
            block = [ln for ln in block if ln.position.order() > previous.position.order()]
        if block:
            self.last = block[-1]
        return previous is not None and not self._touches(previous, before, hit), block

    def _touches(self, previous: Line, before: list[Line], hit: Line) -> bool:
        p, h = previous.position, hit.position
        if (p.rxid, p.segment) != (h.rxid, h.segment):
            return False
        if len(before) <= self.n:  # this block starts the segment, so the previous overlaps it
            return True
        return p.order() >= before[0].position.order()


# --------------------------------------------------------------------------- showing


def iso_ms(ts: datetime) -> str:
    """``2024-03-18T07:37:56.123Z``: UTC to the millisecond, as grep's text lines show it."""
    t = ts.astimezone(UTC)
    return f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond // 1000:03d}Z"


def file_label(line: Line) -> str:
    """The file's name (the ledger has its path), or its id if the ledger lost the row."""
    return posixpath.basename(line.path) if line.path else f"file#{line.file_id}"


def format_line(line: Line) -> str:
    """``R0000000001 2024-03-18T07:37:56.123Z file.gz:1234 I/Tag: message``; a context line
    has ``-`` instead of ``:`` after the file (grep's convention), a line without time ``-``."""
    when = iso_ms(line.ts) if line.ts is not None else "-"
    where = f"{file_label(line)}{':' if line.match else '-'}{line.line_no}"
    head = "/".join(x for x in (line.level, line.tag) if x)
    text = f"{head}: {line.message}" if head else line.message
    return f"{line.rxid} {when} {where} {text}"


def line_record(line: Line) -> dict:
    """The line as JSON-ready values: ``ts`` in ISO 8601 UTC to the microsecond."""
    ts = line.ts.astimezone(UTC).isoformat().replace("+00:00", "Z") if line.ts else None
    return {
        "rxid": line.rxid,
        "ts": ts,
        "file": file_label(line),
        "path": line.path,
        "line_no": line.line_no,
        "level": line.level,
        "tag": line.tag,
        "message": line.message,
        "match": line.match,
    }
