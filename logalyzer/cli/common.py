"""What every ``logalyzer`` command shares: help options, settings, the database, and the
rule for errors: a :class:`~logalyzer.errors.LogalyzerError` is one line (``Error: ...``)
plus a hint, exit status 1 (3: some input files failed, 4: the database went away mid-run,
130: interrupted); usage errors exit with 2 (click's rule); tracebacks are for bugs.
"""

from __future__ import annotations

import sys
from functools import wraps
from pathlib import Path

import click
import psycopg

from logalyzer.core.files import is_valid_rxid
from logalyzer.core.synth.cohorts import parse_cohorts
from logalyzer.errors import DatabaseGone, InvalidIdentifier, LogalyzerError, first_line
from logalyzer.jobs import rayutil
from logalyzer.settings import Settings
from logalyzer.store.db import Database, open_database

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# Options several commands share, defined once.
progress_option = click.option(
    "--progress/--no-progress", default=None, help="Show progress (default: on a terminal)."
)
workers_option = click.option(
    "--workers",
    default=2,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="Ray Train data-parallel workers.",
)


def _check_cohorts(ctx, param, value):
    try:
        parse_cohorts(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def fleet_fault_options(reference_help: str):
    """The generator's fault options, shared by ``synth`` and ``eval synthetic`` (the same
    FleetSpec fields); ``reference_help`` says what the command does with the clean hours."""
    options = [
        click.option(
            "--system-faults",
            default=0.0,
            show_default=True,
            type=click.FloatRange(0.0, 1.0),
            help="Share of the anomalous sessions given a system-side cause (ANR burst, OOM "
            "kill, HDCP kernel errors) with its system lines; 0 keeps the fleet as before.",
        ),
        click.option(
            "--sequence-faults",
            default=0.0,
            show_default=True,
            type=click.FloatRange(0.0, 1.0),
            help="Share of the other anomalous sessions given a sequence-only fault (ordinary "
            "amounts, events in a wrong order: first_frame_late, freeze_end_without_start, "
            "playback_in_standby, tune_loop): what only the LSTM can find; 0 keeps the fleet "
            "as before.",
        ),
        click.option(
            "--reference-clean-hours",
            default=0.0,
            show_default=True,
            type=click.FloatRange(0.0, 24 * 365),
            help="No anomalous session starts in the fleet's first H hours: " + reference_help,
        ),
        click.option(
            "--cohorts",
            default=None,
            metavar="NAME:SHARE,...",
            callback=_check_cohorts,
            help="Boxes whose ordinary playback differs, each box in each cohort with the "
            "given probability: drops (10x display drops), noisy (4x every incident), long "
            "(sessions 3x as long), short (a quarter as long); e.g. drops:0.25,noisy:0.1.",
        ),
    ]

    def apply(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


def rxids_option(help: str = "Only these devices (comma-separated RxIDs)."):
    return click.option("--rxids", default=None, help=help)


def fail(message: str, hint: str = "", code: int = 1) -> None:
    click.secho(f"Error: {message}", fg="red", err=True)
    if hint:
        click.echo(f"Hint: {hint}", err=True)
    sys.exit(code)


def friendly(fn):
    """Turn named errors into one line and a hint; let real bugs show their traceback. Either
    way, when the command used Ray, say where Ray's own messages went first
    (:func:`name_ray_logs`), so that the error is the last line."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        ray_uses = rayutil.uses()
        try:
            return fn(*args, **kwargs)
        except LogalyzerError as exc:
            error = (str(exc), exc.hint, exc.exit_code)
        except psycopg.OperationalError as exc:  # the server went away between two steps
            gone = DatabaseGone(first_line(exc, with_type=False))
            error = (str(gone), gone.hint, gone.exit_code)
        except KeyboardInterrupt:
            error = ("interrupted", "re-run the same command: finished files are skipped", 130)
        finally:
            if rayutil.uses() > ray_uses:  # this command used Ray
                name_ray_logs()
        fail(*error)

    return wrapper


def name_ray_logs() -> None:
    """Say where Ray's own messages went (:func:`logalyzer.jobs.rayutil.ensure_ray` keeps them
    off the terminal)."""
    folder = rayutil.log_folder()
    if folder:
        click.echo(f"(Ray's own messages: {folder})", err=True)


def load_settings(**overrides) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except Exception as exc:  # pydantic's ValidationError: one line per bad field
        errors = getattr(exc, "errors", lambda: [])()
        msg = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors) or str(exc)
        raise LogalyzerError(
            f"bad configuration: {msg}", hint="see `logalyzer --help` for the environment variables"
        ) from exc


def open_db(settings: Settings, migrate_schema: bool = True) -> Database:
    """The configured database (embedded unless LOGALYZER_DSN), migrated unless told not to."""
    return open_database(settings, migrate_schema=migrate_schema)


def parse_rxids(rxids: str | None = None, rxids_file: str | Path | None = None) -> set[str] | None:
    """The devices to restrict the run to, from ``--rxids R1,R2`` or a file (one per line,
    ``#`` comments); None means all."""
    found: list[str] = []
    if rxids:
        found += [r.strip().upper() for r in rxids.split(",") if r.strip()]
    if rxids_file:
        for line in Path(rxids_file).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                found.append(line.upper())
    if not rxids and not rxids_file:
        return None
    bad = [r for r in found if not is_valid_rxid(r)]
    if bad:
        raise InvalidIdentifier(f"not RxIDs: {', '.join(bad[:5])}")
    return set(found)
