"""``logalyzer templates``: mine the system lines' templates and count them per session."""

from __future__ import annotations

import click

from logalyzer.cli.common import (
    CONTEXT,
    friendly,
    load_settings,
    open_db,
    parse_rxids,
    progress_option,
    rxids_option,
)


@click.command(context_settings=CONTEXT)
@rxids_option()
@click.option(
    "--sample",
    default=50_000,
    show_default=True,
    type=click.IntRange(100, 10_000_000),
    help="Lines per model/firmware cohort to mine templates from (a random sample of its "
    "boxes' non-VAR lines).",
)
@click.option("--full", is_flag=True, help="Recount every device, not only those re-sessionized.")
@click.option(
    "--remine",
    is_flag=True,
    help="Forget the cohorts' miners and templates and mine them again (then recount).",
)
@progress_option
@friendly
def templates(
    rxids: str | None, sample: int, full: bool, remine: bool, progress: bool | None
) -> None:
    """Mine templates of the system (non-VAR) lines and count them in each session's window.

    Each model/firmware cohort gets a Drain3 miner, mined once from a sample and kept in
    PostgreSQL; then the lines inside every session's window (start to end) are matched to
    templates and counted into session_templates. Incremental: only devices whose sessions
    changed since their last count. Run after sessionize; detect names the templates that
    are unusually frequent in an anomalous session among its reasons.
    """
    from logalyzer.jobs.templates import templates as run_templates  # heavy (Ray): when it runs

    settings = load_settings()
    db = open_db(settings)
    summary = run_templates(
        settings,
        db,
        rxids=parse_rxids(rxids),
        sample=sample,
        full=full,
        remine=remine,
        progress=progress,
    )
    print_templates_summary(summary)


def print_templates_summary(summary) -> None:
    """The lines at the end of a templates run: cohorts mined, devices counted, speed."""
    for cohort, m in sorted(summary.mined.items()):
        click.echo(f"mined {cohort}: {m['templates']:,} templates from {m['lines']:,} lines")
    secs = max(summary.count_s, 1e-9)
    click.echo(
        f"counted {summary.devices:,} device(s) ({summary.skipped:,} up to date) in "
        f"{summary.seconds:,.1f} s (mining {summary.mine_s:,.1f} s): {summary.lines:,} lines "
        f"in session windows ({summary.lines / secs:,.0f} lines/s), "
        f"{summary.rows:,} session_templates rows, {summary.learnt:,} new keys learnt; "
        f"{summary.unusual:,} session(s) with changed unusual system lines"
    )
    for rxid, error in sorted(summary.failed.items()):
        click.secho(f"  failed: {rxid}: {error} (retried next run)", fg="red")
