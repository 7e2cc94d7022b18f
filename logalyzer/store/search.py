"""Searching ``log_lines``: what ``logalyzer grep`` and ``GET /v1/lines`` call.

Each box is searched in its own partition, named from its validated RxID and quoted, so no plan
ever touches another box's lines (partition pruning by construction, not left to the planner).
Lines come in the order of :mod:`logalyzer.core.search`. The index is BRIN on ``ts``
(sql/0012): it finds the block ranges that hold a time window, nearly free for the ingest,
but it cannot give rows in order, so every query here sorts what its window holds, and both
ways of reading keep that window small:

- :func:`stream_hits` (the CLI): one query per box and segment through a server-side cursor
  planned for all its rows, fetched in batches. A whole box searched for a rare pattern is one
  sequential scan; a window, the ranges that hold it.
- :func:`page_lines` (HTTP): keyset pages, the hits after a
  :class:`~logalyzer.core.search.Position`, ``LIMIT n + 1`` (the extra row says whether there
  is a next page), reading the window in growing time slices (:func:`_slices`); bounded by a
  byte budget and a statement timeout. Never OFFSET: a page costs the same wherever it starts.

The SQL itself is built in :mod:`logalyzer.store.search_query`; the lines around the hits are
:mod:`logalyzer.store.search_context`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta

import psycopg

from logalyzer.core.files import is_valid_rxid
from logalyzer.core.search import TIMED, ContextMerger, Line, LineFilter, Position
from logalyzer.errors import BadSearch, UnknownDevice, first_line
from logalyzer.store.db import partition_name
from logalyzer.store.search_context import context_blocks
from logalyzer.store.search_query import hits_query, to_line

__all__ = [
    "Page",
    "attach_paths",
    "check_pattern",
    "context_blocks",
    "devices",
    "page_lines",
    "stream_hits",
]

REGEX_HINT = (
    "PostgreSQL regular expressions (POSIX ARE): escape ( ) [ ] { } . * + ? | with a "
    "backslash; without --regex (regex=false) the pattern is plain text"
)


@dataclass
class Page:
    """One page of a search: its lines (hits and their context) and where the next starts."""

    lines: list[Line]
    next: Position | None  # None: this was the last page


# --------------------------------------------------------------------------- what to search


def devices(conn: psycopg.Connection, rxids: Iterable[str] | None = None) -> list[str]:
    """The devices to search, in RxID order: all that have lines, or ``rxids`` (validated;
    one without lines is :class:`~logalyzer.errors.UnknownDevice`)."""
    have = {
        r[0].upper()
        for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'log_lines'::regclass"
        )
        if is_valid_rxid(r[0].upper())
    }
    if rxids is None:
        return sorted(have)
    wanted = sorted({r.upper() for r in rxids})
    for rxid in wanted:
        partition_name(rxid)  # raises InvalidIdentifier for a malformed one
    missing = [r for r in wanted if r not in have]
    if missing:
        raise UnknownDevice(f"no lines stored for {', '.join(missing[:5])}")
    return wanted


def check_pattern(conn: psycopg.Connection, flt: LineFilter) -> None:
    """A regular expression PostgreSQL cannot compile is :class:`BadSearch` before any
    partition is read (and before a stream has printed anything)."""
    if not (flt.regex and flt.pattern):
        return
    op = "~*" if flt.ignore_case else "~"
    try:
        with conn.transaction():
            conn.execute(f"SELECT '' {op} %s", (flt.pattern,))
    except psycopg.errors.InvalidRegularExpression as exc:
        raise BadSearch(first_line(exc, with_type=False), hint=REGEX_HINT) from exc


# --------------------------------------------------------------------------- the CLI's stream


def stream_hits(
    conn: psycopg.Connection,
    flt: LineFilter,
    rxids: list[str],
    limit: int | None = None,
    batch: int = 1000,
) -> Iterator[list[Line]]:
    """The hits of ``rxids`` in order, in lists of up to ``batch``, at most ``limit`` in all.

    Read through server-side cursors in one transaction (the caller may run other queries on
    ``conn`` between batches, e.g. :func:`context_blocks`); planned for all their rows
    (``cursor_tuple_fraction = 1``) rather than the first tenth, PostgreSQL's default for a
    cursor, which favours walking the index even when a sequential scan is far cheaper."""
    left = limit
    with conn.transaction():
        conn.execute("SET LOCAL cursor_tuple_fraction = 1")
        for rxid in rxids:
            for segment in flt.segments:
                q, params = hits_query(rxid, flt, segment, None, left)
                with conn.cursor(name="logalyzer_grep") as cur:
                    cur.execute(q, params)
                    while rows := cur.fetchmany(batch):
                        yield [to_line(rxid, r) for r in rows]
                        if left is not None:
                            left -= len(rows)
                            if left <= 0:
                                return


# --------------------------------------------------------------------------- context


def attach_paths(conn: psycopg.Connection, lines: list[Line], cache: dict[int, str]) -> None:
    """Fill each line's ``path`` from the ledger (``cache``: file id -> path, kept by the
    caller across batches)."""
    wanted = sorted({ln.file_id for ln in lines if ln.file_id not in cache})
    if wanted:
        cache.update(
            conn.execute(
                "SELECT file_id, path FROM ingested_files WHERE file_id = ANY(%s::integer[])",
                (wanted,),
            ).fetchall()
        )
    for ln in lines:
        ln.path = cache.get(ln.file_id)


# --------------------------------------------------------------------------- HTTP's pages


def page_lines(
    conn: psycopg.Connection,
    flt: LineFilter,
    rxids: list[str],
    after: Position | None,
    limit: int,
    context: int = 0,
    max_bytes: int = 4 << 20,
    timeout_ms: int | None = None,
) -> Page:
    """Up to ``limit`` hits of the boxes ``rxids`` (checked: :func:`devices`) after ``after``,
    with ``context`` lines around each; a bad regular expression is refused first
    (:func:`check_pattern`). All in one call, so an HTTP request makes one thread hop. The page
    ends early rather than let its messages pass ``max_bytes`` (UTF-8), but always holds at
    least one hit, so paging always moves on. A search running past ``timeout_ms`` is
    :class:`BadSearch` (narrow it)."""
    rxids = devices(conn, rxids)
    check_pattern(conn, flt)
    if after is not None and after.rxid not in rxids:
        raise BadSearch(
            f"the cursor points into {after.rxid}, which this search does not cover",
            hint="pass next_cursor with the same rxid, since, until and filters as its page",
        )
    try:
        with conn.transaction():
            if timeout_ms:
                conn.execute(
                    "SELECT set_config('statement_timeout', %s, true)", (str(int(timeout_ms)),)
                )
            hits = _hits_after(conn, flt, rxids, after, limit + 1)
            more = len(hits) > limit
            lines, last, cut = _assemble(conn, flt, hits[:limit], context, max_bytes)
            attach_paths(conn, lines, {})
    except psycopg.errors.QueryCanceled as exc:
        raise BadSearch(
            f"the search took longer than {timeout_ms} ms",
            hint="narrow it: a shorter window, fewer boxes, a tag or level filter, a longer "
            "or plain-text pattern",
        ) from exc
    return Page(lines, last.position if (more or cut) and last is not None else None)


#: A page reads its window in slices, this long first and twice as long each time after:
#: a page of a common pattern then reads the next minutes of the box, not the whole window
#: after the cursor (the BRIN index finds a slice's rows; it cannot give them in order).
SLICE_FIRST = timedelta(hours=1)


def _hits_after(
    conn: psycopg.Connection, flt: LineFilter, rxids: list[str], after: Position | None, n: int
) -> list[Line]:
    """The first ``n`` hits after ``after``, across devices and segments in order."""
    found: list[Line] = []
    for rxid in rxids:
        if after is not None and rxid < after.rxid:
            continue
        for segment in flt.segments:
            here = after is not None and rxid == after.rxid
            if here and segment < after.segment:
                continue
            start = after if here and segment == after.segment else None
            for part in _slices(flt, start, segment):
                q, params = hits_query(rxid, part, segment, start, n - len(found))
                found += [to_line(rxid, r) for r in conn.execute(q, params)]
                if len(found) >= n:
                    return found
    return found


def _slices(flt: LineFilter, start: Position | None, segment: int) -> Iterator[LineFilter]:
    """``flt`` cut into consecutive time slices from ``start`` (or its since) to its until,
    growing (:data:`SLICE_FIRST`); whole when the window is open or the lines have no time."""
    if segment != TIMED or flt.since is None or flt.until is None:
        yield flt
        return
    lo = max(flt.since, start.ts) if start is not None and start.ts is not None else flt.since
    width = SLICE_FIRST
    while lo < flt.until:
        hi = flt.until if flt.until - lo <= width else lo + width  # never past year 9999
        yield replace(flt, since=lo, until=hi)
        lo, width = hi, width * 2


def _assemble(
    conn: psycopg.Connection, flt: LineFilter, hits: list[Line], context: int, max_bytes: int
) -> tuple[list[Line], Line | None, bool]:
    """(the page's lines, its last hit, whether the byte budget cut it short)."""
    lines: list[Line] = []
    size = 0
    last = None
    for _, hit, block in context_blocks(conn, flt, hits, context, ContextMerger(context)):
        more = sum(len(ln.message.encode()) for ln in block)
        if last is not None and size + more > max_bytes:
            return lines, last, True
        lines += block
        size += more
        last = hit
    return lines, last, False
