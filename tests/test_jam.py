"""jam-software and tokens at the library level, against the real test PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from pydantic import ValidationError

from logalyzer.core.jam import EventIn, PushRequest
from logalyzer.errors import IdempotencyConflict, LogalyzerError, NotFound, Unauthorized
from logalyzer.store import jam, tokens

SHA = "ab" * 32
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def push_body(**over) -> dict:
    body = {
        "package": "com.example.player",
        "version": "4.2.1",
        "url": "https://apps.example.com/player.apk",
        "sha256": SHA,
        "targets": {"rxids": ["R0000000002", "R0000000001"]},
    }
    body.update(over)
    return body


@pytest.fixture()
def conn(db):
    with db.connect(autocommit=True) as c:  # each library call is then its own transaction
        yield c


def add_devices(conn, rows):
    for rxid, model, fw, app in rows:
        conn.execute(
            "INSERT INTO devices (rxid, model, fw, app) VALUES (%s, %s, %s, %s)",
            (rxid, model, fw, app),
        )
    conn.commit()


# --------------------------------------------------------------------------- tokens


def test_tokens_are_stored_hashed_and_checked(conn):
    admin, secret = tokens.create_token(conn, admin=True, name="ops")
    dev, dsecret = tokens.create_token(conn, rxid="R0000000001")
    assert secret.startswith("lgz_") and len(secret) > 40
    stored = conn.execute(
        "SELECT token_hash FROM api_tokens WHERE token_id = %s", (admin.token_id,)
    ).fetchone()[0]
    assert bytes(stored) == tokens.hash_secret(secret) and secret.encode() not in bytes(stored)
    assert tokens.authenticate(conn, secret).is_admin
    t = tokens.authenticate(conn, dsecret)
    assert t.role == "device" and t.rxid == "R0000000001"
    assert conn.execute(
        "SELECT last_used_at IS NOT NULL FROM api_tokens WHERE token_id = %s", (dev.token_id,)
    ).fetchone()[0]
    for bad in (None, "", "lgz_nope", "Bearer x", secret + "x"):
        with pytest.raises(Unauthorized):
            tokens.authenticate(conn, bad)
    tokens.revoke_token(conn, admin.token_id)
    with pytest.raises(Unauthorized):
        tokens.authenticate(conn, secret)
    assert [x.revoked_at is not None for x in tokens.list_tokens(conn)] == [True, False]
    with pytest.raises(NotFound):
        tokens.revoke_token(conn, 999)


def test_token_needs_exactly_one_of_admin_and_rxid(conn):
    for kw in ({}, {"admin": True, "rxid": "R0000000001"}):
        with pytest.raises(LogalyzerError):
            tokens.create_token(conn, **kw)
    with pytest.raises(LogalyzerError):
        tokens.create_token(conn, rxid="r123")


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "over, message",
    [
        ({"url": "http://apps.example.com/p.apk"}, "must use https"),
        ({"url": "https://user:pw@apps.example.com/p.apk"}, "credentials"),
        ({"url": "ftp://x/y"}, "must use https"),
        ({"sha256": "ab" * 31}, "at least 64"),
        ({"sha256": "zz" * 32}, "pattern"),
        ({"package": "player"}, "pattern"),
        ({"targets": {"rxids": ["R123"]}}, "pattern"),
        ({"targets": {"rxids": ["R١٢٣٤٥٦٧٨٩٠"]}}, "pattern"),
        ({"targets": {"rxids": []}}, "at least 1"),
        ({"targets": {"rxids": ["R0000000001"], "filter": {"model": ["X"]}}}, "exactly one"),
        ({"targets": {"filter": {}}}, "at least one of model"),
        ({"rollout_percent": 0}, "greater than or equal to 1"),
        ({"rollout_percent": 101}, "less than or equal to 100"),
        ({"extra": 1}, "Extra inputs"),
    ],
)
def test_bad_push_requests_name_the_problem(over, message):
    with pytest.raises(ValidationError) as err:
        PushRequest.model_validate(push_body(**over))
    assert message in str(err.value)


def deep(n):
    v = 1
    for _ in range(n):
        v = [v]
    return v


@pytest.mark.parametrize(
    "body, message",
    [
        ({"rxid": "R0000000001", "event_type": "x", "v": float("nan")}, "not a JSON number"),
        ({"rxid": "R0000000001", "event_type": "x", "v": [float("inf")]}, "not a JSON number"),
        ({"rxid": "R0000000001", "event_type": "x", "v": deep(40)}, "deeper"),
        ({"rxid": "R0000000001", "event_type": "bad type"}, "pattern"),
        ({"rxid": "R0000000001"}, "event_type"),
    ],
)
def test_bad_events_are_refused_before_the_database(body, message):
    with pytest.raises(ValidationError) as err:
        EventIn.model_validate(body)
    assert message in str(err.value)


def test_what_postgresql_cannot_store_is_replaced_not_refused(conn):
    e = EventIn.model_validate(
        {"rxid": "R0000000001", "event_type": "x", "a\x00": ["b\x00", "\udccf"]}
    )
    r = jam.record_event(conn, e)
    body = conn.execute("SELECT body FROM jam_events WHERE id = %s", (r["event_id"],)).fetchone()[0]
    assert body["a\ufffd"] == ["b\ufffd", "\ufffd"]
    with pytest.raises(ValidationError):  # labels are printable ASCII
        PushRequest.model_validate(push_body(targets={"filter": {"model": ["\udccf\x00"]}}))


def test_same_request_same_fingerprint_whatever_the_order():
    a = PushRequest.model_validate(push_body(sha256=SHA.upper()))
    b = PushRequest.model_validate(
        push_body(targets={"rxids": ["R0000000001", "R0000000002", "R0000000001"]})
    )
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != PushRequest.model_validate(push_body(version="4.2.2")).fingerprint()


# --------------------------------------------------------------------------- pushes


def test_create_push_with_rxids_and_idempotency(conn):
    req = PushRequest.model_validate(push_body())
    first = jam.create_push(conn, req, "k1", "token 1")
    assert first.created
    p = first.push
    assert [t["rxid"] for t in p["targets"]] == ["R0000000001", "R0000000002"]
    assert p["counts"] == {"pending": 2, "delivered": 0, "installed": 0, "failed": 0}
    again = jam.create_push(conn, PushRequest.model_validate(push_body()), "k1", "token 2")
    assert not again.created and again.push["push_id"] == p["push_id"]
    with pytest.raises(IdempotencyConflict):
        jam.create_push(conn, PushRequest.model_validate(push_body(version="9")), "k1", "token 1")
    assert conn.execute("SELECT count(*) FROM jam_pushes").fetchone()[0] == 1


def test_concurrent_requests_with_one_key_make_one_push(db):
    req = PushRequest.model_validate(push_body())
    results, errors = [], []

    def go():
        try:
            with db.connect() as c:
                results.append(jam.create_push(c, req, "same-key", "t"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({r.push["push_id"] for r in results}) == 1
    assert sum(r.created for r in results) == 1


def test_filter_targets_devices_and_rollout_is_deterministic(conn):
    rows = [
        (f"R{i:010d}", "STB-200" if i % 2 else "STB-100", "9.1" if i % 3 else "9.0", "4.1")
        for i in range(1, 201)
    ]
    add_devices(conn, rows)
    req = PushRequest.model_validate(
        push_body(targets={"filter": {"model": ["STB-200"], "fw": ["9.1"]}})
    )
    full = jam.create_push(conn, req, "all", "t").push
    expected = sorted(r[0] for r in rows if r[1] == "STB-200" and r[2] == "9.1")
    assert [t["rxid"] for t in full["targets"]] == expected
    part = jam.create_push(
        conn,
        PushRequest.model_validate(
            push_body(targets={"filter": {"model": ["STB-200"], "fw": ["9.1"]}}, rollout_percent=30)
        ),
        "some",
        "t",
    ).push
    chosen = [t["rxid"] for t in part["targets"]]
    assert set(chosen) < set(expected) and 0.15 < len(chosen) / len(expected) < 0.45
    pid = part["push_id"]
    assert chosen == [r for r in expected if jam.in_rollout(pid, r, 30)]
    assert (
        jam.create_push(
            conn,
            PushRequest.model_validate(push_body(targets={"filter": {"model": ["nope"]}})),
            "none",
            "t",
        ).push["targets"]
        == []
    )


def test_list_pushes_pages_newest_first(conn):
    ids = [
        jam.create_push(
            conn, PushRequest.model_validate(push_body(version=f"1.{i}")), f"k{i}", "t"
        ).push["push_id"]
        for i in range(5)
    ]
    page, nxt = jam.list_pushes(conn, limit=2)
    seen = [p["push_id"] for p in page]
    while nxt:
        page, nxt = jam.list_pushes(conn, limit=2, after=nxt)
        seen += [p["push_id"] for p in page]
    assert seen == ids[::-1]
    assert page[-1]["counts"]["pending"] == 2
    with pytest.raises(NotFound):
        jam.list_pushes(conn, after=uuid.uuid4())
    with pytest.raises(NotFound):
        jam.get_push(conn, uuid.uuid4())


# --------------------------------------------------------------------------- state machine


def test_transition_table():
    assert jam.next_state("pending", "download_started") == "delivered"
    assert jam.next_state("delivered", "installed") == "installed"
    assert jam.next_state("pending", "installed") == "installed"
    assert jam.next_state("delivered", "failed") == "failed"
    assert jam.next_state("failed", "installed") == "installed"
    assert jam.next_state("installed", "failed") is None
    assert jam.next_state("installed", "download_started") is None
    assert jam.next_state("delivered", "download_started") is None
    assert jam.next_state("pending", "progress") is None


def ev(rxid, etype, push_id=None, **extra):
    return EventIn.model_validate({"rxid": rxid, "event_type": etype, "push_id": push_id, **extra})


def test_pending_marks_delivered_and_events_move_state(conn):
    p = jam.create_push(conn, PushRequest.model_validate(push_body()), "k", "t").push
    pid = p["push_id"]
    got = jam.pending_for_device(conn, "R0000000001")
    assert [(g["push_id"], g["state"]) for g in got] == [(pid, "delivered")]
    again = jam.pending_for_device(conn, "R0000000001")
    assert again[0]["delivered_at"] == got[0]["delivered_at"]  # re-offered, first time kept
    assert jam.pending_for_device(conn, "R0000000009") == []

    r = jam.record_event(conn, ev("R0000000001", "installed", pid, detail="ok in 3 s"))
    assert r["state"] == "installed" and r["state_changed"]
    assert jam.pending_for_device(conn, "R0000000001") == []
    # late and contradicting events: kept, state not moved backwards
    r = jam.record_event(conn, ev("R0000000001", "download_started", pid))
    assert r["state"] == "installed" and not r["state_changed"]
    r = jam.record_event(conn, ev("R0000000001", "failed", pid, error="disk full"))
    assert r["state"] == "installed" and not r["state_changed"]
    # an install reported before any fetch: delivered_at is set too
    r = jam.record_event(conn, ev("R0000000002", "failed", pid, error="bad hash"))
    assert r["state"] == "failed"
    r = jam.record_event(conn, ev("R0000000002", "installed", pid))
    assert r["state"] == "installed" and r["state_changed"]
    t = {x["rxid"]: x for x in jam.get_push(conn, pid)["targets"]}
    assert t["R0000000001"]["last_detail"] == "failed: disk full"
    assert (
        t["R0000000002"]["delivered_at"] is not None and t["R0000000002"]["failed_at"] is not None
    )
    # events about no push, or a push the box is not a target of, are kept
    assert jam.record_event(conn, ev("R0000000003", "installed", pid))["state"] is None
    assert (
        jam.record_event(conn, ev("R0000000003", "app_crash", None, stack=["a", "b"]))["push_id"]
        is None
    )
    assert conn.execute("SELECT count(*) FROM jam_events").fetchone()[0] == 7
    body = conn.execute("SELECT body FROM jam_events WHERE event_type = 'app_crash'").fetchone()[0]
    assert body == {
        "rxid": "R0000000003",
        "event_type": "app_crash",
        "push_id": None,
        "stack": ["a", "b"],
    }


# --------------------------------------------------------------------------- impact


def add_session(conn, rxid, start, hours, freezes=0, blacks=0, anomalous=None):
    sid = uuid.uuid4()
    conn.execute(
        "INSERT INTO sessions (rxid, session_id, start_ts, end_ts, duration_s, video_freeze_count,"
        " black_screen_count) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (rxid, sid, start, start + timedelta(hours=hours), hours * 3600, freezes, blacks),
    )
    if anomalous is not None:
        conn.execute(
            "INSERT INTO anomalies_consolidated (rxid, session_id, start_ts, is_anomaly)"
            " VALUES (%s, %s, %s, %s)",
            (rxid, sid, start, anomalous),
        )
    conn.commit()


def test_impact_compares_sessions_before_and_after_install(conn):
    p = jam.create_push(conn, PushRequest.model_validate(push_body()), "k", "t").push
    pid = p["push_id"]
    conn.execute(
        "UPDATE jam_targets SET state = 'installed', installed_at = %s WHERE rxid = 'R0000000001'",
        (T0,),
    )
    conn.commit()
    rx = "R0000000001"
    add_session(conn, rx, T0 - timedelta(days=2), 2, freezes=4, blacks=2, anomalous=True)
    add_session(
        conn, rx, T0 - timedelta(days=1), 2, freezes=0, anomalous=False
    )  # a row, but not flagged
    add_session(conn, rx, T0 - timedelta(days=9), 5, freezes=50)  # outside the window
    add_session(conn, rx, T0 + timedelta(hours=1), 1, freezes=1)
    add_session(conn, rx, T0, 3, blacks=3, anomalous=True)  # at the pivot: after
    add_session(conn, "R0000000002", T0, 1, freezes=9)  # not installed there
    targets, s = jam.impact(conn, pid)
    rows = {r["rxid"]: r for r in targets}
    a = rows[rx]
    assert (a["sessions_before"], a["sessions_after"]) == (2, 2)
    assert a["viewing_hours_before"] == pytest.approx(4) and a[
        "viewing_hours_after"
    ] == pytest.approx(4)
    assert a["anomaly_rate_before"] == pytest.approx(0.5) and a[
        "anomaly_rate_after"
    ] == pytest.approx(0.5)
    assert a["freezes_per_hour_before"] == pytest.approx(1.0) and a[
        "freezes_per_hour_after"
    ] == pytest.approx(0.25)
    assert a["black_screens_per_hour_before"] == pytest.approx(0.5)
    assert a["black_screens_per_hour_after"] == pytest.approx(0.75)
    b = rows["R0000000002"]
    assert b["state"] == "pending" and b["installed_at"] is None
    assert (b["sessions_before"], b["sessions_after"], b["viewing_hours_after"]) == (0, 0, 0)
    assert b["anomaly_rate_after"] is None and b["freezes_per_hour_after"] is None
    wide = {r["rxid"]: r for r in jam.impact(conn, pid, timedelta(days=10))[0]}
    assert wide[rx]["sessions_before"] == 3
    assert s["installed"] == 1 and s["before"]["freezes_per_hour"] == pytest.approx(1.0)
    # pooled over the installed target only; the uninstalled one's session does not count
    assert (s["targets"], s["before"]["sessions"], s["after"]["sessions"]) == (2, 2, 2)
    assert s["after"]["black_screens_per_hour"] == pytest.approx(0.75)
    assert s["after"]["anomaly_rate"] == pytest.approx(0.5)
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.rollback()
        conn.execute("SELECT * FROM jam_push_impact(%s, interval '-1 day')", (pid,))
    conn.rollback()
    with pytest.raises(NotFound):
        jam.impact(conn, uuid.uuid4())
    # the SQL function's default window is 7 days
    assert (
        conn.execute(
            "SELECT sessions_before FROM jam_push_impact(%s) WHERE rxid = %s", (pid, rx)
        ).fetchone()[0]
        == 2
    )
