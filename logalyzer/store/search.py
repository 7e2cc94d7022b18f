"""Searching ``log_lines``: the SQL behind ``logalyzer grep`` and ``GET /v1/lines``.

Each device is searched in its own partition, named from its validated RxID and quoted, so no
plan ever touches another box's lines (partition pruning by construction, not by the
planner). Lines come in the order of :mod:`logalyzer.core.search`, which is the order of the
index ``(ts, file_id, line_no)`` that sql/0012 puts on every partition: a time window is a
range of that index, read in order, with no sort (the MD5 that makes the order total only
breaks ties an incremental sort settles). The same index serves ``session_lines`` (sql/0003).

Two ways to read, for two faces:

- :func:`stream_hits` (the CLI): one query per device and segment through a server-side
  cursor planned for all its rows, fetched in batches. A whole device searched for a rare
  pattern is then one sequential scan, not a walk of the index over every line.
- :func:`page_lines` (HTTP): keyset pages, the hits after a
  :class:`~logalyzer.core.search.Position`, ``LIMIT n + 1`` (the extra row says whether there
  is a next page); bounded by a byte budget and a statement timeout. Never OFFSET: a page
  costs the same wherever it starts.

Context lines (:func:`context_blocks`) are read around a batch of hits in one statement per
device, segment and direction (``LATERAL`` over the hits' keys), each with whether it matches
the search itself, so a hit shown as another hit's context is still marked as a hit.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from logalyzer.core.files import is_valid_rxid
from logalyzer.core.search import (
    TIMED,
    UNTIMED,
    ContextMerger,
    Line,
    LineFilter,
    Position,
    like_pattern,
)
from logalyzer.errors import BadSearch, UnknownDevice, first_line
from logalyzer.store.db import partition_name

#: The key columns of each segment, in order (core.search, "Order").
KEY = {
    TIMED: ("ts", "file_id", "line_no", "line_md5"),
    UNTIMED: ("file_id", "line_no", "line_md5"),
}
_IN_SEGMENT = {TIMED: "l.ts IS NOT NULL", UNTIMED: "l.ts IS NULL"}
_COLUMNS = ("ts", "file_id", "line_no", "line_md5", "level", "tag", "message")
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


def _conditions(flt: LineFilter) -> tuple[list[sql.Composable], list]:
    """The search's conditions on a partition aliased ``l``, and their parameters."""
    conds: list[sql.Composable] = []
    params: list = []
    if flt.pattern:
        if flt.regex:
            conds.append(sql.SQL("l.message ~* %s" if flt.ignore_case else "l.message ~ %s"))
            params.append(flt.pattern)
        else:
            conds.append(sql.SQL("l.message ILIKE %s" if flt.ignore_case else "l.message LIKE %s"))
            params.append(like_pattern(flt.pattern))
    if flt.tags:
        conds.append(sql.SQL("l.tag = ANY(%s::text[])"))
        params.append(list(flt.tags))
    if flt.levels:
        conds.append(sql.SQL("l.level = ANY(%s::text[])"))
        params.append(list(flt.levels))
    if flt.since is not None:
        conds.append(sql.SQL("l.ts >= %s"))
        params.append(flt.since)
    if flt.until is not None:
        conds.append(sql.SQL("l.ts < %s"))
        params.append(flt.until)
    return conds, params


def _key(segment: int, alias: str, desc: bool = False) -> tuple[sql.Composable, sql.Composable]:
    """(the row of the segment's key columns, ORDER BY them) for table ``alias``."""
    cols = [sql.Identifier(alias, c) for c in KEY[segment]]
    order = sql.SQL(", ").join(c + sql.SQL(" DESC") if desc else c for c in cols)
    return sql.SQL("({})").format(sql.SQL(", ").join(cols)), order


def _select_list(alias: str) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(alias, c) for c in _COLUMNS)


