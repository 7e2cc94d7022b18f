"""Bearer tokens of the HTTP service: create, list, revoke, and check a presented secret.

Only ``sha256(secret)`` is stored (``api_tokens.token_hash``): the secret is 32 random bytes,
so a fast hash is enough (no password stretching needed), and a stolen table grants nothing.
The secret is returned once, by :func:`create_token`. An admin token creates and reads pushes;
a device token belongs to one RxID and reaches only that box's routes.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import psycopg

from logalyzer.core.files import is_valid_rxid
from logalyzer.errors import InvalidIdentifier, LogalyzerError, NotFound, Unauthorized

PREFIX = "lgz_"  # makes a leaked secret easy to recognise (secret scanners, logs)
_COLUMNS = "token_id, role, rxid, name, created_at, revoked_at, last_used_at"


@dataclass(frozen=True)
class Token:
    token_id: int
    role: str
    rxid: str | None
    name: str
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def label(self) -> str:
        """How the token is named in records (``jam_pushes.created_by``): never the secret."""
        return f"token {self.token_id}" + (f" ({self.name})" if self.name else "")


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def create_token(
    conn: psycopg.Connection, *, admin: bool = False, rxid: str | None = None, name: str = ""
) -> tuple[Token, str]:
    """A new token and its secret (shown once). Exactly one of ``admin`` and ``rxid``."""
    if admin == bool(rxid):
        raise LogalyzerError(
            "a token is either --admin or for one --rxid", hint="give exactly one of them"
        )
    if rxid is not None and not is_valid_rxid(rxid):
        raise InvalidIdentifier(f"not an RxID: {rxid!r}")
    if len(name) > 200 or any(ord(c) < 32 for c in name):
        raise LogalyzerError("a token name is at most 200 printable characters")
    secret = PREFIX + secrets.token_urlsafe(32)
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO api_tokens (token_hash, role, rxid, name) VALUES (%s, %s, %s, %s)"
            f" RETURNING {_COLUMNS}",
            (hash_secret(secret), "admin" if admin else "device", rxid, name),
        ).fetchone()
    return Token(*row), secret


def list_tokens(conn: psycopg.Connection) -> list[Token]:
    return [Token(*r) for r in conn.execute(f"SELECT {_COLUMNS} FROM api_tokens ORDER BY token_id")]


def revoke_token(conn: psycopg.Connection, token_id: int) -> Token:
    """Revoke a token (again is fine: the first revocation time is kept)."""
    with conn.transaction():
        row = conn.execute(
            f"UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE token_id = %s"
            f" RETURNING {_COLUMNS}",
            (token_id,),
        ).fetchone()
    if row is None:
        raise NotFound(f"no token with id {token_id}", hint="see `logalyzer tokens list`")
    return Token(*row)


def check_form(secret: str | None) -> str:
    """The secret, or :class:`Unauthorized` when it is missing or cannot be one of ours (no
    database needed to tell)."""
    if not secret:
        raise Unauthorized("missing bearer token")
    if not secret.startswith(PREFIX) or len(secret) > 200:
        raise Unauthorized("invalid or revoked token")
    return secret


def authenticate(conn: psycopg.Connection, secret: str | None) -> Token:
    """The live token whose secret this is, or :class:`Unauthorized` (missing, unknown or
    revoked: the message does not say which of the last two, so it reveals nothing).

    ``last_used_at`` is refreshed at most once a minute: a write per request would cost more
    than the request itself on the hot device routes.
    """
    check_form(secret)
    row = conn.execute(
        f"SELECT {_COLUMNS}, last_used_at IS NULL OR last_used_at < now() - interval '1 minute'"
        " FROM api_tokens WHERE token_hash = %s AND revoked_at IS NULL",
        (hash_secret(secret),),
    ).fetchone()
    if row is None:
        raise Unauthorized("invalid or revoked token")
    if row[-1]:
        conn.execute("UPDATE api_tokens SET last_used_at = now() WHERE token_id = %s", (row[0],))
    return Token(*row[:-1])
