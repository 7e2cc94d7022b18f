"""The session analyser: the pure core on hand-written events, then the job end to end (real
PostgreSQL, real local Ray) against the synthetic generator's ground truth, edge case by edge
case, plus idempotency, incremental runs, the views and the CLI."""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import UTC, datetime

import psycopg
import pytest
from click.testing import CliRunner

from logalyzer.cli import main
from logalyzer.core.sessions import Event
from logalyzer.core.sessions import sessionize as pure_sessionize
from logalyzer.core.synth import FleetSpec, generate_fleet
from logalyzer.jobs.ingest import ingest
from logalyzer.jobs.sessionize import plan, sessionize

from .helpers import compare, query

UTC = UTC
T0 = 1_710_662_400_000  # 2024-03-17T08:00:00Z in ms

# --------------------------------------------------------------------------- pure core


def ev(dt_s: float, etype: str, seq: int, **kw) -> Event:
    return Event(T0 + int(dt_s * 1000), seq, etype, **kw)


def test_change_content_cuts_and_is_not_counted_in_the_ended_session():
    rows = pure_sessionize(
        "R1234567890",
        [
            ev(0, "ChangeContent", 1, cid="a", src="live"),
            ev(1, "FirstFrame", 2, ttff_ms=900),
            ev(60, "ChangeContent", 3, cid="b", src="vod"),
            ev(62, "FirstFrame", 4),  # no ttff_ms: time from the session start
        ],
    )
    assert [
        (r["content_id"], r["source"], r["event_count"], r["duration_s"], r["ttff_ms"])
        for r in rows
    ] == [("a", "live", 2, 60.0, 900), ("b", "vod", 2, 2.0, 2000)]
    assert rows[0]["summary"]["end_reason"] == "change"


def test_unclosed_start_closes_at_session_end_and_second_start_is_ignored():
    rows = pure_sessionize(
        "R1234567890",
        [
            ev(0, "ChangeContent", 1, cid="a"),
            ev(10, "VideoFreeze", 2, state="start"),
            ev(12, "VideoFreeze", 3, state="start"),  # ignored: one is open
            ev(20, "BlackScreen", 4, dur_ms=500),  # single-line episode
            ev(25, "BlackScreen", 5, state="end"),  # end without start: counts, 0 ms
            ev(30, "BufferingStart", 6),
            ev(33, "BufferingEnd", 7),  # no dur_ms: end - start
            ev(40, "DisplayDrop", 8, dropped=5),
        ],
    )
    (r,) = rows
    assert (r["video_freeze_count"], r["video_freeze_ms"]) == (1, 30_000)  # 10 s → end at 40 s
    assert (r["black_screen_count"], r["black_screen_ms"]) == (2, 500)
    assert (r["buffering_count"], r["rebuffer_ms"]) == (1, 3000)
    assert r["rebuffer_ratio"] == pytest.approx(3 / 40)
    assert (r["display_drop_count"], r["dropped_frames"]) == (1, 5)
    assert r["summary"]["open_episodes"] == ["VideoFreeze"] and r["summary"]["end_reason"] == "end"


def test_standby_mid_playback_is_counted_and_events_until_next_change_belong_to_none():
    rows = pure_sessionize(
        "R1234567890",
        [
            ev(0, "ChangeContent", 1, cid="a"),
            ev(1, "FirstFrame", 2, ttff_ms=800),
            ev(100, "StandbyEnter", 3, detail={"reason": "power_key"}),
            ev(200, "HdmiHotplug", 4, connected="false"),
            ev(300, "StandbyExit", 5),
            ev(301, "FirstFrame", 6),
            ev(400, "ChangeContent", 7, cid="b"),
        ],
    )
    assert [
        (r["content_id"], r["event_count"], r["standby_count"], r["duration_s"]) for r in rows
    ] == [("a", 3, 1, 100.0), ("b", 1, 0, 0.0)]
    assert rows[0]["summary"]["standby"][0]["reason"] == "power_key"
    assert rows[0]["hdmi_disconnects"] == 0


