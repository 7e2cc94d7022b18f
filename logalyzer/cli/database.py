"""Database housekeeping: ``logalyzer db migrate`` and ``logalyzer db info``."""

from __future__ import annotations

import click

from logalyzer.cli.common import CONTEXT, friendly, load_settings, open_db
from logalyzer.settings import redact_dsn
from logalyzer.store.db import legacy_partitions
from logalyzer.store.db import migrate as apply_migrations
from logalyzer.store.lines import digest_totals
from logalyzer.store.reports import database_info

# --------------------------------------------------------------------------- db


@click.group(context_settings=CONTEXT)
def db() -> None:
    """Database housekeeping."""


@db.command(context_settings=CONTEXT)
@friendly
def migrate() -> None:
    """Apply the numbered SQL files in sql/ that are not applied yet."""
    settings = load_settings()
    database = open_db(settings, migrate_schema=False)
    with database.connect() as conn:
        done = apply_migrations(conn)
        legacy = legacy_partitions(conn)
        if "0018_line_ranges.sql" in done:
            ranges, lines = digest_totals(conn)
    click.echo(
        f"applied {len(done)} migration(s){': ' + ', '.join(done) if done else ' (up to date)'}"
    )
    if "0018_line_ranges.sql" in done:
        click.echo(
            f"recorded the digests of the {lines:,} stored lines with a clock in {ranges:,}"
            " key range(s) (line_ranges), and dropped the BRIN indexes on line_key: the loader"
            " finds duplicates from those digests now"
        )
    if legacy:
        click.echo(
            f"{len(legacy):,} device table(s) from before 0017_line_key ({', '.join(legacy[:3])}"
            f"{', ...' if len(legacy) > 3 else ''}) keep their unique index on line_md5: they"
            " load as before, at the old speed. To give one the new shape, re-ingest it"
            ' (README, "Upgrading").'
        )


@db.command(context_settings=CONTEXT)
@friendly
def info() -> None:
    """Where the database is, its schema version and what it holds."""
    settings = load_settings()
    database = open_db(settings)
    facts = database_info(database)
    where = (
        "embedded PostgreSQL in " + str(settings.home / "pgdata")
        if database.embedded
        else redact_dsn(database.dsn)
    )
    click.echo(f"database: {where}")
    click.echo(f"schema version: {facts['version']}")
    click.echo(f"devices (partitions): {facts['partitions']:,}; lines loaded: {facts['lines']:,}")
    click.echo("files: " + (", ".join(f"{s} {n:,}" for s, n in facts["files"]) or "none"))
