"""Open every LOGalyzer dashboard in headless Chromium, check every chart's query, screenshot it.

    LOGALYZER_DSN=... superset/check.py --url http://127.0.0.1:8088 [--out docs/img]

Runs in Superset's virtual environment (bootstrap.sh installs it there, with Playwright's
Python package, which drives the system's Chromium: nothing is downloaded). What it checks is
what a user sees: it logs in through the login page, opens each dashboard, and records the
``/api/v1/chart/data`` answers the page gets: every chart of the dashboard must have
answered 200 without an error and, where the database holds such data, with rows. The
session drill-down is opened the way a user would, through the first "raw lines" link of the
anomaly table (or, without anomalies, for the session with the most freezes). Exit status 1
with one line per problem.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import psycopg2
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
# A chart must show rows when the table its dataset reads has some (flagged sessions only
# after `detect`, pushes only after one was made, alerts only after `alerts` raised one).
NEEDS = {
    "fleet_qoe": "sessions",
    "device_qoe": "sessions",
    "session_raw_lines": "sessions",
    "flagged_sessions": "anomalies_consolidated",
    "jam_pushes_overview": "jam_pushes",
    "jam_impact": "jam_pushes",
    "fleet_alerts": "alerts",
}


def db_facts(dsn: str) -> dict:
    """What the database holds, to know which charts must show rows, and a session to open."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        facts = {}
        for table, where in (
            ("sessions", "true"),
            ("anomalies_consolidated", "is_anomaly"),
            ("jam_pushes", "true"),
            ("alerts", "true"),
        ):
            cur.execute(f"SELECT count(*) FROM {table} WHERE {where}")  # fixed names, not input
            facts[table] = cur.fetchone()[0]
        cur.execute(
            "SELECT rxid, session_id::text FROM sessions"
            " ORDER BY video_freeze_count DESC, start_ts LIMIT 1"
        )
        facts["session"] = cur.fetchone()
        # a full UTC day of data (the second day of the fleet), for the window check
        cur.execute(
            "SELECT (date_trunc('day', min(start_ts), 'UTC') + interval '1 day')"
            " AT TIME ZONE 'UTC' FROM sessions"
        )
        first = cur.fetchone()[0]
        facts["day"] = first.isoformat() if first else None
    return facts


def chart_ids(page, base: str, slug: str) -> dict[int, str]:
    """The dashboard's charts, from Superset's API (with the browser's session)."""
    r = page.request.get(f"{base}/api/v1/dashboard/{slug}/charts")
    assert r.ok, f"{slug}: GET charts {r.status}"
    return {c["id"]: c["slice_name"] for c in r.json()["result"]}


def chart_datasets(page, base: str, slug: str) -> dict[int, str]:
    """Chart id → the name of the dataset it reads."""
    charts = page.request.get(f"{base}/api/v1/dashboard/{slug}/charts").json()["result"]
    names = {
        d["id"]: d["table_name"]
        for d in page.request.get(f"{base}/api/v1/dashboard/{slug}/datasets").json()["result"]
    }
    return {
        c["id"]: names.get(int(str(c["form_data"]["datasource"]).split("__")[0])) for c in charts
    }


def open_dashboard(
    page, url: str, expected: dict[int, str], timeout_s: float = 120
) -> dict[int, dict]:
    """Load the dashboard and wait until every chart's data request has been answered;
    returns {chart id: {"status": http status, "results": [...]}}."""
    answers: dict[int, dict] = {}

    def on_response(resp):
        if "/api/v1/chart/data" not in resp.url or resp.request.method != "POST":
            return
        try:
            body = json.loads(resp.request.post_data or "{}")
            slice_id = (body.get("form_data") or {}).get("slice_id")
            payload = resp.json()
        except Exception as exc:  # noqa: BLE001 - recorded as the chart's problem
            payload, slice_id = {"result": [{"error": f"unreadable answer: {exc}"}]}, None
        if slice_id is not None:
            answers[int(slice_id)] = {
                "status": resp.status,
                "results": payload.get("result", []),
                "message": payload.get("message"),
                "request": body,
            }

    page.on("response", on_response)
    try:
        page.goto(url, wait_until="domcontentloaded")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not set(expected) <= set(answers):
            page.wait_for_timeout(500)
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(2500)  # ECharts animates for about a second
    finally:
        page.remove_listener("response", on_response)
    return answers


