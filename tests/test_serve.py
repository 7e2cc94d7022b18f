"""The HTTP service over real HTTP: Ray Serve's proxy on a free port, one replica, the test
PostgreSQL. One application for the whole module (starting Serve costs tens of seconds here)."""

from __future__ import annotations

import socket
import time
import uuid
from datetime import timedelta

import httpx
import psycopg
import pytest

from logalyzer.store import tokens
from logalyzer.store.db import Database

from .helpers import box_lines, measures_of, query, store_sessions, train_models

SHA = "cd" * 32
RX1, RX2, RX3 = "R0000000001", "R0000000002", "R0000000003"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TOKEN_TTL_S = 1.0  # the replica trusts a checked token this long (default 5 s)


@pytest.fixture(scope="module")
def base_url(ray_local, settings, pg_dsn):
    from ray import serve

    from logalyzer.http import serving

    # The tests below send bursts of 16 concurrent clients on a loaded 2-core machine; the
    # replica admits them all (refusals at capacity are tested in test_api.py and measured in
    # bench/serve.py), and trusts tokens for TOKEN_TTL_S so revocation is quick to test.
    served = settings.model_copy(
        update={
            "serve_max_inflight": 256,
            "serve_max_lag_ms": 0,
            "serve_token_cache_s": TOKEN_TTL_S,
        }
    )
    url = serving.start(served, pg_dsn, "127.0.0.1", free_port())
    yield url
    serve.shutdown()


def test_one_hop_the_replica_itself_listens_on_the_port(base_url):
    """No Serve proxy: the port is held by the LogalyzerAPI replica's process, and it answers
    KubeRay's readiness probe."""
    import psutil
    import ray
    from ray.util.state import list_actors

    port = int(base_url.rsplit(":", 1)[1])
    alive = list_actors(
        address=ray.get_runtime_context().gcs_address, filters=[("state", "=", "ALIVE")]
    )
    assert not [a for a in alive if "Proxy" in a.class_name]
    (replica,) = [a for a in alive if "LogalyzerAPI" in a.class_name]
    listening = {
        c.laddr.port
        for c in psutil.Process(replica.pid).net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
    }
    assert port in listening
    r = httpx.get(f"{base_url}/-/healthz")
    assert (r.status_code, r.text) == (200, "success")


def test_a_revoked_token_is_refused_within_the_cache_ttl(http, db):
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        token, secret = tokens.create_token(conn, rxid=RX3)
    path = f"/jam-software/devices/{RX3}/pending"
    assert http.get(path, headers=auth(secret)).status_code == 200  # checked, now cached
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        tokens.revoke_token(conn, token.token_id)
    revoked_at = time.monotonic()
    while http.get(path, headers=auth(secret)).status_code == 200:
        assert time.monotonic() - revoked_at < TOKEN_TTL_S + 1.0, "still accepted past the TTL"
        time.sleep(0.05)
    r = http.get(path, headers=auth(secret))
    assert r.status_code == 401 and r.json()["detail"] == "invalid or revoked token"


@pytest.fixture()
def http(base_url, db):
    with httpx.Client(base_url=base_url, timeout=30) as client:
        client.base_url_dsn = db.dsn
        yield client


@pytest.fixture()
def tok(db):
    """Secrets: an admin, devices RX1 and RX2, and a revoked admin."""
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        out = {
            "admin": tokens.create_token(conn, admin=True, name="test")[1],
            RX1: tokens.create_token(conn, rxid=RX1)[1],
            RX2: tokens.create_token(conn, rxid=RX2)[1],
        }
        revoked, out["revoked"] = tokens.create_token(conn, admin=True)
        tokens.revoke_token(conn, revoked.token_id)
    return out


