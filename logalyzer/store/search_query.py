"""The SQL of a search, built from a :class:`~logalyzer.core.search.LineFilter`: its conditions on
a partition aliased ``l``, the key columns that order each segment, and the query for the hits of
one box's segment. Used by :mod:`logalyzer.store.search` (the hits, pages) and
:mod:`logalyzer.store.search_context` (the lines around them).

The partition is always named from a validated RxID (:func:`~logalyzer.store.db.partition_name`)
and quoted; every value is a bound parameter.
"""

from __future__ import annotations

from psycopg import sql

from logalyzer.core.search import TIMED, UNTIMED, Line, LineFilter, Position, like_pattern
from logalyzer.store.db import partition_name

#: The key columns of each segment, in order (core.search, "Order").
KEY = {
    TIMED: ("ts", "file_id", "line_no", "line_md5"),
    UNTIMED: ("file_id", "line_no", "line_md5"),
}
IN_SEGMENT = {TIMED: "l.ts IS NOT NULL", UNTIMED: "l.ts IS NULL"}
COLUMNS = ("ts", "file_id", "line_no", "line_md5", "level", "tag", "message")


def conditions(flt: LineFilter) -> tuple[list[sql.Composable], list]:
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


def key_sql(segment: int, alias: str) -> tuple[sql.Composable, sql.Composable]:
    """(the row of the segment's key columns, the ORDER BY of them) for table ``alias``."""
    cols = sql.SQL(", ").join(sql.Identifier(alias, c) for c in KEY[segment])
    return sql.SQL("({})").format(cols), cols


def select_list(alias: str) -> sql.Composable:
    """The columns a :class:`~logalyzer.core.search.Line` is made of (:func:`to_line`)."""
    return sql.SQL(", ").join(sql.Identifier(alias, c) for c in COLUMNS)


def hits_query(
    rxid: str, flt: LineFilter, segment: int, after: Position | None, limit: int | None
) -> tuple[sql.Composable, list]:
    """The hits of one device's segment in order, after ``after`` (same segment) if given."""
    conds, params = conditions(flt)
    conds.insert(0, sql.SQL(IN_SEGMENT[segment]))
    key, order = key_sql(segment, "l")
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
        cols=select_list("l"),
        part=sql.Identifier(partition_name(rxid)),
        where=sql.SQL(" AND ").join(conds),
        order=order,
    )
    if limit is not None:
        q += sql.SQL(" LIMIT %s")
        params.append(limit)
    return q, params


def to_line(rxid: str, row: tuple, match: bool = True) -> Line:
    """A line of box ``rxid`` from a row that starts with :func:`select_list`'s columns."""
    return Line(rxid, *row[: len(COLUMNS)], match=match)