def replay(page, base: str, request: dict, time_range: str, grain: str | None = None) -> list[dict]:
    """Send a chart's own data request again, for another time range (and granularity): the
    same chart must serve any span. Returns its results (each with rowcount and error)."""
    body = json.loads(json.dumps(request))
    for q in body["queries"]:
        q["time_range"] = time_range
        for f in q.get("filters", []):
            if f.get("op") == "TEMPORAL_RANGE":
                f["val"] = time_range
            if grain and f.get("col") == "granularity":
                f["val"] = [grain]
    csrf = page.request.get(f"{base}/api/v1/security/csrf_token/").json()["result"]
    r = page.request.post(
        f"{base}/api/v1/chart/data",
        data=json.dumps(body),
        headers={"Content-Type": "application/json", "X-CSRFToken": csrf, "Referer": base},
    )
    payload = r.json()
    if r.status != 200:
        return [{"error": f"HTTP {r.status}: {payload.get('message')}"}]
    return payload.get("result", [])


def window_problems(
    page, base: str, expected: dict[int, str], answers: dict[int, dict], day: str
) -> list[str]:
    """Every chart of the fleet dashboard again for one UTC day: no errors, rows everywhere,
    and the charts over time give 1 point per day, 24 per hour."""
    start = datetime.fromisoformat(day)
    window = f"{start:%Y-%m-%dT%H:%M:%S} : {start + timedelta(days=1):%Y-%m-%dT%H:%M:%S}"
    out = []
    for cid, name in expected.items():
        request = answers.get(cid, {}).get("request")
        if not request:
            continue
        over_time = request["form_data"].get("x_axis") == "period"
        for grain, points in (("day", 1), ("hour", 24)) if over_time else ((None, None),):
            for res in replay(page, base, request, window, grain):
                if res.get("error"):
                    out.append(f"window {window}, {grain}: chart {name!r}: {res['error']}")
                elif not res.get("rowcount"):
                    out.append(f"window {window}, {grain}: chart {name!r}: no rows")
                elif points and res["rowcount"] != points:
                    out.append(
                        f"window {window}, {grain}: chart {name!r}:"
                        f" {res['rowcount']} points, not {points}"
                    )
    return out


def problems_of(
    slug: str, expected: dict[int, str], answers: dict[int, dict], needs_rows: set[int]
) -> list[str]:
    out = []
    for cid, name in expected.items():
        must_have_rows = cid in needs_rows
        a = answers.get(cid)
        if a is None:
            out.append(f"{slug}: chart {name!r} sent no data request")
            continue
        if a["status"] != 200:
            out.append(
                f"{slug}: chart {name!r}: HTTP {a['status']} {a.get('message') or a['results']}"
            )
            continue
        for res in a["results"]:
            if res.get("error") or res.get("status") == "failed":
                out.append(f"{slug}: chart {name!r}: {res.get('error')}")
            elif must_have_rows and not res.get("rowcount"):
                out.append(f"{slug}: chart {name!r}: no rows")
    return out


class LoginFailed(RuntimeError):
    """The login page did not let the admin in."""


