"""Fleet alerts (README, "Alerts"): the statistical rule, the alerts table (idempotent re-runs,
resolution), the command's output and exit codes, the webhook's retries against a real local
receiver, and a synthetic fleet whose firmware regresses on one day, end to end."""

from __future__ import annotations

import json
import threading
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import psycopg
import pytest
from click.testing import CliRunner

from logalyzer.cli import main
from logalyzer.core.alerts import Rule, Sums, judge
from logalyzer.core.synth import FleetSpec, generate_fleet
from logalyzer.core.synth.fleet import firmware_boxes
from logalyzer.jobs.alerts import check_alerts
from logalyzer.jobs.pipeline import run_pipeline
from logalyzer.jobs.webhook import post_json
from logalyzer.store.alerts import list_alerts

from .helpers import query

DAY0 = datetime(2024, 3, 10, tzinfo=UTC)
SESSION_H = 0.75  # every hand-made session lasts 45 minutes
FREEZES_PER_H = 0.5

# --------------------------------------------------------------------------- the rule, pure


def poisson_sums(rng, sessions: int, rate_per_h: float, storms: float = 0.0) -> Sums:
    """Sums of ``sessions`` 45-minute sessions with Poisson incidents, a share ``storms`` of
    them carrying 10-25 extra incidents (the clustering that breaks a plain Poisson test)."""
    y = rng.poisson(rate_per_h * SESSION_H, sessions).astype(float)
    y += (rng.random(sessions) < storms) * rng.integers(10, 26, sessions)
    x = np.full(sessions, SESSION_H)
    return Sums(sessions, y.sum(), x.sum(), (y * y).sum(), (y * x).sum(), (x * x).sum())


def test_the_rule_fires_on_a_big_jump_but_not_on_a_small_cohort_nor_on_noise():
    rng, rule = np.random.default_rng(1), Rule()
    base = poisson_sums(rng, 7 * 96, FREEZES_PER_H)  # a week of 4 boxes x 24 sessions a day
    hours = lambda s: s.den  # noqa: E731
    jump = poisson_sums(rng, 96, 4 * FREEZES_PER_H)
    v = judge("freezes_per_hour", jump, hours(jump), base, hours(base), 7, rule)
    assert v.checked and v.fires and v.severity in ("warning", "critical")
    assert v.p_value < 1e-6 and v.ratio > 3
    # the same jump on a box with 8 sessions (6 viewing hours) is not judged at all
    small = poisson_sums(rng, 8, 6 * FREEZES_PER_H)
    v = judge("freezes_per_hour", small, hours(small), base, hours(base), 7, rule)
    assert not v.checked and not v.fires and "small window" in v.reason
    # a short baseline is not judged either
    v = judge("freezes_per_hour", jump, hours(jump), base, hours(base), 2, rule)
    assert not v.checked and "short baseline" in v.reason
    # ordinary days, with freeze storms in 2 % of the sessions: no alert in 300 windows, where a
    # plain Poisson test (variance = expected count) fires on many of them
    fired = poisson_fired = 0
    for _ in range(300):
        base = poisson_sums(rng, 7 * 96, FREEZES_PER_H, storms=0.02)
        day = poisson_sums(rng, 96, FREEZES_PER_H, storms=0.02)
        v = judge("freezes_per_hour", day, hours(day), base, hours(base), 7, rule)
        fired += v.fires
        expected = base.num / base.den * day.den
        poisson_fired += (day.num - expected) / np.sqrt(expected) > 3.09  # one-sided 0.001
    assert fired == 0
    assert poisson_fired >= 10


def test_a_quiet_baseline_and_huge_cohorts_do_not_alert_on_tiny_amounts():
    rule = Rule()
    quiet = Sums(n=700, num=0, den=700)  # no start failure in a week of 700 sessions
    one = Sums(n=100, num=1, den=100, num2=1, numden=1, den2=100)
    v = judge("video_start_failure_rate", one, 75, quiet, 525, 7, rule)
    assert v.checked and not v.fires and v.ratio is None  # one failure after a quiet week
    # a million viewing hours a day, 5 % more freezes: significant, but under the 1.5x rule
    rng = np.random.default_rng(2)
    base = poisson_sums(rng, 7 * 1_000_000, FREEZES_PER_H)
    day = poisson_sums(rng, 1_000_000, 1.05 * FREEZES_PER_H)
    v = judge("freezes_per_hour", day, day.den, base, base.den, 7, rule)
    assert v.checked and v.p_value < 1e-6 and not v.fires


