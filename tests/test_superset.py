"""superset/: the dashboards-as-code bundle and the SQL behind it, without running Superset.

The bundle must build and be consistent (build_bundle.validate), and every dataset's virtual
SQL, rendered the way Superset's Jinja would render it for sample time ranges and
granularities, must run against the test PostgreSQL, with every saved metric over it. Running
Superset itself and looking at the charts is `make superset-check` (see README).
"""

from __future__ import annotations

import importlib.util
import zipfile
from datetime import UTC, datetime, timedelta

import jinja2
import psycopg
import pytest
import yaml

from .helpers import ROOT, query

spec = importlib.util.spec_from_file_location("build_bundle", ROOT / "superset" / "build_bundle.py")
bb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bb)

ASSETS = bb.load_assets()
KINDS = bb.by_kind(ASSETS)
DATASETS = {d["table_name"]: d for d in KINDS["datasets"].values()}


# --------------------------------------------------------------------------- the bundle


def test_assets_are_consistent():
    assert bb.validate(ASSETS) == []
    assert {len(KINDS[k]) > 0 for k in bb.KINDS} == {True}


def test_every_chart_references_an_existing_dataset():
    for chart in KINDS["charts"].values():
        assert str(chart["dataset_uuid"]) in KINDS["datasets"], chart["slice_name"]


def test_bundle_zip_has_one_top_folder_and_the_real_database_uri(tmp_path):
    out = bb.build(tmp_path / "b.zip", dsn="postgresql://u:pw@db.example:5432/logs?sslmode=require")
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        assert {n.split("/", 1)[0] for n in names} == {bb.ROOT_FOLDER}
        assert f"{bb.ROOT_FOLDER}/metadata.yaml" in names
        for kind in bb.KINDS:
            assert any(n.startswith(f"{bb.ROOT_FOLDER}/{kind}/") for n in names), kind
        (db_file,) = [n for n in names if "/databases/" in n]
        uri = yaml.safe_load(zf.read(db_file))["sqlalchemy_uri"]
        assert uri == "postgresql+psycopg2://u:pw@db.example:5432/logs?sslmode=require"
        for name in names:
            if "/dashboards/" in name:
                pos = yaml.safe_load(zf.read(name))["position"]
                charts = [
                    n for n in pos.values() if isinstance(n, dict) and n.get("type") == "CHART"
                ]
                assert charts and all({"uuid", "chartId"} <= set(n["meta"]) for n in charts)
    assert oct(out.stat().st_mode & 0o777) == "0o600"


def test_validate_names_broken_references():
    broken = yaml.safe_load(yaml.safe_dump(ASSETS))
    chart = next(v for k, v in broken.items() if k.startswith("charts/"))
    chart["dataset_uuid"] = "00000000-0000-0000-0000-000000000000"
    dash = next(v for k, v in broken.items() if k.startswith("dashboards/"))
    node = next(
        n for n in dash["position"].values() if isinstance(n, dict) and n.get("type") == "CHART"
    )
    del node["meta"]["chartId"]
    problems = "\n".join(bb.validate(broken))
    assert "unknown dataset" in problems and "needs both uuid and chartId" in problems


def test_validate_names_unknown_columns_and_metrics():
    broken = yaml.safe_load(yaml.safe_dump(ASSETS))
    chart = next(v for v in broken.values() if v.get("viz_type") == "echarts_timeseries_line")
    chart["params"]["metrics"] = ["no_such_metric"]
    chart["params"]["x_axis"] = "no_such_column"
    problems = "\n".join(bb.validate(broken))
    assert (
        "'no_such_metric', not a metric" in problems
        and "'no_such_column', not a column" in problems
    )


def test_build_bundle_refuses_a_non_postgres_dsn():
    with pytest.raises(bb.BundleError):
        bb.sqlalchemy_uri("mysql://x@y/z")


# --------------------------------------------------------------------------- the SQL