def login(page, url: str, password: str, out: Path, attempts: int = 3) -> None:
    """Sign in through the login page as a user would, up to ``attempts`` times.

    Why more than once: the login page is rendered by React; on a loaded machine (CI runs this
    right after the test suite) the form can be filled before the page's scripts take it over,
    which empties the fields again, and the click then submits nothing and the page stays on
    /login (seen in CI: a 60 s wait that ended in a bare TimeoutError). Each attempt waits for
    the page to settle, checks that the fields hold what was typed, and gives up after 30 s;
    the last failure says what the page showed and keeps a screenshot of it."""
    for attempt in range(1, attempts + 1):
        page.goto(f"{url}/login/")
        page.wait_for_load_state("networkidle", timeout=60_000)
        page.fill("#username", "admin")
        page.fill("#password", password)
        if page.input_value("#username") != "admin" or page.input_value("#password") != password:
            print(f"   login attempt {attempt}: the form was reset while loading, again")
            continue
        page.click("button:has-text('Sign in')")
        try:
            page.wait_for_url(lambda u: "/login" not in u, timeout=30_000)
            return
        except PlaywrightTimeout:
            print(f"   login attempt {attempt}: still on {page.url} after 30 s")
    shot = out / "login-failed.png"
    page.screenshot(path=str(shot), full_page=True)
    text = " ".join(page.inner_text("body").split())[:300]
    raise LoginFailed(
        f"could not sign in as admin after {attempts} attempts; the page at {page.url}"
        f" showed: {text!r} (screenshot: {shot})"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8088", help="Superset's address")
    ap.add_argument("--out", type=Path, default=Path("docs/img"), help="where the screenshots go")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = ap.parse_args(argv)
    home = Path(os.environ.get("LOGALYZER_SUPERSET_HOME", "out/superset"))
    password = (home / "admin_password").read_text().strip()
    facts = db_facts(os.environ["LOGALYZER_DSN"])
    args.out.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    report = []
    with sync_playwright() as p, tempfile.TemporaryDirectory(prefix="lgz-chromium-") as profile:
        ctx = p.chromium.launch_persistent_context(
            profile,
            executable_path=args.chromium,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1600, "height": 1400},
        )
        page = ctx.new_page()
        try:
            login(page, args.url, password, args.out)
        except LoginFailed as exc:
            print(f"Error: {exc}", file=sys.stderr)
            print(
                "Hint: see the server's log in $LOGALYZER_SUPERSET_HOME/server.log", file=sys.stderr
            )
            return 1

        link = None
        for slug in ("logalyzer-fleet", "logalyzer-anomalies", "logalyzer-session"):
            expected = chart_ids(page, args.url, slug)
            url = f"{args.url}/superset/dashboard/{slug}/"
            if slug == "logalyzer-session":
                if link:
                    url = link if link.startswith("http") else args.url + link
                elif facts["session"]:
                    rxid, sid = facts["session"]
                    url += f"?rxid={rxid}&session_id={sid}"
            started = time.monotonic()
            answers = open_dashboard(page, url, expected)
            seconds = time.monotonic() - started
            datasets = chart_datasets(page, args.url, slug)
            needs_rows = {c for c, d in datasets.items() if facts.get(NEEDS.get(d, ""), 0) > 0}
            problems += problems_of(slug, expected, answers, needs_rows)
            if slug == "logalyzer-fleet" and facts["day"]:
                problems += window_problems(page, args.url, expected, answers, facts["day"])
            if slug == "logalyzer-anomalies":
                a = page.query_selector("a[href*='/superset/dashboard/logalyzer-session/']")
                link = a.get_attribute("href") if a else None
                if facts["anomalies_consolidated"] and not link:
                    problems.append(f"{slug}: no 'raw lines' link in the anomaly table")
            shot = args.out / f"{slug}.png"
            page.screenshot(path=str(shot), full_page=True)
            rows = {
                expected[c]: sum(r.get("rowcount") or 0 for r in a["results"])
                for c, a in answers.items()
                if c in expected
            }
            report.append((slug, len(expected), seconds, shot, rows))
        ctx.close()
    for slug, n, seconds, shot, rows in report:
        print(f"{slug}: {n} charts in {seconds:.1f} s -> {shot}")
        for name, count in rows.items():
            print(f"    {count:>7} rows  {name}")
    for line in problems:
        print(f"PROBLEM {line}", file=sys.stderr)
    print(
        f"{'FAILED' if problems else 'OK'}: {len(report)} dashboards,"
        f" {sum(r[1] for r in report)} charts,"
        f" {len(problems)} problems"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