# --------------------------------------------------------------------------- hand-made sessions


def add_sessions(dsn: str, cohorts: dict, days: range, regress: dict, seed: int, storms=0.0):
    """24 sessions of 45 minutes a box and day. ``cohorts``: fw -> (model, boxes, sessions a
    day); ``regress``: (fw, day) -> factor on the freeze rate."""
    rng = np.random.default_rng(seed)
    rows = []
    for fw, (model, boxes, per_day) in cohorts.items():
        for b in range(boxes):
            rxid = f"R{zlib.crc32(f'{fw}-{b}'.encode()):010d}"
            for d in days:
                lam = FREEZES_PER_H * SESSION_H * regress.get((fw, d), 1.0)
                for k in range(per_day):
                    start = DAY0 + timedelta(days=d, minutes=k * 55 + b)
                    storm = rng.random() < storms
                    rows.append(
                        (
                            rxid,
                            uuid.uuid4(),
                            f"ch{k}",
                            start,
                            start + timedelta(hours=SESSION_H),
                            SESSION_H * 3600,
                            int(rng.poisson(lam)) + (15 if storm else 0),
                            int(rng.poisson(0.3)),
                            int(rng.poisson(1.0)),
                            int(rng.integers(0, 3000)),
                            bool(rng.random() < 0.01),
                            model,
                            fw,
                        )
                    )
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY sessions (rxid, session_id, content_id, start_ts, end_ts, duration_s,"
            " video_freeze_count, black_screen_count, display_drop_count, rebuffer_ms,"
            " video_start_failure, model, fw) FROM STDIN"
        ) as cp:
            for r in rows:
                cp.write_row(r)


#: model A runs firmwares A1 and A2, model B firmware B1; C1 is one box watching 3 h a day
COHORTS = {"A1": ("A", 3, 24), "A2": ("A", 3, 24), "B1": ("B", 3, 24), "C1": ("C", 1, 4)}
REGRESSION = {("A1", 7): 4.0, ("C1", 7): 10.0}


def keys(db) -> set[tuple]:
    return {
        (a["cohort_kind"], a["cohort"], a["measure"], a["window_start"].date())
        for a in list_alerts(db)
    }


def test_a_regressed_firmware_raises_exactly_its_alert_once(db, settings):
    add_sessions(db.dsn, COHORTS, range(8), REGRESSION, seed=3)
    s = check_alerts(settings, db, since=DAY0, notify=False)
    assert s.windows == 8 and s.checked > 0 and s.too_small > 0
    # A1's freezes on day 7; not model A (A1 explains it), not the one-box cohort C1
    assert keys(db) == {("fw", "A1", "freezes_per_hour", (DAY0 + timedelta(days=7)).date())}
    (alert,) = list_alerts(db)
    assert alert["baseline_windows"] == 7 and alert["ratio"] > 2 and alert["resolved_at"] is None
    # the value is qoe_daily's rate: one formula
    daily = query(
        db.dsn,
        "SELECT freezes_per_hour FROM qoe_daily WHERE fw = 'A1' AND day = %s",
        (alert["window_start"].date(),),
    )[0][0]
    assert alert["value"] == pytest.approx(daily)
    first_seen = alert["first_seen_at"]
    # the same check again: the same one row, first seen unchanged
    again = check_alerts(settings, db, since=DAY0, notify=False)
    assert (again.new, again.updated) == (0, 1)
    assert query(db.dsn, "SELECT count(*), min(first_seen_at) FROM alerts")[0] == (1, first_seen)


def test_a_calm_day_resolves_the_alert_and_a_rerun_keeps_the_resolution(db, settings):
    add_sessions(db.dsn, COHORTS, range(8), REGRESSION, seed=3)
    check_alerts(settings, db, since=DAY0, notify=False)
    add_sessions(db.dsn, COHORTS, range(8, 9), {}, seed=4)
    s = check_alerts(settings, db, notify=False)  # the last three days
    assert s.resolved == 1 and s.firing == 1  # day 7 is still a firing window, now resolved
    (alert,) = list_alerts(db)
    resolved = alert["resolved_at"]
    assert resolved is not None
    check_alerts(settings, db, notify=False)
    assert list_alerts(db)[0]["resolved_at"] == resolved
    assert query(db.dsn, "SELECT count(*) FROM alerts")[0][0] == 1