def render(
    sql: str,
    from_dttm: datetime | None,
    to_dttm: datetime | None,
    filters: dict[str, list] | None = None,
    url: dict[str, str] | None = None,
) -> str:
    """Superset's Jinja context as far as the datasets use it: from_dttm / to_dttm (ISO
    strings or None), filter_values, url_param (which quotes like Superset's)."""
    filters, url = filters or {}, url or {}

    def filter_values(column, default=None, remove_filter=False):
        return list(filters.get(column) or ([default] if default else []))

    def url_param(name, default=None, add_to_cache_keys=True, escape_result=True):
        value = url.get(name, default)
        return value.replace("'", "''") if (escape_result and isinstance(value, str)) else value

    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    return env.from_string(sql).render(
        from_dttm=from_dttm.isoformat() if from_dttm else None,
        to_dttm=to_dttm.isoformat() if to_dttm else None,
        filter_values=filter_values,
        url_param=url_param,
    )


def records(dsn: str, sql: str) -> list[dict]:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(sql)
        names = [d.name for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]


T0 = datetime(2024, 3, 17, 8, 0)


@pytest.fixture()
def filled(db):
    """Three sessions on two boxes over two days, one of them flagged."""
    rows = [
        (
            "R0000000001",
            "11111111-1111-1111-1111-111111111111",
            T0,
            1800,
            "M1",
            "fw1",
            "c1",
            2,
            1,
            False,
        ),
        (
            "R0000000001",
            "22222222-2222-2222-2222-222222222222",
            T0 + timedelta(hours=1, minutes=10),
            3600,
            "M1",
            "fw1",
            "c2",
            0,
            3,
            True,
        ),
        (
            "R0000000002",
            "33333333-3333-3333-3333-333333333333",
            T0 + timedelta(days=1),
            7200,
            "M2",
            "fw2",
            None,
            1,
            0,
            False,
        ),
    ]
    with psycopg.connect(db.dsn) as conn:
        for rxid, sid, start, dur, model, fw, cid, bs, fz, vsf in rows:
            start = start.replace(tzinfo=UTC)
            conn.execute(
                "INSERT INTO sessions (rxid, session_id, content_id, start_ts, end_ts, duration_s,"
                " model, fw, black_screen_count, video_freeze_count, video_start_failure)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    rxid,
                    sid,
                    cid,
                    start,
                    start + timedelta(seconds=dur),
                    dur,
                    model,
                    fw,
                    bs,
                    fz,
                    vsf,
                ),
            )
        conn.execute(
            "INSERT INTO anomalies_consolidated (rxid, session_id, start_ts, lstm_score, ae_score,"
            " is_anomaly, detectors, reasons)"
            " VALUES (%s, %s, %s, 2.5, 0.7, true, ARRAY['lstm'], %s)",
            (
                "R0000000001",
                rows[1][1],
                rows[1][2].replace(tzinfo=UTC),
                '{"transitions": [{"after": "FirstFrame", "event": "VideoFreeze", "p": 0.01}],'
                ' "features": [{"feature": "freeze_ms", "value": 9.5},'
                ' {"feature": "ttff_ms", "value": 3},'
                ' {"feature": "freezes", "text": "15 freezes (usually 0.1)", "value": 2.77}]}',
            ),
        )
        # a fleet alert on the first day (sql/0014_alerts.sql)
        conn.execute(
            "INSERT INTO alerts (grain, cohort_kind, cohort, measure, window_start, window_end,"
            " value, baseline, ratio, p_value, severity, sessions, viewing_hours,"
            " baseline_windows) VALUES ('day', 'fw', 'fw1', 'freezes_per_hour', %s, %s,"
            " 2.4, 0.5, 4.8, 1e-9, 'critical', 2, 1.5, 7)",
            (
                T0.replace(hour=0, tzinfo=UTC),
                T0.replace(hour=0, tzinfo=UTC) + timedelta(days=1),
            ),
        )
        # a jam-software push installed on box 1 between its two sessions
        conn.execute(
            "INSERT INTO jam_pushes (push_id, idempotency_key, request_hash, package, version, url,"
            " sha256, target, created_by, created_at)"
            " VALUES (%s, 'k1', 'h', 'com.example.player', '5.2.0',"
            " 'https://example.com/p.apk', %s, '{\"rxids\": [\"R0000000001\"]}', 'test', %s)",
            (PUSH, "0" * 64, T0.replace(tzinfo=UTC)),
        )
        conn.execute(
            "INSERT INTO jam_targets (push_id, rxid, state, installed_at) VALUES"
            " (%s, 'R0000000001', 'installed', %s), (%s, 'R0000000002', 'pending', NULL)",
            (PUSH, (T0 + timedelta(hours=1)).replace(tzinfo=UTC), PUSH),
        )
    return db


