"""The ``logalyzer`` command: a thin click face over the library, one subcommand per stage.

Errors a user can cause are :class:`~logalyzer.errors.LogalyzerError`s, printed as one line
(``Error: ...``) plus a hint, with exit status 1; usage errors exit with 2 (click's rule).

Environment: ``LOGALYZER_DSN`` (PostgreSQL URL; unset = embedded PostgreSQL under
``LOGALYZER_HOME``, default ``~/.local/share/logalyzer``), ``LOGALYZER_TZ`` (the fleet's
zone, default UTC), ``RAY_ADDRESS`` (a Ray cluster; unset = local Ray).
"""

from __future__ import annotations

import sys
from functools import wraps
from pathlib import Path

import click

from .errors import LogalyzerError
from .settings import Settings, redact_dsn

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _fail(message: str, hint: str = "") -> None:
    click.secho(f"Error: {message}", fg="red", err=True)
    if hint:
        click.echo(f"Hint: {hint}", err=True)
    sys.exit(1)


def friendly(fn):
    """Turn named errors into one line and a hint; let real bugs show their traceback."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LogalyzerError as exc:
            _fail(str(exc), exc.hint)
        except KeyboardInterrupt:
            _fail("interrupted", "re-run the same command: finished files are skipped")

    return wrapper


def _settings(**overrides) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except Exception as exc:  # pydantic's ValidationError: one line per bad field
        errors = getattr(exc, "errors", lambda: [])()
        msg = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors) or str(exc)
        raise LogalyzerError(f"bad configuration: {msg}",
                             hint="see `logalyzer --help` for the environment variables") from exc


def _open_db(settings: Settings, migrate_schema: bool = True):
    from .db import open_database

    return open_database(settings, migrate_schema=migrate_schema)


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="logalyzer", message="%(prog)s %(version)s")
def main() -> None:
    """LOGalyzer: find playback problems in a fleet of Android-TV set-top boxes from their logs.

    \b
    Environment:
      LOGALYZER_DSN   PostgreSQL URL (unset: embedded PostgreSQL under LOGALYZER_HOME)
      LOGALYZER_HOME  embedded state (default ~/.local/share/logalyzer)
      LOGALYZER_TZ    the fleet's local time zone (default UTC)
      RAY_ADDRESS     a Ray cluster to run on (unset: a local Ray)
    """


# --------------------------------------------------------------------------- synth


@main.command(context_settings=CONTEXT)
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--devices", "-n", default=5, show_default=True, type=click.IntRange(1, 100_000),
              help="Number of boxes.")
@click.option("--hours", default=4.0, show_default=True, type=click.FloatRange(0.1, 24 * 365),
              help="Hours of logs per box.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed (same seed, same files).")
@click.option("--anomaly-rate", default=0.1, show_default=True, type=click.FloatRange(0, 1),
              help="Fraction of playback sessions made anomalous.")
@click.option("--noise", "noise", default=None, type=click.IntRange(0, 1_000_000),
              help="Non-VAR lines per device-minute (sets the size).")
@click.option("--tz", default=None, help="Zone the boxes write local time in (default LOGALYZER_TZ or UTC).")
@friendly
def synth(out: Path, devices: int, hours: float, seed: int, anomaly_rate: float,
          noise: int | None, tz: str | None) -> None:
    """Write a synthetic fleet of gzip logcat files and its ground truth into OUT."""
    from tqdm import tqdm

    from .synth import FleetSpec, generate_fleet

    settings = _settings(tz=tz)
    spec = FleetSpec(devices=devices, hours=hours, seed=seed, anomaly_rate=anomaly_rate, tz=settings.tz)
    if noise is not None:
        spec.noise_lines_per_minute = noise
    with tqdm(unit="B", unit_scale=True, desc="synth", disable=not sys.stderr.isatty(),
              file=sys.stderr) as bar:
        res = generate_fleet(out, spec, progress=bar.update)
    click.echo(f"wrote {len(res.files)} files, {res.lines:,} lines, "
               f"{res.bytes_uncompressed / 1e6:,.1f} MB uncompressed, for {devices} devices into {out}")
    click.echo(f"ground truth: {res.truth_path}")


# --------------------------------------------------------------------------- ingest


@main.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--rxid", default=None, help="Device id for files whose path names none (R + 10 digits).")
@click.option("--tz", default=None, help="The fleet's time zone for lines without an offset (default UTC).")
@click.option("--force", is_flag=True, help="Re-read files the ledger says are unchanged.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@friendly
def ingest(paths: tuple[Path, ...], rxid: str | None, tz: str | None, force: bool,
           progress: bool | None) -> None:
    """Load logcat files or folders (gzip or text) into PostgreSQL, in parallel on Ray.

    Re-running is safe: unchanged files are skipped and every line is stored once.
    """
    from .ingest import ingest as run_ingest

    settings = _settings(tz=tz)
    db = _open_db(settings)
    summary = run_ingest(settings, db, list(paths), rxid=rxid.upper() if rxid else None,
                         force=force, progress=progress)
    print_ingest_summary(summary)


def print_ingest_summary(summary) -> None:
    """The table at the end of an ingest: files by outcome, line counts, throughput, problems."""
    rows = [("status", "files", "lines read", "loaded", "duplicate", "unparsed", "truncated")]
    for status in ("done", "partial", "unchanged", "failed", "refused"):
        fs = [f for f in summary.files if f.status == status]
        if fs:
            rows.append((status, f"{len(fs):,}", *(f"{sum(getattr(f, a) for f in fs):,}" for a in (
                "lines_read", "lines_loaded", "lines_duplicate", "lines_unparsed", "lines_truncated"))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for k, r in enumerate(rows):
        line = "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        click.echo(click.style(line, bold=True) if k == 0 else line)
    loaded_files = [f for f in summary.files if f.status in ("done", "partial")]
    read = sum(f.lines_read for f in loaded_files)
    mb = sum(f.bytes_text for f in loaded_files) / 1e6
    gz = sum(f.size for f in loaded_files) / 1e6
    secs = max(summary.seconds, 1e-9)
    if not loaded_files:
        click.echo(f"{len(summary.files):,} files; nothing new to load ({summary.seconds:,.1f} s)")
    else:
        click.echo(f"{len(summary.files):,} files; read {read:,} lines, {mb:,.1f} MB of text "
                   f"({gz:,.1f} MB on disk) in {summary.seconds:,.1f} s: "
                   f"{read / secs:,.0f} lines/s, {mb / secs:,.1f} MB/s")
    for f in summary.files:
        if f.status in ("failed", "refused", "partial") or (f.error and f.status == "done"):
            color = {"failed": "red", "refused": "yellow", "partial": "yellow"}.get(f.status)
            click.secho(f"  {f.status}: {f.path}: {f.error}", fg=color)


# --------------------------------------------------------------------------- sessionize


@main.command(context_settings=CONTEXT)
@click.option("--rxids", default=None, help="Only these devices (comma-separated RxIDs).")
@click.option("--since", default=None, metavar="TS",
              type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
              help="Re-analyse the devices with files loaded at or after TS (UTC; YYYY-MM-DD[THH:MM:SS]), even if up to date.")
@click.option("--full", is_flag=True, help="Recompute every device, not only those with new lines.")
@click.option("--gap-min", default=30.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="A silence longer than this (minutes) ends a session.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@friendly
def sessionize(rxids: str | None, since, full: bool, gap_min: float, progress: bool | None) -> None:
    """Cut playback sessions from the loaded VAR events and compute their QoE measures.

    Incremental: only devices with lines loaded since their last analysis are recomputed.
    """
    from datetime import timezone

    from .pipeline import parse_rxids
    from .sessionize import sessionize as run_sessionize

    settings = _settings()
    db = _open_db(settings)
    summary = run_sessionize(settings, db, rxids=parse_rxids(rxids),
                             since=since.replace(tzinfo=timezone.utc) if since else None,
                             full=full, gap_s=gap_min * 60, progress=progress)
    print_sessionize_summary(summary)
    print_fleet_overview(db)


def print_sessionize_summary(summary) -> None:
    """The lines at the end of a sessionize run: devices, sessions, rows changed, speed."""
    n = len(summary.devices)
    secs = max(summary.seconds, 1e-9)
    click.echo(f"analysed {n:,} device(s) ({summary.skipped:,} up to date) in {summary.seconds:,.1f} s: "
               f"{summary.total('events'):,} VAR events, {summary.total('sessions'):,} sessions "
               f"({summary.total('events') / secs:,.0f} events/s)")
    click.echo(f"sessions inserted {summary.total('inserted'):,}, updated {summary.total('updated'):,}, "
               f"deleted {summary.total('deleted'):,}")
    for rxid, error in sorted(summary.failed.items()):
        click.secho(f"  failed: {rxid}: {error} (retried next run)", fg="red")


def print_fleet_overview(db) -> None:
    """The fleet in a few lines: totals, incident rates, the worst devices."""
    from .sessionize import fleet_overview

    o = fleet_overview(db)
    pct = (lambda v: "n/a" if v is None else f"{v:.2%}")
    click.echo(f"fleet: {o['devices']:,} devices, {o['sessions']:,} sessions, "
               f"{o['viewing_hours']:,.1f} viewing hours; per viewing hour: black screens "
               f"{o['black_screens_per_hour']:.2f}, freezes {o['freezes_per_hour']:.2f}, display drops "
               f"{o['display_drops_per_hour']:.2f}; rebuffer ratio {pct(o['rebuffer_ratio'])}, "
               f"video-start failures {pct(o['video_start_failure_rate'])}, "
               f"HDMI disconnects {o['hdmi_disconnects']:,}")
    for w in o["worst"]:
        click.echo(f"  worst: {w['rxid']} ({w['model'] or '?'} {w['fw'] or '?'}): "
                   f"{w['incidents_per_hour']:.1f} incidents per viewing hour over {w['sessions']:,} sessions")


# --------------------------------------------------------------------------- run


@main.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--steps", default="ingest", show_default=True,
              help="Comma-separated steps, run in order: ingest,sessionize,train,detect.")
@click.option("--rxids", default=None, help="Only these devices (comma-separated RxIDs).")
@click.option("--rxids-file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Only the devices listed in this file (one RxID per line).")
@click.option("--tz", default=None, help="The fleet's time zone (default UTC).")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: on a terminal).")
@friendly
def run(paths: tuple[Path, ...], steps: str, rxids: str | None, rxids_file: str | None,
        tz: str | None, progress: bool | None) -> None:
    """Run pipeline steps over PATHS (the launcher for bulk reprocessing)."""
    from .pipeline import parse_rxids, parse_steps, run_pipeline

    step_list = parse_steps(steps)
    if rxids and rxids_file:
        raise LogalyzerError("give --rxids or --rxids-file, not both")
    devices = parse_rxids(rxids, rxids_file)
    if "ingest" in step_list and not paths:
        raise LogalyzerError("the ingest step needs PATHS", hint="logalyzer run FLEET_DIR --steps ingest")
    settings = _settings(tz=tz)
    db = _open_db(settings)
    results = run_pipeline(settings, db, [str(p) for p in paths], step_list, devices, progress)
    if "ingest" in results:
        print_ingest_summary(results["ingest"])
    if "sessionize" in results:
        print_sessionize_summary(results["sessionize"])
        print_fleet_overview(db)
    if "train" in results:
        from .cli_ml import print_train_results

        print_train_results(results["train"])
    if "detect" in results:
        from .cli_ml import print_detect_summary, print_top_anomalies

        print_detect_summary(results["detect"])
        print_top_anomalies(db, 5)


# --------------------------------------------------------------------------- serve


@main.command(context_settings=CONTEXT)
@click.option("--host", default=None, help="Address to listen on (default LOGALYZER_SERVE_HOST or 127.0.0.1; 0.0.0.0 for every interface).")
@click.option("--port", default=None, type=click.IntRange(1, 65535),
              help="Port to listen on (default LOGALYZER_SERVE_PORT or 8000).")
@friendly
def serve(host: str | None, port: int | None) -> None:
    """Run the HTTP service (Ray Serve + FastAPI) until Ctrl-C.

    Health at /healthz and /readyz, the jam-software routes under /jam-software, the API
    documentation at /docs. Create tokens for it with `logalyzer tokens create`.
    """
    from .serving import run_forever

    settings = _settings(serve_host=host, serve_port=port)
    db = _open_db(settings)  # resolved and migrated here: an embedded server lives as long as this process
    run_forever(settings, db.dsn, settings.serve_host, settings.serve_port, echo=click.echo)


# --------------------------------------------------------------------------- tokens


@main.group(context_settings=CONTEXT)
def tokens() -> None:
    """Bearer tokens of the HTTP service (admin, or one per device); only their hashes are stored."""


@tokens.command("create", context_settings=CONTEXT)
@click.option("--admin", "admin", is_flag=True, help="An admin token: create and read jam-software pushes.")
@click.option("--rxid", default=None, help="A device token for this box (R + 10 digits): its own routes only.")
@click.option("--name", default="", help="A label to recognise the token by (who or what uses it).")
@friendly
def tokens_create(admin: bool, rxid: str | None, name: str) -> None:
    """Create a token and print its secret (shown this once only)."""
    from .tokens import create_token

    with _open_db(_settings()).connect() as conn:
        token, secret = create_token(conn, admin=admin, rxid=rxid.upper() if rxid else None, name=name)
    who = "admin" if token.is_admin else f"device {token.rxid}"
    click.echo(f"created token {token.token_id} ({who}{', ' + name if name else ''}); its secret, shown once:",
               err=True)
    click.echo(secret)


@tokens.command("list", context_settings=CONTEXT)
@friendly
def tokens_list() -> None:
    """List the tokens: id, role, box, name, when created, last used and revoked (never secrets)."""
    from .tokens import list_tokens

    with _open_db(_settings()).connect() as conn:
        found = list_tokens(conn)
    if not found:
        click.echo("no tokens; create one with `logalyzer tokens create --admin`")
        return
    when = (lambda t: t.strftime("%Y-%m-%d %H:%M") if t else "-")
    rows = [("id", "role", "rxid", "name", "created", "last used", "revoked")]
    rows += [(str(t.token_id), t.role, t.rxid or "-", t.name or "-", when(t.created_at), when(t.last_used_at),
              when(t.revoked_at)) for t in found]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for k, r in enumerate(rows):
        line = "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
        click.echo(click.style(line, bold=True) if k == 0 else line)


@tokens.command("revoke", context_settings=CONTEXT)
@click.argument("token_id", type=int)
@friendly
def tokens_revoke(token_id: int) -> None:
    """Revoke token TOKEN_ID (see `logalyzer tokens list`); it is refused from the next request on."""
    from .tokens import revoke_token

    with _open_db(_settings()).connect() as conn:
        t = revoke_token(conn, token_id)
    click.echo(f"revoked token {t.token_id} ({t.role}{' ' + t.rxid if t.rxid else ''}) at {t.revoked_at:%Y-%m-%d %H:%M:%S %Z}")


# --------------------------------------------------------------------------- db


@main.group(context_settings=CONTEXT)
def db() -> None:
    """Database housekeeping."""


@db.command(context_settings=CONTEXT)
@friendly
def migrate() -> None:
    """Apply the numbered SQL files in sql/ that are not applied yet."""
    from .db import migrate as apply

    settings = _settings()
    database = _open_db(settings, migrate_schema=False)
    with database.connect() as conn:
        done = apply(conn)
    click.echo(f"applied {len(done)} migration(s){': ' + ', '.join(done) if done else ' (up to date)'}")


@db.command(context_settings=CONTEXT)
@friendly
def info() -> None:
    """Where the database is, its schema version and what it holds."""
    settings = _settings()
    database = _open_db(settings)
    with database.connect() as conn:
        version = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
        parts = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'log_lines'::regclass").fetchone()[0]
        files = conn.execute("SELECT status, count(*) FROM ingested_files GROUP BY 1 ORDER BY 1").fetchall()
        lines = conn.execute("SELECT coalesce(sum(lines_loaded), 0) FROM ingested_files").fetchone()[0]
    where = "embedded PostgreSQL in " + str(settings.home / "pgdata") if database.embedded else redact_dsn(database.dsn)
    click.echo(f"database: {where}")
    click.echo(f"schema version: {version}")
    click.echo(f"devices (partitions): {parts:,}; lines loaded: {lines:,}")
    click.echo("files: " + (", ".join(f"{s} {n:,}" for s, n in files) or "none"))


def _register_ml_commands() -> None:
    """train / detect / eval / models live in :mod:`logalyzer.cli_ml` (it imports this module's
    helpers, so it is imported once they exist)."""
    from .cli_ml import COMMANDS

    for command in COMMANDS:
        main.add_command(command)


_register_ml_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
