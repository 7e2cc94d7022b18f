"""``GET /v1/lines``: the search of ``logalyzer grep`` for support staff, as thin HTTP over
:mod:`logalyzer.store.search`. Admin token only: lines are everything a box logged.

Bounded, so one request cannot hold a replica or the database: one to :data:`MAX_DEVICES`
boxes, a time window of at most ``LOGALYZER_LINES_MAX_WINDOW_H`` hours (``since`` required;
``until`` defaults to an hour later), at most :data:`MAX_PAGE` hits a page with at most
:data:`MAX_CONTEXT` context lines each, at most :data:`MAX_PAGE_BYTES` of messages a page, and
``LOGALYZER_LINES_TIMEOUT_S`` of PostgreSQL time; past any of them the answer is a JSON 400
(or 422 for a parameter out of its range) saying which, with a hint. Pages are keyset pages:
``next_cursor`` names the last hit of the page, so each page costs the same wherever it
starts and every hit comes exactly once, even while new lines arrive.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, StringConstraints

from logalyzer.core.files import RXID_PATTERN
from logalyzer.core.search import (
    LineFilter,
    as_utc,
    decode_cursor,
    encode_cursor,
    line_record,
    window_end,
)
from logalyzer.errors import BadSearch
from logalyzer.http.auth import Admin, Svc
from logalyzer.http.errors import ErrorOut, error_responses
from logalyzer.store.search import page_lines

router = APIRouter(prefix="/v1", tags=["lines"])

MAX_DEVICES = 20
MAX_PAGE = 1000
MAX_CONTEXT = 10
MAX_PAGE_BYTES = 4 << 20  # of messages: a page of 64 KiB lines stays a few MB
MAX_PATTERN = 1000
MAX_CURSOR = 512
DEFAULT_WINDOW = timedelta(hours=1)
MAX_MESSAGE = 65_536  # the ingest cuts lines at 64 KiB of UTF-8, so fewer characters

RxID = Annotated[str, StringConstraints(pattern=RXID_PATTERN)]
NO_NUL = r"^[^\x00]*$"  # stored text holds no NUL (the ingest removes them)
Tag = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]
Level = Literal["V", "D", "I", "W", "E", "F", "A", "S"]


class LineOut(BaseModel):
    rxid: str = Field(pattern=RXID_PATTERN)
    ts: datetime | None = Field(description="UTC; null for a line without any time")
    file: str = Field(max_length=4096, description="the file's name")
    path: str | None = Field(max_length=4096, description="the file's path in the ledger")
    line_no: int = Field(ge=0, description="line number in the decompressed file, from 1")
    level: str | None = Field(max_length=16)
    tag: str | None = Field(max_length=MAX_MESSAGE)
    message: str = Field(max_length=MAX_MESSAGE)
    match: bool = Field(description="false for a context line")


class LinesPage(BaseModel):
    lines: list[LineOut] = Field(max_length=MAX_PAGE * (2 * MAX_CONTEXT + 1))
    next_cursor: str | None = Field(
        max_length=MAX_CURSOR, description="pass as ?cursor= for the next page; null on the last"
    )
    rxids: list[str] = Field(max_length=MAX_DEVICES)
    since: datetime
    until: datetime


@router.get(
    "/lines",
    response_model=LinesPage,
    summary="Search the stored lines of one or a few boxes in a time window, a page at a time",
    responses={
        400: {
            "model": ErrorOut,
            "description": "a search that cannot run: window too wide or empty, bad regular "
            "expression, cursor of another search, over the time limit",
        },
        **error_responses(401, 403, 404, 503),
    },
)
async def search_lines(
    _token: Admin,
    service: Svc,
    rxid: Annotated[
        list[RxID],
        Query(min_length=1, max_length=MAX_DEVICES, description="the boxes (repeat the parameter)"),
    ],
    since: Annotated[datetime, Query(description="from this time on (ISO 8601; no zone = UTC)")],
    until: Annotated[
        datetime | None, Query(description="before this time; default: an hour after since")
    ] = None,
    q: Annotated[
        str,
        Query(
            max_length=MAX_PATTERN,
            pattern=NO_NUL,
            description="text in the message; empty: every line",
        ),
    ] = "",
    regex: Annotated[bool, Query(description="q is a PostgreSQL regular expression")] = False,
    ignore_case: Annotated[bool, Query(description="match q regardless of case")] = False,
    tag: Annotated[
        list[Tag] | None, Query(max_length=20, description="only these tags (exact)")
    ] = None,
    level: Annotated[list[Level] | None, Query(max_length=8, description="only these levels")] = (
        None
    ),
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="hits per page")] = 100,
    context: Annotated[
        int, Query(ge=0, le=MAX_CONTEXT, description="lines shown before and after each hit")
    ] = 0,
    cursor: Annotated[
        str | None,
        Query(
            max_length=MAX_CURSOR,
            pattern=r"^[A-Za-z0-9_-]+$",
            description="next_cursor of the previous page",
        ),
    ] = None,
) -> dict:
    since = as_utc(since)
    until = as_utc(until) if until is not None else window_end(since, DEFAULT_WINDOW)
    widest = timedelta(hours=service.settings.lines_max_window_h)
    if until - since > widest:
        raise BadSearch(
            f"the window from since to until is {(until - since) / timedelta(hours=1):g} h, "
            f"wider than {service.settings.lines_max_window_h:g} h",
            hint="search a narrower window, page by page (LOGALYZER_LINES_MAX_WINDOW_H sets "
            "the limit)",
        )
    flt = LineFilter(
        pattern=q,
        regex=regex,
        ignore_case=ignore_case,
        since=since,
        until=until,
        tags=tuple(tag or ()),
        levels=tuple(level or ()),
    )
    after = decode_cursor(cursor) if cursor else None
    boxes = sorted(set(rxid))
    page = await service.run(
        page_lines,
        flt,
        boxes,
        after,
        limit,
        context,
        MAX_PAGE_BYTES,
        int(service.settings.lines_timeout_s * 1000),
    )
    return {
        "lines": [line_record(ln) for ln in page.lines],
        "next_cursor": encode_cursor(page.next) if page.next else None,
        "rxids": boxes,
        "since": since,
        "until": until,
    }