def _hits_query(
    rxid: str, flt: LineFilter, segment: int, after: Position | None, limit: int | None
) -> tuple[sql.Composable, list]:
    """The hits of one device's segment in order, after ``after`` (same segment) if given."""
    conds, params = _conditions(flt)
    conds.insert(0, sql.SQL(_IN_SEGMENT[segment]))
    key, order = _key(segment, "l")
    if after is not None:
        values = after.key()
        if segment == TIMED:  # the leading column alone: an index range whatever the planner
            conds.append(sql.SQL("l.ts >= %s"))
            params.append(values[0])
        conds.append(
            sql.SQL("{} > ({})").format(key, sql.SQL(", ").join(sql.Placeholder() * len(values)))
        )
        params.extend(values)
    q = sql.SQL("SELECT {cols} FROM {part} l WHERE {where} ORDER BY {order}").format(
        cols=_select_list("l"),
        part=sql.Identifier(partition_name(rxid)),
        where=sql.SQL(" AND ").join(conds),
        order=order,
    )
    if limit is not None:
        q += sql.SQL(" LIMIT %s")
        params.append(limit)
    return q, params


def _line(rxid: str, row: tuple, match: bool = True) -> Line:
    return Line(rxid, *row[: len(_COLUMNS)], match=match)


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
                q, params = _hits_query(rxid, flt, segment, None, left)
                with conn.cursor(name="logalyzer_grep") as cur:
                    cur.execute(q, params)
                    while rows := cur.fetchmany(batch):
                        yield [_line(rxid, r) for r in rows]
                        if left is not None:
                            left -= len(rows)
                            if left <= 0:
                                return


# --------------------------------------------------------------------------- context


def context_blocks(
    conn: psycopg.Connection, flt: LineFilter, hits: list[Line], n: int, merger: ContextMerger
) -> Iterator[tuple[bool, Line, list[Line]]]:
    """Per hit, in order: (separator before?, the hit, the new lines of its block: up to
    ``n`` lines before and after it on the same device and segment, each line once across
    the calls that share ``merger``)."""
    if n <= 0:
        for hit in hits:
            yield False, hit, [hit]
        return
    groups: dict[tuple[str, int], list[int]] = {}
    for i, hit in enumerate(hits):
        groups.setdefault((hit.rxid, hit.position.segment), []).append(i)
    before: dict[int, list[Line]] = {}
    after: dict[int, list[Line]] = {}
    for (rxid, segment), idx in groups.items():
        b, a = _neighbours(conn, flt, rxid, segment, [hits[i] for i in idx], n)
        before.update(zip(idx, b))
        after.update(zip(idx, a))
    for i, hit in enumerate(hits):
        separator, lines = merger.add(before[i], hit, after[i])
        yield separator, hit, lines


#: Context is read in time spans around the hits: first this far either side of each hit,
#: then :data:`REACH_GROWTH` times farther for the hits still short of lines, and past
#: :data:`REACH_MAX` without bounds. Why spans and not a walk of an index from each hit: the
#: time index is BRIN (sql/0012), which finds ranges, not order; a span is one range scan for
#: all the hits it covers, and a sparse box only costs wider spans.
REACH_FIRST = timedelta(minutes=5)
REACH_GROWTH = 16
REACH_MAX = timedelta(days=3 * 366)
_EARLIEST = datetime(1, 1, 1, tzinfo=UTC)  # "no bound", as timestamptz values
_LATEST = datetime(9999, 12, 31, tzinfo=UTC)


def _neighbours(
    conn: psycopg.Connection,
    flt: LineFilter,
    rxid: str,
    segment: int,
    hits: list[Line],
    n: int,
) -> tuple[list[list[Line]], list[list[Line]]]:
    """For each hit (of one device and segment, in order): up to ``n + 1`` lines just before
    it and ``n`` just after it, in order, each with whether it matches the search."""
    before: list[list[Line] | None] = [None] * len(hits)
    after: list[list[Line] | None] = [None] * len(hits)
    todo = list(range(len(hits)))
    reach: timedelta | None = REACH_FIRST if segment == TIMED else None
    while todo:
        spans = _spans([hits[i] for i in todo], todo, reach)
        for (lo, hi, members), rows in zip(spans, _span_rows(conn, flt, rxid, segment, spans)):
            keys = [r.position.key() for r in rows]
            for i in members:
                pos = bisect_left(keys, hits[i].position.key())
                if before[i] is None and (pos >= n + 1 or lo == _EARLIEST):
                    before[i] = rows[max(0, pos - n - 1) : pos]
                if after[i] is None and (pos + n < len(rows) or hi == _LATEST):
                    after[i] = rows[pos + 1 : pos + 1 + n]
        todo = [i for i in todo if before[i] is None or after[i] is None]
        reach = None if reach is None or reach * REACH_GROWTH > REACH_MAX else reach * REACH_GROWTH
    return before, after  # every hit has both now


