"""Who is calling: the bearer token of a request, and the roles routes require.

``Authorization: Bearer <secret>`` from ``logalyzer tokens create``. Missing, unknown or
revoked: 401. An admin route needs an admin token; a device route the box's own token
(:func:`own_box` refuses another box's RxID, 403).

One check, two ways to get its connection:

- :data:`Conn` routes (the jam-software ones) hold one pooled connection for the whole
  request; :data:`Admin` and :data:`Device` check the token on that same connection, so a
  request costs one pool checkout.
- Routes that wait (a scoring request waits for its batch) must hold no connection meanwhile:
  :data:`ScoreCaller` and :data:`ScoreAdmin` check the token on a connection of their own that
  is released at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import psycopg
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from logalyzer.errors import Forbidden
from logalyzer.store import tokens
from logalyzer.store.tokens import Token

bearer = HTTPBearer(auto_error=False, description="a secret from `logalyzer tokens create`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def db_conn(request: Request) -> Iterator[psycopg.Connection]:
    """The request's pooled connection, shared by its dependencies and its route."""
    with request.app.state.service.connection() as conn:
        yield conn


Conn = Annotated[psycopg.Connection, Depends(db_conn)]


def _secret(creds: HTTPAuthorizationCredentials | None) -> str | None:
    return creds.credentials if creds else None


def caller(conn: Conn, creds: Credentials) -> Token:
    """The request's token, checked on the request's own connection."""
    return tokens.authenticate(conn, _secret(creds))


async def score_caller(request: Request, creds: Credentials) -> Token:
    """The request's token, checked on a connection released at once."""
    secret = _secret(creds)
    if not secret:
        return tokens.authenticate(None, None)  # raises "missing bearer token"

    def check() -> Token:
        with request.app.state.service.connection() as conn:
            return tokens.authenticate(conn, secret)

    return await run_in_threadpool(check)


def _admin(token: Token) -> Token:
    if not token.is_admin:
        raise Forbidden("this route needs an admin token")
    return token


# async: no I/O here, so no hop through the thread pool (sync dependencies each take one)
async def admin(token: Annotated[Token, Depends(caller)]) -> Token:
    return _admin(token)


async def score_admin(token: Annotated[Token, Depends(score_caller)]) -> Token:
    return _admin(token)


async def device(token: Annotated[Token, Depends(caller)]) -> Token:
    """A box's own token: device routes mark pushes delivered, which only the box may do."""
    if token.is_admin:
        raise Forbidden("device routes take the box's own token, not an admin token")
    return token


def own_box(token: Token, rxid: str) -> None:
    """403 unless ``token`` belongs to box ``rxid``."""
    if token.rxid != rxid:
        raise Forbidden(f"this token belongs to {token.rxid}, not {rxid}")


Admin = Annotated[Token, Depends(admin)]
Device = Annotated[Token, Depends(device)]
ScoreCaller = Annotated[Token, Depends(score_caller)]
ScoreAdmin = Annotated[Token, Depends(score_admin)]