def test_a_noisy_fleet_without_regression_raises_nothing(db, settings):
    for seed in range(3):
        add_sessions(db.dsn, COHORTS, range(8), {}, seed=10 + seed, storms=0.02)
        s = check_alerts(settings, db, since=DAY0, notify=False)
        assert s.firing == 0 and s.checked > 100, seed
        query(db.dsn, "DELETE FROM sessions RETURNING 1")


def test_anomalous_share_is_judged_only_where_detectors_scored(db, settings):
    add_sessions(db.dsn, COHORTS, range(8), {}, seed=5)
    s = check_alerts(settings, db, since=DAY0, notify=False)
    unscored = s.checked
    # the detectors scored every session; on day 7 a third of A2's are anomalous
    query(
        db.dsn,
        "WITH x AS (INSERT INTO anomalies (rxid, session_id, detector, model_version, score,"
        " threshold, is_anomaly) SELECT rxid, session_id, 'ae', 1, 0, 1, false FROM sessions"
        " RETURNING 1) SELECT count(*) FROM x",
    )
    query(
        db.dsn,
        "WITH x AS (INSERT INTO anomalies_consolidated (rxid, session_id, start_ts, is_anomaly)"
        " SELECT rxid, session_id, start_ts, true FROM sessions WHERE fw = 'A2'"
        " AND start_ts >= %s AND abs(hashtext(session_id::text)) %% 3 = 0 RETURNING 1)"
        " SELECT count(*) FROM x",
        (DAY0 + timedelta(days=7),),
    )
    s = check_alerts(settings, db, since=DAY0, notify=False)
    assert s.checked > unscored
    assert ("fw", "A2", "anomalous_share", (DAY0 + timedelta(days=7)).date()) in keys(db)


# --------------------------------------------------------------------------- the command


@pytest.fixture()
def cli_env(db, monkeypatch):
    monkeypatch.setenv("LOGALYZER_DSN", db.dsn)
    monkeypatch.delenv("LOGALYZER_ALERT_WEBHOOK", raising=False)
    return db