def test_gap_longer_than_the_limit_ends_the_session_at_its_last_event():
    evs = [
        ev(0, "ChangeContent", 1, cid="a"),
        ev(10, "FirstFrame", 2),
        ev(10 + 1801, "DisplayDrop", 3),
        ev(4000, "ChangeContent", 4, cid="b"),
    ]
    rows = pure_sessionize("R1234567890", evs)
    assert [(r["content_id"], r["end_ts"] - T0, r["event_count"]) for r in rows] == [
        ("a", 10_000, 2),
        ("b", 4_000_000, 1),
    ]  # the DisplayDrop after the gap: no session
    assert rows[0]["summary"]["end_reason"] == "gap"
    # a longer limit keeps it in one session
    rows = pure_sessionize("R1234567890", evs, gap_s=3600)
    assert [r["event_count"] for r in rows] == [3, 1]


def test_events_before_first_change_form_a_session_only_with_playback():
    boot = ev(0, "BootInfo", 1, detail={"model": "M1", "fw": "F1", "app": "A1"})
    no_play = pure_sessionize(
        "R1234567890",
        [boot, ev(1, "HdmiHotplug", 2, connected="true"), ev(5, "ChangeContent", 3, cid="a")],
    )
    assert [r["content_id"] for r in no_play] == ["a"]
    rows = pure_sessionize(
        "R1234567890",
        [boot, ev(1, "FirstFrame", 2, ttff_ms=1650), ev(5, "ChangeContent", 3, cid="a")],
    )
    assert [(r["content_id"], r["start_ts"] - T0, r["ttff_ms"], r["model"]) for r in rows] == [
        (None, 0, 1650, "M1"),
        ("a", 5000, None, "M1"),
    ]
    assert rows[0]["video_start_failure"] is False


def test_video_start_failure_seq_gaps_fatal_and_deterministic_ids():
    evs = [
        ev(0, "ChangeContent", 10, cid="a"),
        ev(1, "PlaybackError", 11, fatal="false"),
        ev(2, "PlaybackError", 15, fatal="true", detail={"code": "7001"}),
        ev(3, "HdmiHotplug", 17, connected="false"),
    ]
    (r,) = pure_sessionize("R1234567890", list(reversed(evs)))  # order is restored
    assert (r["error_count"], r["fatal_error"], r["video_start_failure"], r["seq_gaps"]) == (
        2,
        True,
        True,
        4,
    )
    assert (r["hdmi_event_count"], r["hdmi_disconnects"]) == (1, 1)
    assert r["summary"]["counts"] == {"ChangeContent": 1, "PlaybackError": 2, "HdmiHotplug": 1}
    again = pure_sessionize("R1234567890", evs)[0]
    assert again["session_id"] == r["session_id"]
    assert pure_sessionize("R0000000001", evs)[0]["session_id"] != r["session_id"]


def test_playback_types_are_the_generators():
    from logalyzer.core.sessions import PLAYBACK_TYPES
    from logalyzer.core.synth import PLAYBACK_TYPES as SYNTH

    assert PLAYBACK_TYPES == SYNTH


def test_same_timestamp_is_ordered_by_seq():
    evs = [ev(5, "FirstFrame", 3), ev(5, "ChangeContent", 2, cid="a"), ev(0, "BootInfo", 1)]
    (r,) = pure_sessionize("R1234567890", evs)
    assert r["content_id"] == "a" and r["ttff_ms"] == 0


# --------------------------------------------------------------------------- against the truth

_ISO = 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'


def stored_sessions(dsn: str, rxids: set[str] | None = None) -> dict[tuple[str, str], dict]:
    """(rxid, start_ts as the truth writes it) → the stored row, with 'end' in the same format."""
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(
            f"SELECT *, to_char(start_ts AT TIME ZONE 'UTC', '{_ISO}') AS start,"
            f" to_char(end_ts AT TIME ZONE 'UTC', '{_ISO}') AS end FROM sessions"
        )
        names = [d.name for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur]
    return {(r["rxid"], r["start"]): r for r in rows if rxids is None or r["rxid"] in rxids}