def auth(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


def push_body(**over) -> dict:
    body = {
        "package": "com.example.player",
        "version": "4.2.1",
        "url": "https://apps.example.com/player.apk",
        "sha256": SHA,
        "targets": {"rxids": [RX1, RX2]},
    }
    body.update(over)
    return body


def make_push(http, tok, key=None, **over) -> httpx.Response:
    return http.post(
        "/jam-software/pushes",
        json=push_body(**over),
        headers={**auth(tok["admin"]), "Idempotency-Key": key or uuid.uuid4().hex},
    )


def test_health_and_readiness(http, tok):
    assert http.get("/healthz").json() == {"status": "ok"}
    http.post(
        "/v1/models/reload", headers=auth(tok["admin"])
    )  # 404 (nothing trained): stays unloaded
    r = http.get("/readyz")
    if r.status_code == 503:  # no detector trained yet (the first test of the module)
        assert (
            r.json()["checks"]["database"] == "ok"
            and "no detector loaded" in r.json()["checks"]["models"]
        )
        train_models(Database(http.base_url_dsn))
        assert http.post("/v1/models/reload", headers=auth(tok["admin"])).status_code == 200
        r = http.get("/readyz")
    assert r.status_code == 200 and r.json() == {
        "ready": True,
        "checks": {"database": "ok", "models": "ok"},
    }
    spec = http.get("/openapi.json").json()
    assert {
        "/jam-software/pushes",
        "/jam-software/events",
        "/jam-software/devices/{rxid}/pending",
        "/jam-software/pushes/{push_id}/impact",
        "/healthz",
        "/readyz",
        "/v1/score",
        "/v1/models/reload",
    } <= set(spec["paths"])


ROUTES = [
    ("POST", "/jam-software/pushes", "admin"),
    ("GET", "/jam-software/pushes", "admin"),
    ("GET", "/jam-software/pushes/{push}", "admin"),
    ("GET", "/jam-software/pushes/{push}/impact", "admin"),
    ("GET", f"/jam-software/devices/{RX1}/pending", RX1),
    ("POST", "/jam-software/events", RX1),
]


def call(http, method, path, secret, push_id):
    headers = auth(secret) if secret else {}
    path = path.format(push=push_id)
    if method == "GET":
        return http.get(path, headers=headers)
    if path.endswith("/events"):
        return http.post(path, json={"rxid": RX1, "event_type": "ping"}, headers=headers)
    return http.post(
        path, json=push_body(), headers={**headers, "Idempotency-Key": uuid.uuid4().hex}
    )


def test_auth_matrix(http, tok, db):
    push_id = make_push(http, tok).json()["push_id"]
    for method, path, owner in ROUTES:
        where = f"{method} {path}"
        r = call(http, method, path, None, push_id)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", where
        assert r.json()["detail"] == "missing bearer token"
        for bad in ("lgz_wrong", "nonsense", tok["revoked"]):
            r = call(http, method, path, bad, push_id)
            assert r.status_code == 401 and r.json()["detail"] == "invalid or revoked token", where
        other = RX1 if owner == "admin" else "admin"
        r = call(http, method, path, tok[other], push_id)
        assert r.status_code == 403, where
        assert call(http, method, path, tok[owner], push_id).status_code in (200, 201), where
    # a device token reaches only its own box
    r = http.get(f"/jam-software/devices/{RX1}/pending", headers=auth(tok[RX2]))
    assert r.status_code == 403 and "belongs to R0000000002, not R0000000001" in r.json()["detail"]
    r = http.post(
        "/jam-software/events",
        json={"rxid": RX1, "event_type": "installed", "push_id": push_id},
        headers=auth(tok[RX2]),
    )
    assert r.status_code == 403
    assert (
        query(db.dsn, "SELECT count(*) FROM jam_events WHERE rxid = %s", (RX1,))[0][0] == 1
    )  # the admitted one


def test_idempotency_over_http(http, tok):
    first = make_push(http, tok, key="rollout-42")
    assert first.status_code == 201 and first.json()["replayed"] is False
    assert [t["rxid"] for t in first.json()["targets"]] == [RX1, RX2]
    again = make_push(http, tok, key="rollout-42", targets={"rxids": [RX2, RX1, RX1]})
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert again.json()["push_id"] == first.json()["push_id"]
    clash = make_push(http, tok, key="rollout-42", version="4.2.2")
    assert clash.status_code == 409 and "different push" in clash.json()["detail"]
    r = http.post("/jam-software/pushes", json=push_body(), headers=auth(tok["admin"]))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


@pytest.mark.parametrize(
    "over, loc, message",
    [
        ({"url": "http://apps.example.com/p.apk"}, ["body", "url"], "must use https"),
        ({"sha256": "cd" * 20}, ["body", "sha256"], "at least 64 characters"),
        ({"targets": {"rxids": ["R12"]}}, ["body", "targets", "rxids", 0], "should match pattern"),
        (
            {"targets": {"filter": {}}},
            ["body", "targets", "filter"],
            "at least one of model, fw, app",
        ),
        ({"rollout_percent": 0}, ["body", "rollout_percent"], "greater than or equal to 1"),
        ({"package": None}, ["body", "package"], "valid string"),
    ],
)
def test_bad_push_bodies_are_422_with_the_field_and_reason(http, tok, over, loc, message):
    r = make_push(http, tok, **over)
    assert r.status_code == 422
    errors = r.json()["detail"]
    assert any(e["loc"] == loc and message in e["msg"] for e in errors), errors


def test_bad_paths_and_json_are_client_errors(http, tok):
    assert http.get("/jam-software/devices/R12/pending", headers=auth(tok[RX1])).status_code == 422
    assert (
        http.get("/jam-software/pushes/not-a-uuid", headers=auth(tok["admin"])).status_code == 422
    )
    assert (
        http.get(f"/jam-software/pushes/{uuid.uuid4()}", headers=auth(tok["admin"])).status_code
        == 404
    )
    r = http.post(
        "/jam-software/events",
        content=b'{"rxid": "R0000000001", "event_type": "x", "v": NaN}',
        headers={**auth(tok[RX1]), "content-type": "application/json"},
    )
    assert r.status_code == 422 and "not a JSON number" in r.json()["detail"][0]["msg"]
    r = http.post(
        "/jam-software/events",
        content=b'{"rxid": "R0000000001", "event_type": "x", "v": "\\u0000\\udccf"}',
        headers={**auth(tok[RX1]), "content-type": "application/json"},
    )
    assert r.status_code == 201  # kept, with U+FFFD for what PostgreSQL cannot store
    r = http.post(
        "/jam-software/events",
        content=b"{not json",
        headers={**auth(tok[RX1]), "content-type": "application/json"},
    )
    assert r.status_code == 400 and "could not be read" in r.json()["detail"]
    assert r.json()["hint"]


def test_bodies_over_the_limit_are_413(http, tok):
    big = {"rxid": RX1, "event_type": "log_dump", "text": "x" * 70_000}
    r = http.post("/jam-software/events", json=big, headers=auth(tok[RX1]))
    assert r.status_code == 413 and "65536 bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"rxid": "R0000000001", "event_type": "x", "t": "'
        for _ in range(8):
            yield b"y" * 10_000
        yield b'"}'

    r = http.post(
        "/jam-software/events",
        content=chunks(),
        headers={**auth(tok[RX1]), "content-type": "application/json"},
    )
    assert r.status_code == 413
    ok = {"rxid": RX1, "event_type": "log_dump", "text": "x" * 60_000}  # just under: accepted
    assert http.post("/jam-software/events", json=ok, headers=auth(tok[RX1])).status_code == 201


def test_rollout_state_machine_over_http(http, tok, db):
    push_id = make_push(http, tok).json()["push_id"]
    r = http.get(f"/jam-software/devices/{RX1}/pending", headers=auth(tok[RX1]))
    assert [(p["push_id"], p["state"]) for p in r.json()["pushes"]] == [(push_id, "delivered")]

    def event(etype, rx=RX1, **extra):
        r = http.post(
            "/jam-software/events",
            json={"rxid": rx, "event_type": etype, "push_id": push_id, **extra},
            headers=auth(tok[rx]),
        )
        assert r.status_code == 201, r.text
        return r.json()

    first = event("download_started")
    assert (first["state"], first["state_changed"], first["push_id"]) == (
        "delivered",
        False,
        push_id,
    )
    assert event("installed", detail="took 4 s")["state_changed"] is True
    late = event("failed", error="late report")
    assert late["state"] == "installed" and late["state_changed"] is False
    assert event("failed", rx=RX2, error="hash mismatch")["state"] == "failed"
    assert (
        http.get(f"/jam-software/devices/{RX1}/pending", headers=auth(tok[RX1])).json()["pushes"]
        == []
    )
    p = http.get(f"/jam-software/pushes/{push_id}", headers=auth(tok["admin"])).json()
    assert p["counts"] == {"pending": 0, "delivered": 0, "installed": 1, "failed": 1}
    t = {x["rxid"]: x for x in p["targets"]}
    assert t[RX1]["installed_at"] and t[RX1]["last_detail"] == "failed: late report"
    assert t[RX2]["last_detail"] == "failed: hash mismatch" and t[RX2]["delivered_at"]
    # not a target of this push, and no push at all: recorded anyway
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        rx3 = tokens.create_token(conn, rxid=RX3)[1]
    r = http.post(
        "/jam-software/events",
        json={"rxid": RX3, "event_type": "installed", "push_id": push_id},
        headers=auth(rx3),
    )
    assert r.status_code == 201 and r.json()["state"] is None
    assert query(db.dsn, "SELECT count(*) FROM jam_events")[0][0] == 5


def test_list_pages_and_impact_over_http(http, tok, db):
    ids = [make_push(http, tok, version=f"1.{i}").json()["push_id"] for i in range(3)]
    seen, after = [], None
    while True:
        r = http.get(
            "/jam-software/pushes",
            params={"limit": 2, **({"after": after} if after else {})},
            headers=auth(tok["admin"]),
        ).json()
        seen += [p["push_id"] for p in r["items"]]
        after = r["next_after"]
        if not after:
            break
    assert seen == ids[::-1]
    assert (
        http.get(
            "/jam-software/pushes", params={"after": "x"}, headers=auth(tok["admin"])
        ).status_code
        == 422
    )
    assert (
        http.get(
            "/jam-software/pushes", params={"after": str(uuid.uuid4())}, headers=auth(tok["admin"])
        ).status_code
        == 404
    )

    pid = ids[0]
    http.post(
        "/jam-software/events",
        json={"rxid": RX1, "event_type": "installed", "push_id": pid},
        headers=auth(tok[RX1]),
    )
    installed_at = query(
        db.dsn, "SELECT installed_at FROM jam_targets WHERE push_id = %s AND rxid = %s", (pid, RX1)
    )[0][0]
    with psycopg.connect(db.dsn) as conn:
        for start, hours, freezes, flagged in (
            (-30, 2, 6, True),
            (-10, 2, 2, None),
            (5, 4, 1, False),
        ):
            sid = uuid.uuid4()
            s = installed_at + timedelta(hours=start)
            conn.execute(
                "INSERT INTO sessions"
                " (rxid, session_id, start_ts, end_ts, duration_s, video_freeze_count)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (RX1, sid, s, s + timedelta(hours=hours), hours * 3600, freezes),
            )
            if flagged is not None:
                conn.execute(
                    "INSERT INTO anomalies_consolidated (rxid, session_id, start_ts, is_anomaly)"
                    " VALUES (%s, %s, %s, %s)",
                    (RX1, sid, s, flagged),
                )
    r = http.get(f"/jam-software/pushes/{pid}/impact", headers=auth(tok["admin"]))
    assert r.status_code == 200
    out = r.json()
    rows = {t["rxid"]: t for t in out["targets"]}
    a = rows[RX1]
    assert (a["sessions_before"], a["sessions_after"]) == (2, 1)
    assert a["freezes_per_hour_before"] == pytest.approx(2.0) and a[
        "freezes_per_hour_after"
    ] == pytest.approx(0.25)
    assert a["anomaly_rate_before"] == pytest.approx(0.5) and a["anomaly_rate_after"] == 0
    assert rows[RX2]["anomaly_rate_after"] is None and rows[RX2]["state"] == "pending"
    assert out["summary"]["installed"] == 1 and out["summary"]["after"][
        "viewing_hours"
    ] == pytest.approx(4)
    narrow = http.get(
        f"/jam-software/pushes/{pid}/impact",
        params={"window_hours": 12},
        headers=auth(tok["admin"]),
    ).json()
    assert {t["rxid"]: t for t in narrow["targets"]}[RX1]["sessions_before"] == 1
    assert (
        http.get(
            f"/jam-software/pushes/{pid}/impact",
            params={"window_hours": 0},
            headers=auth(tok["admin"]),
        ).status_code
        == 422
    )


def test_request_metrics_reach_rays_metrics_endpoint(http, tok):
    """The custom per-route counter is exported by Ray's metrics agent (what the dashboard
    reads)."""
    import ray

    for _ in range(3):
        http.get(f"/jam-software/devices/{RX1}/pending", headers=auth(tok[RX1]))
    node = ray._private.worker.global_worker.node
    url = f"http://{node.node_ip_address}:{node.metrics_export_port}/metrics"
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline:
        text = httpx.get(url, timeout=10).text
        if "logalyzer_api_requests" in text and "/jam-software/devices/{rxid}/pending" in text:
            break
        time.sleep(2)
    assert (
        "logalyzer_api_requests" in text and 'route="/jam-software/devices/{rxid}/pending"' in text
    )


# --------------------------------------------------------------------------- scoring


@pytest.fixture()
def served(http, tok, db):
    """Versions 1 and 2 of both detectors registered; version 2 served."""
    train_models(db)
    train_models(db, seed=1)
    r = http.post("/v1/models/reload", headers=auth(tok["admin"]))
    assert r.status_code == 200 and r.json()["after"] == {"lstm": 2, "ae": 2}, r.text
    return http


def test_score_over_http_raw_lines_and_measures_agree_and_store(served, tok, db):
    http = served
    lines = box_lines(RX1, 4, seed=21, storms={1})
    store_sessions(db.dsn, RX1, lines)
    a = http.post(
        "/v1/score",
        params={"store": "true"},
        json={"sessions": [{"rxid": RX1, "lines": lines}]},
        headers=auth(tok["admin"]),  # storing is the admin's: a box may not store its verdict
    )
    b = http.post("/v1/score", json={"sessions": measures_of(lines, RX1)}, headers=auth(tok[RX2]))
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    a, b = a.json(), b.json()
    assert a["stored"] == 4 and b["stored"] == 0 and a["model_versions"] == {"lstm": 2, "ae": 2}
    assert (
        [s["is_anomaly"] for s in a["sessions"]]
        == [s["is_anomaly"] for s in b["sessions"]]
        == [False, True, False, False]
    )
    assert [s["scores"]["lstm"]["score"] for s in a["sessions"]] == pytest.approx(
        [s["scores"]["lstm"]["score"] for s in b["sessions"]], rel=1e-6
    )
    assert query(db.dsn, "SELECT count(*), min(model_version) FROM anomalies")[0] == (8, 2)
    assert query(db.dsn, "SELECT count(*) FROM anomalies_consolidated WHERE is_anomaly")[0][0] == 1
    r = http.post("/v1/score", json={"sessions": [{"duration_s": "long"}]}, headers=auth(tok[RX1]))
    assert r.status_code == 422
    assert http.post("/v1/score", json={"sessions": measures_of(lines, RX1)}).status_code == 401


def test_concurrent_requests_are_batched(served, tok):
    """Single-session requests arriving together are scored in shared batches (@serve.batch)."""
    from concurrent.futures import ThreadPoolExecutor

    one = measures_of(box_lines(RX1, 1, seed=4), RX1)
    base = str(served.base_url)

    def call(_):
        with httpx.Client(base_url=base, timeout=60) as c:
            r = c.post("/v1/score", json={"sessions": one}, headers=auth(tok[RX1]))
            return r.status_code, int(r.headers["x-score-batch"])

    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(call, range(96)))
    assert {s for s, _ in got} == {200}
    assert max(n for _, n in got) > 1, got