def test_the_command_prints_and_exits(cli_env):
    r = CliRunner().invoke(main, ["alerts"])
    assert r.exit_code == 1 and "Error: no sessions to check" in r.output
    assert "Hint: cut sessions first" in r.output
    r = CliRunner().invoke(main, ["alerts", "--grain", "week"])
    assert r.exit_code == 2
    add_sessions(cli_env.dsn, COHORTS, range(8), REGRESSION, seed=3)
    r = CliRunner().invoke(main, ["alerts", "--since", "2024-03-10"])
    assert r.exit_code == 0, r.output
    assert "checked 8 day window(s) 2024-03-10 .. 2024-03-17 UTC" in r.output
    assert "1 alert(s):" in r.output
    assert "fw A1: freezes_per_hour 2024-03-17:" in r.output and "[open]" in r.output
    r = CliRunner().invoke(main, ["alerts", "--json"])  # the last three days
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["summary"]["windows"] == 3 and out["summary"]["new"] == 0
    (a,) = out["alerts"]
    assert (a["cohort_kind"], a["cohort"], a["measure"]) == ("fw", "A1", "freezes_per_hour")
    assert a["window_start"].startswith("2024-03-17") and a["severity"] in ("warning", "critical")
    r = CliRunner().invoke(main, ["alerts", "--grain", "hour", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["summary"]["windows"] == 3


# --------------------------------------------------------------------------- the webhook


class Receiver:
    """A local HTTP receiver that answers ``fail`` status codes first, then 200."""

    def __init__(self, fail: list[int]):
        self.fail, self.bodies = list(fail), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.bodies.append(json.loads(body))
                code = outer.fail.pop(0) if outer.fail else 200
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver():
    made = []

    def make(fail=()):
        made.append(Receiver(list(fail)))
        return made[-1]

    yield make
    for r in made:
        r.close()


def hooked(settings, url, retries=3):
    return settings.model_copy(
        update={
            "alert_webhook": url,
            "alert_webhook_retries": retries,
            "alert_webhook_backoff_s": 0,
        }
    )


def test_the_webhook_retries_until_delivered_and_never_sends_twice(db, settings, receiver):
    add_sessions(db.dsn, COHORTS, range(8), REGRESSION, seed=3)
    rx = receiver(fail=[503, 502])
    s = check_alerts(hooked(settings, rx.url), db, since=DAY0)
    assert (s.notify_attempts, s.notified, s.notify_failed) == (3, 1, 0)
    assert len(rx.bodies) == 3 and rx.bodies[0] == rx.bodies[2]
    (sent,) = rx.bodies[-1]["alerts"]
    assert (sent["cohort"], sent["measure"], sent["status"]) == ("A1", "freezes_per_hour", "firing")
    assert list_alerts(db)[0]["notified_at"] is not None
    check_alerts(hooked(settings, rx.url), db, since=DAY0)  # nothing new: nothing sent
    assert len(rx.bodies) == 3
    add_sessions(db.dsn, COHORTS, range(8, 9), {}, seed=4)  # a calm day: the resolution
    check_alerts(hooked(settings, rx.url), db)
    assert len(rx.bodies) == 4 and rx.bodies[-1]["alerts"] == []
    assert rx.bodies[-1]["resolved"][0]["status"] == "resolved"


def test_a_failing_webhook_is_counted_and_retried_by_the_next_check(db, settings, receiver):
    add_sessions(db.dsn, COHORTS, range(8), REGRESSION, seed=3)
    down = receiver(fail=[500] * 10)
    s = check_alerts(hooked(settings, down.url, retries=2), db, since=DAY0)
    assert (s.notify_attempts, s.notified, s.notify_failed) == (3, 0, 1)
    assert "HTTP 500" in s.notify_error and list_alerts(db)[0]["notified_at"] is None
    refused = receiver(fail=[400])  # the receiver refuses the body: no retry
    s = check_alerts(hooked(settings, refused.url), db, since=DAY0)
    assert (s.notify_attempts, s.notify_failed) == (1, 1) and len(refused.bodies) == 1
    up = receiver()
    s = check_alerts(hooked(settings, up.url), db, since=DAY0)
    assert s.notified == 1 and len(up.bodies) == 1


def test_post_json_retries_connection_errors_with_backoff():
    waits = []
    closed = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    url = f"http://127.0.0.1:{closed.server_address[1]}/"
    closed.server_close()  # nothing listens there any more
    d = post_json(url, {"x": 1}, retries=3, timeout_s=2, backoff_s=0.5, sleep=waits.append)
    assert not d.ok and d.attempts == 4 and d.status is None and d.error
    assert waits == [0.5, 1.0, 2.0]


def test_the_alerts_step_runs_in_the_pipeline_and_the_cli_reports_a_failed_webhook(
    cli_env, receiver, monkeypatch
):
    add_sessions(cli_env.dsn, COHORTS, range(8), REGRESSION, seed=3)
    down = receiver(fail=[503] * 10)
    monkeypatch.setenv("LOGALYZER_ALERT_WEBHOOK", down.url)
    monkeypatch.setenv("LOGALYZER_ALERT_WEBHOOK_RETRIES", "1")
    monkeypatch.setenv("LOGALYZER_ALERT_WEBHOOK_BACKOFF_S", "0")
    r = CliRunner().invoke(main, ["run", "--steps", "alerts"])
    assert r.exit_code == 0, r.output
    assert "webhook failed after 2 attempt(s): HTTP 503" in r.output
    assert "fw A1: freezes_per_hour 2024-03-17" in r.output


# --------------------------------------------------------------------------- end to end


def test_a_synthetic_fleet_whose_firmware_regresses_raises_that_alert(
    db, settings, ray_local, tmp_path
):
    """Through the real ingest and sessionize: 8 boxes, one firmware per model, 5 days; the
    firmware of the most boxes has 5x the freezes on the last full day."""
    spec = FleetSpec(
        devices=8, hours=120, seed=2, anomaly_rate=0.0, noise_lines_per_minute=0,
        firmwares_per_model=1,
    )  # fmt: skip
    fw = max(firmware_boxes(spec).items(), key=lambda kv: (kv[1], kv[0]))[0]
    spec.regression = f"{fw}@4x5"
    generate_fleet(tmp_path / "fleet", spec)
    run_pipeline(settings, db, [str(tmp_path / "fleet")], ["ingest", "sessionize", "alerts"])
    check_alerts(settings, db, since=spec.start, notify=False)
    assert keys(db) == {("fw", fw, "freezes_per_hour", datetime(2024, 3, 21).date())}
