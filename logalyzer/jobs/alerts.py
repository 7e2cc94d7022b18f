"""The alerts job (``logalyzer alerts``, the ``alerts`` step of ``logalyzer run``): judge each
QoE measure of each firmware and model cohort in UTC hour or day windows against the cohort's
own trailing baseline, store the firing windows in ``alerts``, resolve those a later calm
window answers, and POST what is new to ``LOGALYZER_ALERT_WEBHOOK``.

No Ray here: the work is one SQL aggregation (``alert_cells``, a few rows per cohort and
window) and arithmetic on it; a cluster would only add its start-up time. The rule is
:mod:`logalyzer.core.alerts`, the SQL :mod:`logalyzer.store.alerts`, the POST
:mod:`logalyzer.jobs.webhook`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from logalyzer.core.alerts import GRAINS, Rule, evaluate, window_start, windows
from logalyzer.errors import LogalyzerError
from logalyzer.jobs.webhook import post_json
from logalyzer.settings import Settings
from logalyzer.store.alerts import (
    Firing,
    mark_notified,
    read_cells,
    save_alerts,
    session_span,
    to_notify,
)
from logalyzer.store.db import Database


class NoSessions(LogalyzerError):
    hint = "cut sessions first: logalyzer sessionize (or logalyzer run --steps ...,sessionize)"


@dataclass
class AlertSummary:
    grain: str
    first_window: datetime | None = None
    last_window: datetime | None = None
    windows: int = 0
    checked: int = 0  # cohort x measure x window judged
    too_small: int = 0  # not judged: small cohort or short baseline
    firing: int = 0
    new: int = 0
    updated: int = 0
    resolved: int = 0
    webhook: bool = False
    notified: int = 0  # alerts (new or resolved) the webhook accepted
    notify_failed: int = 0  # alerts it did not (sent again by the next check)
    notify_attempts: int = 0
    notify_error: str = ""
    seconds: float = 0.0


def rule_from(settings: Settings) -> Rule:
    return Rule(
        alpha=settings.alert_alpha,
        min_ratio=settings.alert_min_ratio,
        min_hours=settings.alert_min_hours,
        min_sessions=settings.alert_min_sessions,
    )


def baseline_windows(settings: Settings, grain: str) -> int:
    return settings.alert_baseline_days if grain == "day" else settings.alert_baseline_hours


def check_alerts(
    settings: Settings,
    db: Database,
    grain: str = "day",
    since: datetime | None = None,
    notify: bool = True,
) -> AlertSummary:
    """Check every window from the one holding ``since`` (default: the last three windows
    with sessions, the latest possibly still filling) to the latest session's."""
    t0 = time.perf_counter()
    if grain not in GRAINS:
        raise LogalyzerError(f"unknown grain {grain!r}", hint="grains are: hour, day")
    span = session_span(db)
    if span is None:
        raise NoSessions("no sessions to check")
    step, k = GRAINS[grain], baseline_windows(settings, grain)
    last = window_start(span[1], grain)
    first = window_start(since.astimezone(UTC), grain) if since else last - 2 * step
    summary = AlertSummary(grain, first, last)
    starts = windows(first, last, grain)
    summary.windows = len(starts)
    if starts:
        cells = read_cells(db, grain, first - k * step, last + step)
        decisions = evaluate(cells, starts, grain, k, rule_from(settings))
        calm: dict[tuple[str, str, str], datetime] = {}
        for d in decisions:
            summary.checked += d.verdict.checked
            summary.too_small += not d.verdict.checked
            if d.verdict.calm:
                key = (d.cohort_kind, d.cohort, d.measure)
                calm[key] = max(calm.get(key, d.window_start), d.window_start)
        firing = [
            Firing(
                grain,
                d.cohort_kind,
                d.cohort,
                d.measure,
                d.window_start,
                d.window_start + step,
                d.verdict.value,
                d.verdict.baseline,
                d.verdict.ratio,
                d.verdict.p_value,
                d.verdict.severity,
                d.sessions,
                d.viewing_hours,
                d.baseline_windows,
                d.detail(),
                resolve=calm.get((d.cohort_kind, d.cohort, d.measure), d.window_start)
                > d.window_start,
            )
            for d in decisions
            if d.verdict.fires
        ]
        summary.firing = len(firing)
        counts = save_alerts(db, grain, firing, calm)
        summary.new, summary.updated, summary.resolved = (
            counts["new"],
            counts["updated"],
            counts["resolved"],
        )
    if notify and settings.alert_webhook:
        notify_webhook(settings, db, summary)
    summary.seconds = time.perf_counter() - t0
    return summary


def notify_webhook(settings: Settings, db: Database, summary: AlertSummary) -> None:
    """POST the alerts not yet sent and the resolutions not yet sent, in one body:
    ``{"source": "logalyzer", "sent_at": ..., "alerts": [...], "resolved": [...]}``. Marked
    sent only once the receiver answers 2xx; a failure is counted in ``summary``, never
    raised."""
    summary.webhook = True
    new, resolved = to_notify(db)
    if not new and not resolved:
        return
    for row in new + resolved:
        row["status"] = "resolved" if row["resolved_at"] else "firing"
    delivery = post_json(
        settings.alert_webhook,
        {
            "source": "logalyzer",
            "sent_at": datetime.now(UTC),
            "alerts": new,
            "resolved": resolved,
        },
        retries=settings.alert_webhook_retries,
        timeout_s=settings.alert_webhook_timeout_s,
        backoff_s=settings.alert_webhook_backoff_s,
    )
    summary.notify_attempts = delivery.attempts
    if delivery.ok:
        mark_notified(db, new, resolved)
        summary.notified = len(new) + len(resolved)
    else:
        summary.notify_failed = len(new) + len(resolved)
        summary.notify_error = delivery.error