PUSH = "44444444-4444-4444-4444-444444444444"


WINDOWS = [
    (None, None),
    (T0, T0 + timedelta(days=2)),
    (T0 + timedelta(hours=1), T0 + timedelta(hours=2)),
    (T0 + timedelta(days=30), T0 + timedelta(days=31)),
]


@pytest.mark.parametrize("grain", ["hour", "day", "week", "fortnight'; DROP TABLE sessions; --"])
@pytest.mark.parametrize("window", WINDOWS, ids=["no-filter", "two-days", "one-hour", "empty"])
def test_every_dataset_and_metric_runs(filled, grain, window):
    for name, ds in DATASETS.items():
        sql = render(
            ds["sql"],
            *window,
            filters={"granularity": [grain]},
            url={"rxid": "R0000000001", "session_id": "22222222-2222-2222-2222-222222222222"},
        )
        wrapped = f"SELECT * FROM ({sql}) AS virtual_table LIMIT 1000"  # as Superset wraps it
        cols = {c["column_name"] for c in ds["columns"]}
        with psycopg.connect(filled.dsn) as conn:
            cur = conn.execute(wrapped)
            got = {d.name for d in cur.description}
            assert got == cols, (
                f"{name}: the dataset declares {sorted(cols)}, the SQL gives {sorted(got)}"
            )
            rows = cur.fetchall()
            for m in ds.get("metrics", []):
                conn.execute(f"SELECT {m['expression']} FROM ({sql}) AS virtual_table")
        if name == "fleet_qoe" and window == (None, None):
            assert sum(r["sessions"] for r in records(filled.dsn, sql)) == 3
        if name == "fleet_alerts":  # the alert's day overlaps every window but the empty one
            want = [] if window == WINDOWS[-1] else ["fw fw1"]
            assert [r["cohort"] for r in records(filled.dsn, sql)] == want
        assert rows is not None
    assert query(filled.dsn, "SELECT count(*) FROM sessions") == [(3,)]


def _fleet(dsn, grain, window=(None, None)):
    sql = render(DATASETS["fleet_qoe"]["sql"], *window, filters={"granularity": [grain]})
    return records(dsn, f"SELECT * FROM ({sql}) v ORDER BY period, model")


def test_one_fleet_chart_serves_any_granularity_and_window(filled):
    hourly = _fleet(filled.dsn, "hour")
    assert [r["period"] for r in hourly] == [T0, T0 + timedelta(hours=1), T0 + timedelta(days=1)]
    assert {r["granularity"] for r in hourly} == {"hour"}
    daily = _fleet(filled.dsn, "day")
    assert [(r["period"], r["sessions"]) for r in daily] == [
        (datetime(2024, 3, 17), 2),
        (datetime(2024, 3, 18), 1),
    ]
    assert daily[0]["anomalous_sessions"] == 1 and daily[0]["black_screens"] == 2
    assert daily[0]["viewing_hours"] == pytest.approx(1.5)
    assert daily[0]["content_sessions"] == 2 and daily[0]["start_failures"] == 1
    weekly = _fleet(filled.dsn, "week")  # ISO weeks start on Monday: Sun 17 and Mon 18 differ
    assert [(r["period"], r["sessions"]) for r in weekly] == [
        (datetime(2024, 3, 11), 2),
        (datetime(2024, 3, 18), 1),
    ]
    # a window cutting into a bucket labels it with the window's start: Superset's own
    # time filter on `period` then keeps it
    (cut,) = _fleet(filled.dsn, "day", (T0 + timedelta(hours=1), T0 + timedelta(days=1)))
    assert cut["period"] == T0 + timedelta(hours=1) and cut["sessions"] == 1
    assert _fleet(filled.dsn, "no-such-grain") == _fleet(filled.dsn, "day")


