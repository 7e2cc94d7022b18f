"""The fleet alerts command: ``logalyzer alerts`` (README, "Alerts")."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC

import click

from logalyzer.cli.common import CONTEXT, friendly, load_settings, open_db
from logalyzer.store.alerts import list_alerts


@click.command(context_settings=CONTEXT)
@click.option(
    "--since",
    default=None,
    metavar="TS",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M"]),
    help="Check every window from the one holding TS (UTC) on, and list the alerts from it "
    "(default: the last three windows with sessions).",
)
@click.option(
    "--grain",
    default="day",
    show_default=True,
    type=click.Choice(["hour", "day"]),
    help="Window length (UTC-aligned); the baseline is the previous 7 days or 24 hours.",
)
@click.option(
    "--no-notify",
    is_flag=True,
    help="Do not POST to LOGALYZER_ALERT_WEBHOOK this time (unsent alerts wait for the next).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary and alerts as JSON.")
@friendly
def alerts(since, grain: str, no_notify: bool, as_json: bool) -> None:
    """Check each QoE rate per firmware and per model against the cohort's trailing baseline.

    Stores firing windows in the alerts table, resolves those a later calm window answers,
    POSTs new and resolved alerts to LOGALYZER_ALERT_WEBHOOK, and lists the alerts of the
    checked windows. Exit status 0 whether or not alerts fire (a webhook that fails is
    reported, not fatal).
    """
    from logalyzer.jobs.alerts import check_alerts  # the job: loaded when it runs

    settings = load_settings()
    db = open_db(settings)
    since = since.replace(tzinfo=UTC) if since else None
    summary = check_alerts(settings, db, grain=grain, since=since, notify=not no_notify)
    rows = list_alerts(db, grain=grain, since=summary.first_window)
    if as_json:
        click.echo(json.dumps({"summary": asdict(summary), "alerts": rows}, default=str, indent=2))
        return
    print_alerts_summary(summary)
    print_alert_rows(rows)


def print_alerts_summary(s) -> None:
    if not s.windows:
        click.echo("no windows to check")
        return
    fmt = "%Y-%m-%d" if s.grain == "day" else "%Y-%m-%d %H:00"
    click.echo(
        f"checked {s.windows} {s.grain} window(s) {s.first_window:{fmt}} .. "
        f"{s.last_window:{fmt}} UTC: {s.checked:,} cohort x measure checks "
        f"({s.too_small:,} too small to judge); firing {s.firing} (new {s.new}, "
        f"again {s.updated}), resolved {s.resolved} ({s.seconds:,.1f} s)"
    )
    if s.webhook and s.notify_failed:
        click.secho(
            f"webhook failed after {s.notify_attempts} attempt(s): {s.notify_error}; "
            f"{s.notify_failed} alert(s) will be sent by the next check",
            fg="red",
        )
    elif s.webhook and s.notified:
        click.echo(f"webhook: sent {s.notified} alert(s) in {s.notify_attempts} attempt(s)")


def describe_alert(r: dict) -> str:
    share = r["measure"] in ("rebuffer_ratio", "video_start_failure_rate", "anomalous_share")
    num = (lambda v: f"{v:.2%}") if share else (lambda v: f"{v:.3g}")
    fmt = "%Y-%m-%d" if r["grain"] == "day" else "%Y-%m-%d %H:00"
    times = f"x{r['ratio']:.1f}" if r["ratio"] else "from 0"
    state = f"resolved {r['resolved_at']:%Y-%m-%d %H:%M}" if r["resolved_at"] else "open"
    return (
        f"{r['severity']:8} {r['cohort_kind']} {r['cohort']}: {r['measure']} "
        f"{r['window_start']:{fmt}}: {num(r['value'])} vs {num(r['baseline'])} baseline "
        f"({times}, p {r['p_value']:.1g}; {r['viewing_hours']:,.1f} viewing hours, "
        f"{r['sessions']:,} sessions) [{state}]"
    )


def print_alert_rows(rows: list[dict]) -> None:
    if not rows:
        click.echo("no alerts")
        return
    click.echo(f"{len(rows)} alert(s):")
    for r in rows:
        color = "red" if r["severity"] == "critical" and not r["resolved_at"] else None
        click.secho(f"  {describe_alert(r)}", fg=color)
