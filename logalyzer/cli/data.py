"""The data commands: ``logalyzer synth``, ``ingest``, ``sessionize`` and ``run`` (the
pipeline launcher), with the summaries they print."""

from __future__ import annotations

import sys
from datetime import UTC
from pathlib import Path

import click
from tqdm import tqdm

from logalyzer.cli.alerts import print_alert_rows, print_alerts_summary
from logalyzer.cli.common import (
    CONTEXT,
    fleet_fault_options,
    friendly,
    load_settings,
    open_db,
    parse_rxids,
    progress_option,
    rxids_option,
)
from logalyzer.cli.ml import print_detect_summary, print_top_anomalies, print_train_results
from logalyzer.cli.templates import print_templates_summary
from logalyzer.core.synth import FleetSpec, generate_fleet
from logalyzer.core.synth.regression import parse_regression
from logalyzer.errors import LogalyzerError
from logalyzer.store.alerts import list_alerts
from logalyzer.store.reports import fleet_overview

# --------------------------------------------------------------------------- synth


@click.command(context_settings=CONTEXT)
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--devices",
    "-n",
    default=5,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Number of boxes.",
)
@click.option(
    "--hours",
    default=4.0,
    show_default=True,
    type=click.FloatRange(0.1, 24 * 365),
    help="Hours of logs per box.",
)
@click.option(
    "--seed", default=0, show_default=True, type=int, help="Random seed (same seed, same files)."
)
@click.option(
    "--anomaly-rate",
    default=0.1,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Fraction of playback sessions made anomalous.",
)
@fleet_fault_options(
    "a known-clean reference for `train --reference-until` (printed below); 0 keeps the "
    "fleet as before."
)
@click.option(
    "--noise",
    "noise",
    default=None,
    type=click.IntRange(0, 1_000_000),
    help="Non-VAR lines per device-minute (sets the size).",
)
@click.option(
    "--tz", default=None, help="Zone the boxes write local time in (default LOGALYZER_TZ or UTC)."
)
@click.option(
    "--firmwares-per-model",
    default=None,
    type=click.IntRange(1, 31),
    help="Firmwares per model, kept by the boxes (default: 31 patch levels, updated at reboots).",
)
@click.option(
    "--regression",
    default=None,
    metavar="FW@DAY[xF]",
    help="Firmware FW has F times (4) the usual freezes on UTC day DAY of the fleet (0: first).",
)
@friendly
def synth(
    out: Path,
    devices: int,
    hours: float,
    seed: int,
    anomaly_rate: float,
    system_faults: float,
    sequence_faults: float,
    reference_clean_hours: float,
    cohorts: str | None,
    noise: int | None,
    tz: str | None,
    firmwares_per_model: int | None,
    regression: str | None,
) -> None:
    """Write a synthetic fleet of gzip logcat files and its ground truth into OUT."""
    settings = load_settings(tz=tz)
    if regression:
        try:
            parse_regression(regression)
        except ValueError as exc:
            raise LogalyzerError(str(exc), hint="e.g. --regression RTV-3.2.1@4x4") from exc
    spec = FleetSpec(
        devices=devices,
        hours=hours,
        seed=seed,
        anomaly_rate=anomaly_rate,
        tz=settings.tz,
        firmwares_per_model=firmwares_per_model,
        regression=regression,
        system_faults=system_faults,
        sequence_faults=sequence_faults,
        reference_clean_hours=reference_clean_hours,
        cohorts=cohorts,
    )
    if noise is not None:
        spec.noise_lines_per_minute = noise
    with tqdm(
        unit="B", unit_scale=True, desc="synth", disable=not sys.stderr.isatty(), file=sys.stderr
    ) as bar:
        res = generate_fleet(out, spec, progress=bar.update)
    click.echo(
        f"wrote {len(res.files)} files, {res.lines:,} lines, "
        f"{res.bytes_uncompressed / 1e6:,.1f} MB uncompressed, for {devices} devices into {out}"
    )
    click.echo(f"ground truth: {res.truth_path}")
    until = spec.reference_until()
    if until:
        click.echo(f"clean reference: logalyzer train --reference-until {until:%Y-%m-%dT%H:%M:%SZ}")


