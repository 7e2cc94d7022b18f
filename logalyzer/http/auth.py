"""Who is calling: the bearer token of a request, and the roles routes require.

``Authorization: Bearer <secret>`` from ``logalyzer tokens create``. Missing, unknown or
revoked: 401. An admin route needs an admin token; a device route the box's own token
(:func:`own_box` refuses another box's RxID, 403).

**Checked tokens are trusted for ``serve_token_cache_s`` seconds (default 5)** without asking
PostgreSQL again (:class:`TokenCache`, one per replica). Why: every box polls, and the token
check was a database round trip and a thread-pool hop on every request, as much work as the
route itself. The price is stated and tested: a revoked token is refused within that many
seconds (``tests/test_serve.py``); 0 turns the cache off. Unknown secrets are never cached,
so a token works the moment it is created.

The dependencies here are ``async``: a cached token costs no thread hop at all, an uncached
one a single hop (the lookup, on a connection released at once), and the route then makes one
hop for its own work (:meth:`logalyzer.http.app.Service.run`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from logalyzer.errors import Forbidden
from logalyzer.store import tokens
from logalyzer.store.tokens import Token


async def _service(request: Request):
    return request.app.state.service


#: The replica's :class:`~logalyzer.http.app.Service`, for every route and dependency: each
#: route does its database work in one ``await service.run(fn, ...)``, one thread hop with one
#: pooled connection.
Svc = Annotated[Any, Depends(_service)]

bearer = HTTPBearer(auto_error=False, description="a secret from `logalyzer tokens create`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


class TokenCache:
    """Secret hash -> (token, time checked), for ``ttl`` seconds, at most ``size`` entries
    (the least recently checked go first). Not thread-safe by design: it is used only on the
    replica's event loop."""

    def __init__(self, ttl: float, size: int = 100_000, clock=time.monotonic):
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self._seen: OrderedDict[bytes, tuple[Token, float]] = OrderedDict()

    def get(self, key: bytes) -> Token | None:
        hit = self._seen.get(key)
        if hit is None:
            return None
        if self.clock() - hit[1] >= self.ttl:
            del self._seen[key]
            return None
        return hit[0]

    def put(self, key: bytes, token: Token) -> None:
        if self.ttl <= 0:
            return
        self._seen[key] = (token, self.clock())
        self._seen.move_to_end(key)
        while len(self._seen) > self.size:
            self._seen.popitem(last=False)


async def caller(service: Svc, creds: Credentials) -> Token:
    """The request's token: from the replica's cache, else checked on PostgreSQL."""
    secret = tokens.check_form(creds.credentials if creds else None)
    key = tokens.hash_secret(secret)
    token = service.token_cache.get(key)
    if token is None:
        token = await service.run(tokens.authenticate, secret)
        service.token_cache.put(key, token)
    return token


Caller = Annotated[Token, Depends(caller)]


async def admin(token: Caller) -> Token:
    if not token.is_admin:
        raise Forbidden("this route needs an admin token")
    return token


async def device(token: Caller) -> Token:
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
