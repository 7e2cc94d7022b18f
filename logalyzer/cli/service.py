"""The HTTP service's commands: ``logalyzer serve`` and ``logalyzer tokens``."""

from __future__ import annotations

import click

from logalyzer.cli.common import CONTEXT, friendly, load_settings, open_db
from logalyzer.store.tokens import create_token, list_tokens, revoke_token

# --------------------------------------------------------------------------- serve


@click.command(context_settings=CONTEXT)
@click.option(
    "--host",
    default=None,
    help="Address to listen on (default LOGALYZER_SERVE_HOST or 127.0.0.1; "
    "0.0.0.0 for every interface).",
)
@click.option(
    "--port",
    default=None,
    type=click.IntRange(1, 65535),
    help="Port to listen on (default LOGALYZER_SERVE_PORT or 8000).",
)
@click.option(
    "--replicas",
    default=None,
    type=click.IntRange(1, 1024),
    help="Replicas, all answering on the port (default LOGALYZER_SERVE_REPLICAS or 1; "
    "about one per core).",
)
@friendly
def serve(host: str | None, port: int | None, replicas: int | None) -> None:
    """Run the HTTP service (Ray Serve replicas with FastAPI, no proxy hop) until Ctrl-C.

    Health at /healthz and /readyz, the jam-software routes under /jam-software, the API
    documentation at /docs. Create tokens for it with `logalyzer tokens create`.
    """
    from logalyzer.http.serving import run_forever  # heavy (Ray Serve): loaded when it runs

    settings = load_settings(serve_host=host, serve_port=port, serve_replicas=replicas)
    db = open_db(
        settings
    )  # resolved and migrated here: an embedded server lives as long as this process
    run_forever(settings, db.dsn, settings.serve_host, settings.serve_port, echo=click.echo)


# --------------------------------------------------------------------------- tokens


@click.group(context_settings=CONTEXT)
def tokens() -> None:
    """Bearer tokens of the HTTP service (admin, or one per device); only their hashes are
    stored."""


@tokens.command("create", context_settings=CONTEXT)
@click.option(
    "--admin", "admin", is_flag=True, help="An admin token: create and read jam-software pushes."
)
@click.option(
    "--rxid", default=None, help="A device token for this box (R + 10 digits): its own routes only."
)
@click.option("--name", default="", help="A label to recognise the token by (who or what uses it).")
@friendly
def tokens_create(admin: bool, rxid: str | None, name: str) -> None:
    """Create a token and print its secret (shown this once only)."""
    with open_db(load_settings()).connect() as conn:
        token, secret = create_token(
            conn, admin=admin, rxid=rxid.upper() if rxid else None, name=name
        )
    who = "admin" if token.is_admin else f"device {token.rxid}"
    click.echo(
        f"created token {token.token_id} ({who}{', ' + name if name else ''}); "
        "its secret, shown once:",
        err=True,
    )
    click.echo(secret)


@tokens.command("list", context_settings=CONTEXT)
@friendly
def tokens_list() -> None:
    """List the tokens: id, role, box, name, when created, last used and revoked (never secrets)."""
    with open_db(load_settings()).connect() as conn:
        found = list_tokens(conn)
    if not found:
        click.echo("no tokens; create one with `logalyzer tokens create --admin`")
        return
    when = lambda t: t.strftime("%Y-%m-%d %H:%M") if t else "-"
    rows = [("id", "role", "rxid", "name", "created", "last used", "revoked")]
    rows += [
        (
            str(t.token_id),
            t.role,
            t.rxid or "-",
            t.name or "-",
            when(t.created_at),
            when(t.last_used_at),
            when(t.revoked_at),
        )
        for t in found
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for k, r in enumerate(rows):
        line = "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
        click.echo(click.style(line, bold=True) if k == 0 else line)


@tokens.command("revoke", context_settings=CONTEXT)
@click.argument("token_id", type=int)
@friendly
def tokens_revoke(token_id: int) -> None:
    """Revoke token TOKEN_ID (see `logalyzer tokens list`); it is refused from the next request
    on."""
    with open_db(load_settings()).connect() as conn:
        t = revoke_token(conn, token_id)
    click.echo(
        f"revoked token {t.token_id} ({t.role}{' ' + t.rxid if t.rxid else ''}) "
        f"at {t.revoked_at:%Y-%m-%d %H:%M:%S %Z}"
    )