def reset(dsn: str) -> None:
    """Empty everything the analyser reads or writes (the `db` fixture leaves sessions)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for (p,) in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'log_lines'::regclass"
        ).fetchall():
            conn.execute(psycopg.sql.SQL("DROP TABLE {}").format(psycopg.sql.Identifier(p)))
        conn.execute("TRUNCATE ingested_files RESTART IDENTITY")
        conn.execute("TRUNCATE sessions, devices CASCADE")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    out = tmp_path_factory.mktemp("sfleet")
    res = generate_fleet(out, FleetSpec(devices=10, hours=1.5, seed=5, noise_lines_per_minute=60))
    return out, json.loads(res.truth_path.read_text())


@pytest.fixture(scope="module")
def analysed(pg_dsn, settings, ray_local, fleet):
    """The fleet ingested and sessionized once; what was stored, read back."""
    from logalyzer.store.db import Database

    out, truth = fleet
    reset(pg_dsn)
    db = Database(pg_dsn)
    ingest(settings, db, [out], progress=False)
    summary = sessionize(settings, db, progress=False)
    return truth, stored_sessions(pg_dsn), summary


def test_fleet_has_every_header_variant_and_both_dialects(fleet):
    _, truth = fleet
    assert len({d["header_variant"] for d in truth["devices"]}) == 10
    assert {d["var_dialect"] for d in truth["devices"]} == {"current", "legacy"}


def test_every_session_of_the_truth_is_found_with_exactly_its_measures(analysed):
    truth, got, summary = analysed
    assert compare(truth["sessions"], got) == []
    assert summary.total("sessions") == len(truth["sessions"]) == len(got)
    assert summary.total("events") == truth["totals"]["var_events"]
    assert len(summary.devices) == len(truth["devices"])


def test_devices_table_holds_latest_boot_and_counts(analysed, pg_dsn):
    truth, got, _ = analysed
    rows = {
        r[0]: r[1:]
        for r in query(
            pg_dsn,
            "SELECT rxid, model, fw, app, session_count, var_event_count, line_count,"
            " first_seen <= last_seen FROM devices",
        )
    }
    for d in truth["devices"]:
        model, fw, app, n_sessions, n_var, n_lines, ordered = rows[d["rxid"]]
        assert (model, fw, app) == (d["model"], d["fw"], d["app"])
        assert n_sessions == sum(1 for s in truth["sessions"] if s["rxid"] == d["rxid"])
        assert n_var == d["var_events"] and n_lines > n_var and ordered
        assert n_lines == query(pg_dsn, f"SELECT count(*) FROM {d['rxid']}")[0][0]


@pytest.mark.parametrize(
    "edge",
    [
        "unclosed_episode",
        "spans_files",
        "standby_mid_playback",
        "silent_gap",
        "pre_first_change",
        "seq_gap",
        "log_end",
    ],
)
def test_edge_case_sessions_match_the_truth(analysed, edge):
    """state=start with no end; a session across two rotated files (whose overlapping lines
    are stored and counted once); standby mid-playback; a gap over the limit; events before
    the first ChangeContent; lost lines; the end of the log."""
    truth, got, _ = analysed
    cases = [s for s in truth["sessions"] if edge in s["edge_cases"]]
    assert cases, f"the fleet has no {edge} session"
    assert (
        compare(
            cases,
            {k: v for k, v in got.items() if any((s["rxid"], s["start_ts"]) == k for s in cases)},
        )
        == []
    )
    if edge == "pre_first_change":
        assert all(got[(s["rxid"], s["start_ts"])]["content_id"] is None for s in cases)


def test_rerun_changes_nothing_and_keeps_ids(analysed, pg_dsn, settings):
    from logalyzer.store.db import Database

    db = Database(pg_dsn)
    before = query(pg_dsn, "SELECT rxid, session_id, updated_at FROM sessions ORDER BY 1, 2")
    incremental = sessionize(settings, db, progress=False)
    assert incremental.devices == [] and incremental.skipped == 10
    full = sessionize(settings, db, full=True, progress=False)
    assert len(full.devices) == 10
    assert (full.total("inserted"), full.total("updated"), full.total("deleted")) == (0, 0, 0)
    assert (
        query(pg_dsn, "SELECT rxid, session_id, updated_at FROM sessions ORDER BY 1, 2") == before
    )


def test_qoe_formulas_are_one_definition_for_core_views_and_reports(analysed, pg_dsn):
    """sql/0009's functions define the rates; the pure core computes each session's rebuffer
    ratio without a database, the views and the CLI's report call the functions: all agree
    with the formula applied by hand to the truth."""
    truth, _, _ = analysed
    rows = query(
        pg_dsn,
        "SELECT rebuffer_ratio, qoe_rebuffer_ratio(rebuffer_ms,"
        " qoe_rebuffer_base_ms(duration_s, rebuffer_ms)), rebuffer_ms FROM sessions",
    )
    assert any(r[2] > 0 for r in rows), "the fleet must rebuffer somewhere"
    for core, in_sql, _ in rows:
        assert (core is None and in_sql is None) or core == pytest.approx(in_sql)
    ts = truth["sessions"]
    hours = sum(s["duration_s"] for s in ts) / 3600
    base = sum(max(s["duration_s"] * 1000, s["rebuffer_ms"]) for s in ts)
    content = [s for s in ts if s["content_id"] is not None]
    from logalyzer.store.db import Database
    from logalyzer.store.reports import fleet_overview

    o = fleet_overview(Database(pg_dsn))
    assert o["rebuffer_ratio"] == pytest.approx(min(sum(s["rebuffer_ms"] for s in ts) / base, 1))
    assert o["freezes_per_hour"] == pytest.approx(sum(s["video_freeze_count"] for s in ts) / hours)
    assert o["video_start_failure_rate"] == pytest.approx(
        sum(s["video_start_failure"] for s in content) / len(content)
    )
    per_day = query(pg_dsn, "SELECT sum(freezes_per_hour * viewing_hours) FROM qoe_daily")[0][0]
    assert per_day == pytest.approx(sum(s["video_freeze_count"] for s in ts))
    assert query(pg_dsn, "SELECT qoe_rate(5, 0), qoe_share(1, 0), qoe_rebuffer_ratio(0, 0)") == [
        (None, None, None)
    ]


def test_views_and_drill_down(analysed, pg_dsn):
    truth, got, _ = analysed
    daily = query(
        pg_dsn, "SELECT sum(sessions), sum(viewing_hours), sum(hdmi_disconnects) FROM qoe_daily"
    )[0]
    assert daily[0] == len(truth["sessions"])
    assert daily[1] == pytest.approx(sum(s["duration_s"] for s in truth["sessions"]) / 3600)
    assert daily[2] == sum(s["hdmi_disconnects"] for s in truth["sessions"])
    from logalyzer.store.db import Database
    from logalyzer.store.reports import fleet_overview

    o = fleet_overview(Database(pg_dsn), worst=3)
    assert (o["devices"], o["sessions"]) == (10, len(truth["sessions"])) and len(o["worst"]) == 3
    assert o["viewing_hours"] == pytest.approx(daily[1])
    per_dev = query(pg_dsn, "SELECT rxid, sessions FROM qoe_device")
    assert sum(n for _, n in per_dev) == len(truth["sessions"]) and len(per_dev) == 10
    window = query(
        pg_dsn,
        "SELECT sum(sessions) FROM qoe_device_window(%s, %s)",
        (datetime(2024, 3, 17, 8, 30, tzinfo=UTC), datetime(2024, 3, 17, 9, 0, tzinfo=UTC)),
    )[0][0]
    assert window == sum(
        1 for s in truth["sessions"] if "2024-03-17T08:30" <= s["start_ts"] < "2024-03-17T09:00"
    )
    undocumented = query(
        pg_dsn,
        """
        SELECT c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        WHERE c.relname IN ('qoe_daily', 'qoe_device') AND a.attnum > 0
          AND col_description(c.oid, a.attnum) IS NULL""",
    )
    assert undocumented == []
    # drill-down: every line of the device in the session's span (all tags), in time order
    s = max(got.values(), key=lambda r: r["event_count"])
    lines = query(
        pg_dsn,
        "SELECT ts, tag, event_type FROM session_lines(%s, %s)",
        (s["rxid"], s["session_id"]),
    )
    assert [ts for ts, _, _ in lines] == sorted(ts for ts, _, _ in lines)
    assert lines[0][0] == s["start_ts"] and lines[-1][0] <= s["end_ts"]
    assert sum(e is not None for _, _, e in lines) >= s["event_count"]
    assert any(tag.upper() != "VAR" for _, tag, _ in lines)
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        query(
            pg_dsn, "SELECT * FROM session_lines('x; drop table sessions', %s)", (s["session_id"],)
        )
    with pytest.raises(psycopg.errors.NoDataFound):
        query(pg_dsn, "SELECT * FROM session_lines(%s, gen_random_uuid())", (s["rxid"],))


# --------------------------------------------------------------------------- order, increments


def test_new_file_for_one_device_updates_only_that_device(analysed, pg_dsn, settings, tmp_path):
    from logalyzer.store.db import Database

    truth, _, _ = analysed
    rx = truth["devices"][3]["rxid"]
    before = {
        r[0]: r[1:] for r in query(pg_dsn, "SELECT session_id, updated_at, end_ts FROM sessions")
    }
    last = max(s["start_ts"] for s in truth["sessions"] if s["rxid"] == rx)
    f = tmp_path / rx / "logcat_20240317T120000.log"
    f.parent.mkdir()
    f.write_text(
        "2024-03-17 12:00:00.000  1702  2395 I VAR     : "
        "PLAYER|tune|ChangeContent|cid=ch999 src=live seq=9000 sid=99 mono=1\n"
        "2024-03-17 12:00:01.000  1702  2395 I VAR     : "
        "PLAYER|render|FirstFrame|ttff_ms=777 seq=9001 sid=99 mono=2\n"
    )
    ingest(settings, Database(pg_dsn), [f], progress=False)
    summary = sessionize(settings, Database(pg_dsn), progress=False)
    assert [d["rxid"] for d in summary.devices] == [rx] and summary.skipped == 9
    assert (summary.total("inserted"), summary.total("deleted")) == (1, 0)
    new = query(
        pg_dsn,
        "SELECT content_id, ttff_ms FROM sessions WHERE rxid = %s AND start_ts > %s",
        (rx, last),
    )
    assert new == [("ch999", 777)]
    after = {
        r[0]: r[1:] for r in query(pg_dsn, "SELECT session_id, updated_at, end_ts FROM sessions")
    }
    changed = {k for k in before if before[k] != after.get(k)}
    # at most the device's last session changed (it was open at the end of the log)
    assert len(changed) <= 1
    assert all(
        query(pg_dsn, "SELECT rxid FROM sessions WHERE session_id = %s", (k,))[0][0] == rx
        for k in changed
    )


@pytest.fixture()
def clean(db, pg_dsn):
    reset(pg_dsn)
    return db


def test_lines_out_of_order_across_files(clean, settings, ray_local, fleet, pg_dsn, tmp_path):
    """The later rotated file is loaded (and analysed) first, then the earlier one: the
    second, incremental analysis gives exactly the truth."""
    out, truth = fleet
    dev = next(d for d in truth["devices"] if len(d["files"]) > 1)
    first, second = (out / f for f in dev["files"][:2])
    ingest(settings, clean, [second], progress=False)
    s1 = sessionize(settings, clean, progress=False)
    assert [d["rxid"] for d in s1.devices] == [dev["rxid"]]
    ingest(settings, clean, [first], progress=False)
    s2 = sessionize(settings, clean, progress=False)
    assert [d["rxid"] for d in s2.devices] == [dev["rxid"]]
    want = [s for s in truth["sessions"] if s["rxid"] == dev["rxid"]]
    assert compare(want, stored_sessions(pg_dsn)) == []


def test_duplicated_lines_from_overlapping_files_are_counted_once(
    clean, settings, ray_local, fleet, pg_dsn, tmp_path
):
    """One device's log cut into two files that share a fifth of their lines (VAR lines
    among them): every event and session is counted once."""
    out, truth = fleet
    dev = truth["devices"][0]
    lines = gzip.open(out / dev["files"][0], "rt").read().splitlines()
    a, b = lines[: len(lines) * 6 // 10], lines[len(lines) * 4 // 10 :]
    shared = set(a) & set(b)
    assert sum("ChangeContent" in ln or "CHANGE_CONTENT" in ln for ln in shared) >= 1
    for name, part in (("logcat_20240317T080000.log.gz", a), ("logcat_20240317T083000.log.gz", b)):
        (tmp_path / dev["rxid"]).mkdir(exist_ok=True)
        (tmp_path / dev["rxid"] / name).write_bytes(
            gzip.compress(("\n".join(part) + "\n").encode())
        )
    ingest(settings, clean, [tmp_path], progress=False)
    summary = sessionize(settings, clean, progress=False)
    assert summary.total("events") == dev["var_events"]
    want = [s for s in truth["sessions"] if s["rxid"] == dev["rxid"]]
    assert compare(want, stored_sessions(pg_dsn)) == []


def test_new_year_without_year_in_header(clean, settings, ray_local, pg_dsn, tmp_path):
    spec = FleetSpec(
        devices=3,
        hours=3,
        seed=2,
        noise_lines_per_minute=20,
        start=datetime(2023, 12, 31, 22, 0, tzinfo=UTC),
    )
    res = generate_fleet(tmp_path / "ny", spec)
    truth = json.loads(res.truth_path.read_text())
    yearless = {
        d["rxid"]
        for d in truth["devices"]
        if d["header_variant"] in ("threadtime", "usec", "nsec", "zone", "uid", "time")
        and not d["dumpstate"]
    }
    crossing = [
        s for s in truth["sessions"] if "new_year" in s["edge_cases"] and s["rxid"] in yearless
    ]
    assert crossing, "a year-less device has a session across the new year"
    ingest(settings, clean, [tmp_path / "ny"], progress=False)
    sessionize(settings, clean, progress=False)
    assert compare(truth["sessions"], stored_sessions(pg_dsn)) == []


def test_a_failing_device_is_reported_and_retried_while_others_go_on(
    clean, settings, ray_local, pg_dsn, tmp_path
):
    lines = (
        "2024-03-17 12:00:00.000  1702  2395 I VAR     : PLAYER|tune|ChangeContent|cid=c1 seq=1\n"
        "2024-03-17 12:00:01.000  1702  2395 I VAR     : PLAYER|render|FirstFrame|ttff_ms=5 seq=2\n"
    )
    for rx in ("R0000000001", "R0000000002"):
        (tmp_path / rx).mkdir()
        (tmp_path / rx / "logcat_20240317T120000.log").write_text(lines)
    ingest(settings, clean, [tmp_path], progress=False)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE log_lines DETACH PARTITION r0000000002")
        conn.execute("ALTER TABLE r0000000002 RENAME TO gone_r0000000002")
    summary = sessionize(settings, clean, progress=False)
    assert [d["rxid"] for d in summary.devices] == ["R0000000001"]
    assert (
        list(summary.failed) == ["R0000000002"]
        and "UndefinedTable" in summary.failed["R0000000002"]
    )
    assert plan(clean)[0] == ["R0000000002"]  # no mark stored: tried again next run
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE gone_r0000000002")


# --------------------------------------------------------------------------- faces


def test_cli_and_pipeline(clean, ray_local, fleet, monkeypatch, tmp_path):
    out, truth = fleet
    rx = truth["devices"][0]["rxid"]
    shutil.copytree(out / rx, tmp_path / rx)
    monkeypatch.setenv("LOGALYZER_DSN", clean.dsn)
    r = CliRunner().invoke(
        main, ["run", str(tmp_path), "--steps", "ingest,sessionize", "--no-progress"]
    )
    assert r.exit_code == 0, r.output
    n = sum(1 for s in truth["sessions"] if s["rxid"] == rx)
    assert f"{n:,} sessions" in r.output and "analysed 1 device(s)" in r.output
    assert f"fleet: 1 devices, {n:,} sessions" in r.output and "worst: " + rx in r.output
    r = CliRunner().invoke(main, ["sessionize", "--no-progress"])
    assert r.exit_code == 0 and "analysed 0 device(s) (1 up to date)" in r.output, r.output
    r = CliRunner().invoke(main, ["sessionize", "--full", "--rxids", rx, "--no-progress"])
    assert r.exit_code == 0 and "inserted 0, updated 0, deleted 0" in r.output, r.output
    r = CliRunner().invoke(main, ["sessionize", "--since", "2000-01-01", "--no-progress"])
    assert r.exit_code == 0 and "analysed 1 device(s)" in r.output, r.output
    r = CliRunner().invoke(main, ["sessionize", "--rxids", "R1,nope"])
    assert r.exit_code == 1 and "not RxIDs" in r.output
    assert plan(clean, {rx})[0] == []
