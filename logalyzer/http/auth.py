"""Who is calling: the bearer token of a request, and the roles routes require.

``Authorization: Bearer <secret>`` from ``logalyzer tokens create``. Missing, unknown or
revoked: 401. :data:`Caller` is any valid token, :data:`Admin` an admin token,
:data:`Device` a box's own token; :func:`own_box` refuses another box's RxID (403).

The token is checked on a pooled connection of its own that is released at once, so a route
that waits (a scoring request waiting for its batch) holds no connection meanwhile; the check
runs on a worker thread, off the event loop.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from logalyzer.errors import Forbidden
from logalyzer.store import tokens
from logalyzer.store.tokens import Token

bearer = HTTPBearer(auto_error=False, description="a secret from `logalyzer tokens create`")


async def caller(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Token:
    """The request's token, or 401."""
    service = request.app.state.service
    secret = creds.credentials if creds else None
    if not secret:
        return tokens.authenticate(None, None)  # raises "missing bearer token"

    def check() -> Token:
        with service.connection() as conn:
            return tokens.authenticate(conn, secret)

    return await run_in_threadpool(check)


async def admin(token: Annotated[Token, Depends(caller)]) -> Token:
    if not token.is_admin:
        raise Forbidden("this route needs an admin token")
    return token


async def device(token: Annotated[Token, Depends(caller)]) -> Token:
    """A box's own token: device routes mark pushes delivered, which only the box may do."""
    if token.is_admin:
        raise Forbidden("device routes take the box's own token, not an admin token")
    return token


def own_box(token: Token, rxid: str) -> None:
    """403 unless ``token`` belongs to box ``rxid``."""
    if token.rxid != rxid:
        raise Forbidden(f"this token belongs to {token.rxid}, not {rxid}")


Caller = Annotated[Token, Depends(caller)]
Admin = Annotated[Token, Depends(admin)]
Device = Annotated[Token, Depends(device)]