def test_reload_under_traffic_drops_nothing_and_switches_versions(served, tok):
    """Clients score without pause while the versions are switched back and forth: every
    request answers 200, each answer is scored by one consistent set of versions, and both
    sets are seen."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    base = str(served.base_url)
    body = {"sessions": measures_of(box_lines(RX1, 3, seed=8, storms={1}), RX1)}
    stop = threading.Event()

    def client(_):
        seen = []
        with httpx.Client(base_url=base, timeout=60) as c:
            while not stop.is_set():
                r = c.post("/v1/score", json=body, headers=auth(tok["admin"]))
                if r.status_code != 200:
                    seen.append(("error", r.status_code, r.text[:200]))
                    continue
                out = r.json()
                per = {
                    (k, v["model_version"]) for s in out["sessions"] for k, v in s["scores"].items()
                }
                seen.append(
                    (
                        "ok",
                        tuple(sorted(out["model_versions"].items())),
                        per == set(out["model_versions"].items()),
                    )
                )
        return seen

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client, k) for k in range(4)]
        time.sleep(1.0)
        for versions in ({"lstm": 1, "ae": 1}, {}, {"lstm": 1, "ae": 1}, {}):
            r = served.post(
                "/v1/models/reload", json={"versions": versions}, headers=auth(tok["admin"])
            )
            assert r.status_code == 200, r.text
            time.sleep(1.0)
        stop.set()
        results = [x for f in futures for x in f.result()]
    assert [x for x in results if x[0] != "ok"] == []
    assert all(x[2] for x in results)  # every answer scored by the versions it names
    assert {x[1] for x in results} == {(("ae", 1), ("lstm", 1)), (("ae", 2), ("lstm", 2))}
    assert len(results) > 20
