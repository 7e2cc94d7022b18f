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

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

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
_ARRAY_TYPE = {"ts": "timestamptz[]", "file_id": "integer[]", "line_no": "bigint[]"}
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
        group = [hits[i] for i in idx]
        for i, lines in zip(idx, _around(conn, flt, rxid, segment, group, n + 1, "before")):
            before[i] = lines
        for i, lines in zip(idx, _around(conn, flt, rxid, segment, group, n, "after")):
            after[i] = lines
    for i, hit in enumerate(hits):
        separator, lines = merger.add(before[i], hit, after[i])
        yield separator, hit, lines


def _around(
    conn: psycopg.Connection,
    flt: LineFilter,
    rxid: str,
    segment: int,
    hits: list[Line],
    n: int,
    side: str,
) -> list[list[Line]]:
    """For each hit (one device and segment), the ``n`` lines just before or after it, in
    order, each with whether it matches the search. One statement for all the hits."""
    cols = KEY[segment]
    conds, cond_params = _conditions(flt)
    match = sql.SQL("coalesce({}, false)").format(
        sql.SQL(" AND ").join(conds) if conds else sql.SQL("true")
    )
    key, order = _key(segment, "l", desc=side == "before")
    hkey, _ = _key(segment, "h")
    arrays = [[hit.position.key()[k] for hit in hits] for k in range(len(cols))]
    q = sql.SQL(
        "SELECT h.i, c.* FROM unnest(%s::integer[], {types}) AS h(i, {cols})"
        " CROSS JOIN LATERAL (SELECT {select}, {match} AS match FROM {part} l"
        " WHERE {segment}{lead} AND {key} {op} {hkey} ORDER BY {order} LIMIT %s) c"
        " ORDER BY h.i"
    ).format(
        types=sql.SQL(", ").join(
            sql.SQL("%s::" + _ARRAY_TYPE.get(c, "uuid[]"))
            for c in cols  # line_md5: uuid[]
        ),
        cols=sql.SQL(", ").join(map(sql.Identifier, cols)),
        select=_select_list("l"),
        match=match,
        part=sql.Identifier(partition_name(rxid)),
        segment=sql.SQL(_IN_SEGMENT[segment]),
        lead=sql.SQL(
            (" AND l.ts <= h.ts" if side == "before" else " AND l.ts >= h.ts")
            if segment == TIMED
            else ""
        ),
        key=key,
        op=sql.SQL("<" if side == "before" else ">"),
        hkey=hkey,
        order=order,
    )
    found: list[list[Line]] = [[] for _ in hits]
    rows = conn.execute(q, [list(range(len(hits))), *arrays, *cond_params, n]).fetchall()
    for row in rows:
        found[row[0]].append(_line(rxid, row[1 : 1 + len(_COLUMNS)], match=row[-1]))
    if side == "before":
        for lines in found:
            lines.reverse()
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
            q, params = _hits_query(rxid, flt, segment, start, n - len(found))
            found += [_line(rxid, r) for r in conn.execute(q, params)]
            if len(found) >= n:
                return found
    return found


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