# --------------------------------------------------------------------------- ingest


@click.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--rxid", default=None, help="Device id for files whose path names none (R + 10 digits)."
)
@click.option(
    "--tz", default=None, help="The fleet's time zone for lines without an offset (default UTC)."
)
@click.option("--force", is_flag=True, help="Re-read files the ledger says are unchanged.")
@progress_option
@friendly
def ingest(
    paths: tuple[Path, ...], rxid: str | None, tz: str | None, force: bool, progress: bool | None
) -> None:
    """Load logcat files or folders (gzip or text) into PostgreSQL, in parallel on Ray.

    Re-running is safe: unchanged files are skipped and every line is stored once.
    """
    from logalyzer.jobs.ingest import ingest as run_ingest  # heavy (Ray): loaded when it runs

    settings = load_settings(tz=tz)
    db = open_db(settings)
    summary = run_ingest(
        settings,
        db,
        list(paths),
        rxid=rxid.upper() if rxid else None,
        force=force,
        progress=progress,
    )
    print_ingest_summary(summary)
    summary.raise_for_failures()


def print_ingest_summary(summary) -> None:
    """The table at the end of an ingest: files by outcome, line counts, throughput, problems."""
    rows = [
        (
            "status",
            "files",
            "lines read",
            "loaded",
            "duplicate",
            "degraded",
            "unparsed",
            "truncated",
        )
    ]
    for status in ("done", "partial", "unchanged", "failed", "refused"):
        fs = [f for f in summary.files if f.status == status]
        if fs:
            rows.append(
                (
                    status,
                    f"{len(fs):,}",
                    *(
                        f"{sum(getattr(f, a) for f in fs):,}"
                        for a in (
                            "lines_read",
                            "lines_loaded",
                            "lines_duplicate",
                            "lines_degraded",
                            "lines_unparsed",
                            "lines_truncated",
                        )
                    ),
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for k, r in enumerate(rows):
        line = "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))
        )
        click.echo(click.style(line, bold=True) if k == 0 else line)
    loaded_files = [f for f in summary.files if f.status in ("done", "partial")]
    read = sum(f.lines_read for f in loaded_files)
    mb = sum(f.bytes_text for f in loaded_files) / 1e6
    gz = sum(f.size for f in loaded_files) / 1e6
    secs = max(summary.seconds, 1e-9)
    if not loaded_files:
        click.echo(f"{len(summary.files):,} files; nothing new to load ({summary.seconds:,.1f} s)")
    else:
        click.echo(
            f"{len(summary.files):,} files; read {read:,} lines, {mb:,.1f} MB of text "
            f"({gz:,.1f} MB on disk) in {summary.seconds:,.1f} s: "
            f"{read / secs:,.0f} lines/s, {mb / secs:,.1f} MB/s"
        )
    for f in summary.files:
        if f.status in ("failed", "refused", "partial") or (f.error and f.status == "done"):
            color = {"failed": "red", "refused": "yellow", "partial": "yellow"}.get(f.status)
            click.secho(f"  {f.status}: {f.path}: {f.error}", fg=color)


# --------------------------------------------------------------------------- sessionize


@click.command(context_settings=CONTEXT)
@rxids_option()
@click.option(
    "--since",
    default=None,
    metavar="TS",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
    help="Re-analyse the devices with files loaded at or after TS (UTC; YYYY-MM-DD[THH:MM:SS]), "
    "even if up to date.",
)
@click.option("--full", is_flag=True, help="Recompute every device, not only those with new lines.")
@click.option(
    "--gap-min",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="A silence longer than this (minutes) ends a session.",
)
@progress_option
@friendly
def sessionize(rxids: str | None, since, full: bool, gap_min: float, progress: bool | None) -> None:
    """Cut playback sessions from the loaded VAR events and compute their QoE measures.

    Incremental: only devices with lines loaded since their last analysis are recomputed.
    """
    from logalyzer.jobs.sessionize import sessionize as run_sessionize  # heavy (Ray): when it runs

    settings = load_settings()
    db = open_db(settings)
    summary = run_sessionize(
        settings,
        db,
        rxids=parse_rxids(rxids),
        since=since.replace(tzinfo=UTC) if since else None,
        full=full,
        gap_s=gap_min * 60,
        progress=progress,
    )
    print_sessionize_summary(summary)
    print_fleet_overview(db)


def print_sessionize_summary(summary) -> None:
    """The lines at the end of a sessionize run: devices, sessions, rows changed, speed."""
    n = len(summary.devices)
    secs = max(summary.seconds, 1e-9)
    click.echo(
        f"analysed {n:,} device(s) ({summary.skipped:,} up to date) in {summary.seconds:,.1f} s: "
        f"{summary.total('events'):,} VAR events, {summary.total('sessions'):,} sessions "
        f"({summary.total('events') / secs:,.0f} events/s)"
    )
    click.echo(
        f"sessions inserted {summary.total('inserted'):,}, updated {summary.total('updated'):,}, "
        f"deleted {summary.total('deleted'):,}"
    )
    for rxid, error in sorted(summary.failed.items()):
        click.secho(f"  failed: {rxid}: {error} (retried next run)", fg="red")


def print_fleet_overview(db) -> None:
    """The fleet in a few lines: totals, incident rates, the worst devices."""
    o = fleet_overview(db)
    pct = lambda v: "n/a" if v is None else f"{v:.2%}"
    click.echo(
        f"fleet: {o['devices']:,} devices, {o['sessions']:,} sessions, "
        f"{o['viewing_hours']:,.1f} viewing hours; per viewing hour: black screens "
        f"{o['black_screens_per_hour']:.2f}, freezes {o['freezes_per_hour']:.2f}, display drops "
        f"{o['display_drops_per_hour']:.2f}; rebuffer ratio {pct(o['rebuffer_ratio'])}, "
        f"video-start failures {pct(o['video_start_failure_rate'])}, "
        f"HDMI disconnects {o['hdmi_disconnects']:,}"
    )
    for w in o["worst"]:
        click.echo(
            f"  worst: {w['rxid']} ({w['model'] or '?'} {w['fw'] or '?'}): "
            f"{w['incidents_per_hour']:.1f} incidents per viewing hour "
            f"over {w['sessions']:,} sessions"
        )


# --------------------------------------------------------------------------- run


@click.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--steps",
    default="ingest",
    show_default=True,
    help="Comma-separated steps, run in order: ingest,sessionize,templates,train,detect,alerts.",
)
@rxids_option()
@click.option(
    "--rxids-file",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Only the devices listed in this file (one RxID per line).",
)
@click.option("--tz", default=None, help="The fleet's time zone (default UTC).")
@progress_option
@friendly
def run(
    paths: tuple[Path, ...],
    steps: str,
    rxids: str | None,
    rxids_file: str | None,
    tz: str | None,
    progress: bool | None,
) -> None:
    """Run pipeline steps over PATHS (the launcher for bulk reprocessing)."""
    from logalyzer.jobs.pipeline import (  # heavy (Ray, torch): when it runs
        parse_steps,
        run_pipeline,
    )

    step_list = parse_steps(steps)
    if rxids and rxids_file:
        raise LogalyzerError("give --rxids or --rxids-file, not both")
    devices = parse_rxids(rxids, rxids_file)
    if "ingest" in step_list and not paths:
        raise LogalyzerError(
            "the ingest step needs PATHS", hint="logalyzer run FLEET_DIR --steps ingest"
        )
    settings = load_settings(tz=tz)
    db = open_db(settings)

    def show(step: str, result) -> None:  # as each step ends: a later one may stop the run
        if step == "ingest":
            print_ingest_summary(result)
        elif step == "sessionize":
            print_sessionize_summary(result)
            print_fleet_overview(db)
        elif step == "templates":
            print_templates_summary(result)
        elif step == "train":
            print_train_results(result)
        elif step == "alerts":
            print_alerts_summary(result)
            print_alert_rows(list_alerts(db, grain="day", since=result.first_window))
        else:
            print_detect_summary(result)
            print_top_anomalies(db, 5)

    paths_ = [str(p) for p in paths]
    results = run_pipeline(settings, db, paths_, step_list, devices, progress, on_step=show)
    if "ingest" in results:
        results["ingest"].raise_for_failures()