def _spans(
    hits: list[Line], idx: list[int], reach: timedelta | None
) -> list[tuple[datetime, datetime, list[int]]]:
    """Time spans ``reach`` either side of the hits (in order), overlapping ones merged, each
    with the indices of the hits it covers; no reach: one span without bounds."""
    if reach is None:
        return [(_EARLIEST, _LATEST, list(idx))]
    spans: list[tuple[datetime, datetime, list[int]]] = []
    for i, hit in zip(idx, hits):
        lo, hi = hit.ts - reach, hit.ts + reach
        if spans and lo <= spans[-1][1]:
            spans[-1] = (spans[-1][0], hi, [*spans[-1][2], i])
        else:
            spans.append((lo, hi, [i]))
    return spans


#: Spans one statement reads at most (an OR of their ranges: one bitmap scan each).
SPANS_PER_QUERY = 100


def _span_rows(
    conn: psycopg.Connection,
    flt: LineFilter,
    rxid: str,
    segment: int,
    spans: list[tuple[datetime, datetime, list[int]]],
) -> list[list[Line]]:
    """Every line of each span (its bounds included), in order, each with whether it matches
    the search. The bounds are written into the statement as values, an OR of ranges, not
    joined from an array: PostgreSQL then sees how narrow each is and reads it through the
    index (joined, it planned a scan of the whole box: 2.3 s instead of 0.03 s for an hour)."""
    conds, params = _conditions(flt)
    match = sql.SQL("coalesce({}, false)").format(
        sql.SQL(" AND ").join(conds) if conds else sql.SQL("true")
    )
    _, order = _key(segment, "l")
    found: list[list[Line]] = [[] for _ in spans]
    for first in range(0, len(spans), SPANS_PER_QUERY):
        group = spans[first : first + SPANS_PER_QUERY]
        if segment == TIMED:
            within = sql.SQL(" OR ").join(sql.SQL("(l.ts >= %s AND l.ts <= %s)") for _ in group)
            bounds = [t for lo, hi, _ in group for t in (lo, hi)]
        else:
            within, bounds = sql.SQL("l.ts IS NULL"), []
        q = sql.SQL("SELECT {cols}, {match} FROM {part} l WHERE {within} ORDER BY {order}").format(
            cols=_select_list("l"),
            match=match,
            part=sql.Identifier(partition_name(rxid)),
            within=within,
            order=order,
        )
        k = 0  # spans are disjoint and in order, as the rows are
        for row in conn.execute(q, [*params, *bounds]):
            line = _line(rxid, row[: len(_COLUMNS)], match=row[-1])
            while segment == TIMED and line.ts > group[k][1]:
                k += 1
            found[first + k].append(line)
    return found


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
    """Up to ``limit`` hits after ``after`` with ``context`` lines around each. The page ends
    early rather than let its messages pass ``max_bytes`` (UTF-8), but always holds at least
    one hit, so paging always moves on. A search running past ``timeout_ms`` is
    :class:`BadSearch` (narrow it)."""
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
                q, params = _hits_query(rxid, part, segment, start, n - len(found))
                found += [_line(rxid, r) for r in conn.execute(q, params)]
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
        hi = min(flt.until, lo + width)
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


def search_page(
    conn: psycopg.Connection,
    flt: LineFilter,
    rxids: list[str],
    after: Position | None,
    limit: int,
    context: int = 0,
    max_bytes: int = 4 << 20,
    timeout_ms: int | None = None,
) -> Page:
    """One page for HTTP in one call (one thread hop): the boxes and the pattern checked, then
    :func:`page_lines`."""
    boxes = devices(conn, rxids)
    check_pattern(conn, flt)
    return page_lines(conn, flt, boxes, after, limit, context, max_bytes, timeout_ms)