def test_device_and_anomaly_datasets(filled):
    ds = DATASETS["device_qoe"]
    rows = {r["rxid"]: r for r in records(filled.dsn, render(ds["sql"], None, None))}
    assert rows["R0000000001"]["anomalous_sessions"] == 1
    assert rows["R0000000001"]["freezes_per_1000h"] == pytest.approx(1000 * 4 / 1.5)
    one_day = query(filled.dsn, render(ds["sql"], T0 + timedelta(days=1), T0 + timedelta(days=2)))
    assert [r[0] for r in one_day] == ["R0000000002"]

    ds = DATASETS["flagged_sessions"]
    (row,) = records(filled.dsn, render(ds["sql"], None, None))
    # items with a text (written since reasons are in the user's units) show it; older ones
    # their feature's name
    assert row["reasons"] == (
        "features: 15 freezes (usually 0.1), freeze_ms, ttff_ms;"
        " transitions: FirstFrame -> VideoFreeze"
    )
    assert row["score"] == 2.5 and row["detectors"] == "lstm"
    assert (
        'href="/superset/dashboard/logalyzer-session/?rxid=R0000000001'
        '&session_id=22222222-2222-2222-2222-222222222222"'
    ) in row["raw_lines"]
    assert (
        query(filled.dsn, render(ds["sql"], T0 + timedelta(days=1), T0 + timedelta(days=2))) == []
    )


def _metrics(dsn: str, name: str, sql: str, group: str) -> list[dict]:
    exprs = ", ".join(f"{m['expression']} AS {m['metric_name']}" for m in DATASETS[name]["metrics"])
    return records(dsn, f"SELECT {group}, {exprs} FROM ({sql}) v GROUP BY {group}")


def test_jam_datasets_pool_the_impact_over_boxes(filled):
    (push,) = records(filled.dsn, render(DATASETS["jam_pushes_overview"]["sql"], None, None))
    assert (push["push"], push["targets"], push["installed"], push["open"]) == (
        "com.example.player 5.2.0",
        2,
        1,
        1,
    )
    sql = render(DATASETS["jam_impact"]["sql"], T0 - timedelta(days=1), T0 + timedelta(days=1))
    (m,) = _metrics(filled.dsn, "jam_impact", sql, "push")
    # box 1: before its install a 0.5 h session with 1 freeze and 2 black screens; after, 1 h
    # with 3 freezes, flagged; box 2 never installed and has no sessions on either side
    assert (m["installed_targets"], m["sessions_before"], m["sessions_after"]) == (1, 1, 1)
    assert m["freezes_per_1000h_before"] == pytest.approx(2000) and m[
        "freezes_per_1000h_after"
    ] == pytest.approx(3000)
    assert (
        m["black_screens_per_1000h_before"] == pytest.approx(4000)
        and m["black_screens_per_1000h_after"] == 0
    )
    assert (m["anomaly_rate_before"], m["anomaly_rate_after"]) == (0, 1)
    assert (
        records(
            filled.dsn,
            render(DATASETS["jam_impact"]["sql"], T0 + timedelta(days=1), T0 + timedelta(days=2)),
        )
        == []
    )


def test_session_lines_dataset_quotes_its_url_parameters(filled):
    sql = DATASETS["session_raw_lines"]["sql"]
    for rxid in ("R0000000001' OR '1'='1", "x'); DROP TABLE sessions; --", None):
        assert (
            query(
                filled.dsn,
                render(sql, None, None, url={"rxid": rxid, "session_id": "x"} if rxid else {}),
            )
            == []
        )
    assert query(filled.dsn, "SELECT count(*) FROM sessions") == [(3,)]


def test_qoe_timeseries_checks_its_arguments(filled):
    for bad in (
        ("month", "-infinity", "infinity"),
        ("day", "2024-03-02", "2024-03-01"),
        (None, "-infinity", "infinity"),
    ):
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            query(filled.dsn, "SELECT * FROM qoe_timeseries(%s, %s, %s)", bad)


def test_grain_injection_never_reaches_sql():
    sql = render(
        DATASETS["fleet_qoe"]["sql"],
        None,
        None,
        filters={"granularity": ["day'); DROP TABLE x; --"]},
    )
    assert "DROP" not in sql and "'day'" in sql
