"""How the HTTP service answers errors: one JSON shape, ``{"detail": ..., "hint": ...}``.

Named errors (:mod:`logalyzer.errors`) become that body with their status: 401 no or bad
token, 403 wrong role or another box, 404, 409 idempotency conflict or unknown sessions, 413
body too large, 422 invalid input, 503 database unreachable or not ready; only bugs are 500s.
:func:`error_responses` documents the same statuses in the OpenAPI of each route.
"""

from __future__ import annotations

import psycopg
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from logalyzer.errors import (
    DatabaseUnreachable,
    Forbidden,
    IdempotencyConflict,
    InvalidIdentifier,
    InvalidRequest,
    LogalyzerError,
    NotFound,
    NotReady,
    Unauthorized,
    UnknownSessions,
)

#: Named error -> HTTP status; any other LogalyzerError is a 400.
STATUS = {
    DatabaseUnreachable: 503,
    NotReady: 503,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    IdempotencyConflict: 409,
    UnknownSessions: 409,
    InvalidIdentifier: 422,
    InvalidRequest: 422,
}


class ErrorOut(BaseModel):
    detail: str
    hint: str | None = None


def error_responses(*codes: int) -> dict:
    """OpenAPI ``responses`` entries for the given error statuses; a route that takes a body
    (413) can also answer 400 for one that cannot be read at all."""
    if 413 in codes:
        codes = (400, *codes)
    text = {
        400: "body that is not JSON at all (invalid UTF-8, numbers or nesting past the parser's"
        " limits)",
        401: "missing, invalid or revoked token",
        403: "wrong role, or another box's data",
        404: "not found",
        409: "Idempotency-Key reused with a different body",
        413: "request body too large",
        503: "database unreachable, or the service at capacity (JSON, with Retry-After)",
    }
    return {c: {"model": ErrorOut, "description": text[c]} for c in codes}


def add_error_handlers(app: FastAPI, max_body: int) -> None:
    """Install the handlers that turn every error into the JSON shape above."""

    @app.exception_handler(LogalyzerError)
    async def named(_request: Request, exc: LogalyzerError) -> JSONResponse:
        status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 400)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(
            {"detail": str(exc), "hint": exc.hint or None}, status_code=status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes each bad input back: up to 64 KiB, and a NaN in it
        # makes the error response itself fail (a 500). Field and message say enough.
        unreadable = [e for e in exc.errors() if e.get("type") == "json_invalid"]
        if unreadable:  # not JSON at all: the same 400 as a body FastAPI cannot decode
            return unreadable_body(
                unreadable[0].get("ctx", {}).get("error") or unreadable[0].get("msg", "")
            )
        detail = [
            {
                "loc": list(e.get("loc", ())),
                "type": e.get("type", "value_error"),
                "msg": str(e.get("msg", "")).removeprefix("Value error, "),
            }
            for e in exc.errors()
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(psycopg.DataError)
    async def refused_value(_request: Request, exc: psycopg.DataError) -> JSONResponse:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return JSONResponse(
            {"detail": f"the database refused a value: {first}", "hint": None}, status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 413:
            return too_large(exc.detail if isinstance(exc.detail, int) else max_body)
        if exc.status_code == 400:  # FastAPI could not read the body at all
            return unreadable_body(exc.detail)
        return await http_exception_handler(request, exc)


BODY_HINT = (
    "send one JSON object in UTF-8 (Content-Type: application/json), as /openapi.json "
    "describes; integers of at most 4,300 digits, nesting of at most a few levels"
)


def unreadable_body(reason) -> JSONResponse:
    return JSONResponse(
        {"detail": f"the request body could not be read: {reason}", "hint": BODY_HINT},
        status_code=400,
    )


def too_large(max_body: int) -> JSONResponse:
    return JSONResponse(
        {
            "detail": f"request body over the limit of {max_body} bytes",
            "hint": "events and pushes are small JSON objects; send fewer sessions "
            "per /v1/score request",
        },
        status_code=413,
    )


#: Seconds a refused client should wait (``Retry-After``): a box polling every few minutes
#: loses nothing by coming back a second later.
RETRY_AFTER_S = 1


def overloaded(reason: str) -> JSONResponse:
    return JSONResponse(
        {
            "detail": f"the service is at capacity: {reason}",
            "hint": f"retry after {RETRY_AFTER_S} s; operators: add replicas "
            "(LOGALYZER_SERVE_REPLICAS) or cores",
        },
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )
