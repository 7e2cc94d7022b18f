"""Scoring: raw lines → sessions (the batch path's code), batched LSTM surprise, and the
/v1/score and /v1/models/reload routes in-process (no Ray) over the test PostgreSQL, with tiny
detectors trained here in a second with plain torch and registered in the real registry.
Over real HTTP through Serve: tests/test_serve.py."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from dataclasses import replace

import numpy as np
import psycopg
import pytest
import torch
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from logalyzer.core import lstm
from logalyzer.core.detectors import LSTMDetector
from logalyzer.core.features import (
    FEATURE_NAMES,
    MEASURES,
    REQUIRED,
    feature_matrix,
    session_features,
)
from logalyzer.core.rawlines import event_from_data, events_from_lines, sessions_from_lines
from logalyzer.http.app import Service, create_api
from logalyzer.http.score import ScoreResponse, enable
from logalyzer.settings import Settings
from logalyzer.store import tokens
from logalyzer.store.db import ensure_partition
from logalyzer.store.sessions import read_events

from .helpers import (
    RX,
    RX2,
    box_lines,
    measures_of,
    query,
    store_sessions,
    train_models,
    wait_ready,
)

# --------------------------------------------------------------------------- pure core


def test_raw_lines_give_the_ground_truth_sessions_of_a_synthetic_fleet(tmp_path):
    """Every header variant and both VAR dialects: lines → sessions equals the generator's truth
    (which the batch ingest + sessionize path is held to in test_sessionize)."""
    from logalyzer.core.files import LineReader, date_from_path, rxid_from_path
    from logalyzer.core.sessions import _iso
    from logalyzer.core.synth import FleetSpec, generate_fleet

    from .helpers import compare

    generate_fleet(tmp_path, FleetSpec(devices=10, hours=1.5, seed=5, noise_lines_per_minute=30))
    truth = json.loads((tmp_path / "ground_truth.json").read_text())
    files = defaultdict(list)
    for p in sorted(tmp_path.rglob("*")):
        if p.is_file() and rxid_from_path(p):
            files[rxid_from_path(p)].append(p)
    got = {}
    for rx, paths in files.items():
        text = "\n".join(
            line for p in paths for chunk in LineReader(p) for line in chunk.lines.to_pylist()
        )
        for m, keys in sessions_from_lines(text, rx, anchor=date_from_path(paths[0])):
            got[(rx, _iso(m["start_ts"]))] = {**m, "end": _iso(m["end_ts"])}
            assert len(keys) == m["event_count"]
    assert len(got) == len(truth["sessions"]) > 20
    assert compare(truth["sessions"], got) == []


ODD = [  # (event type, data) with every kind of value the SQL extraction reads differently
    ("ChangeContent", {"cid": 101, "src": "live", "seq": "7"}),
    ("BlackScreen", {"state": "START", "dur_ms": "12x", "seq": 8.9}),
    ("BlackScreen", {"state": True, "dur_ms": 1.9e3, "seq": None}),
    ("VideoFreeze", {"dur_ms": "-42", "seq": "1234567890123456789"}),
    ("FirstFrame", {"ttff_ms": {"a": 1}, "seq": [1]}),
    ("DisplayDrop", {"dropped": False, "seq": 3}),
    ("HdmiHotplug", {"connected": False, "port": 1, "seq": 4, "sid": 2, "mono": 5}),
    ("PlaybackError", {"fatal": "TRUE", "code": 7, "msg": {"x": [1, "y"]}}),
    ("StandbyEnter", None),
    ("TrickMode", {"mode": "ff", "rate": 2.5, "seq": 99999999999999999999}),
]


def test_the_python_extraction_mirrors_the_sql_one(db):
    """``rawlines.event_from_data`` against ``sessionize.events_query`` on the same stored rows."""
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        ensure_partition(conn, RX)
        for i, (etype, data) in enumerate(ODD):
            conn.execute(
                "INSERT INTO log_lines (rxid, line_md5, line_no, ts, ts_inferred, status,"
                " truncated, message, event_type, data) VALUES (%s, md5(%s)::uuid, %s,"
                " to_timestamp(%s), false, 'ok', false, '', %s, %s)",
                (
                    RX,
                    str(i),
                    i,
                    1_710_662_400 + i * 0.0015,
                    etype,
                    json.dumps(data) if data is not None else None,
                ),
            )
        try:
            stored = read_events(conn, RX)
        except psycopg.errors.NumericValueOutOfRange:  # a seq beyond bigint fails the SQL path
            conn.execute(f"DELETE FROM {RX} WHERE event_type = 'TrickMode'")
            stored = read_events(conn, RX)
        rows = conn.execute(
            f"SELECT (extract(epoch FROM ts) * 1000)::bigint, event_type, data FROM {RX}"
        ).fetchall()
    mine = sorted(
        (event_from_data(ms, et, d) for ms, et, d in rows),
        key=lambda e: (e.ts_ms, e.seq is None, e.seq or 0),
    )
    assert mine == stored


def test_duplicate_lines_count_once_and_events_are_in_time_then_seq_order():
    lines = box_lines(RX, 2, seed=1)
    shuffled = lines[::-1] + lines[:3]
    assert events_from_lines(shuffled, RX) == events_from_lines(lines, RX)
    assert [e.seq for e in events_from_lines(lines, RX)] == list(range(1, len(lines) + 1))


def _windows(vocab: lstm.Vocab, seq: list[str], window: int) -> np.ndarray:
    """The model's rows of one session, written plainly (the reference for the stacked build):
    ``<bos> keys <eos>`` as ids, each key's (and the end's) ``window`` ids before it, left-padded
    with 0, and itself last."""
    unk = vocab.index[lstm.UNK]
    ids = [vocab.index[lstm.BOS], *(vocab.index.get(k, unk) for k in seq), vocab.index[lstm.EOS]]
    padded = [0] * window + ids
    rows = [padded[t - window : t + 1] for t in range(window + 1, len(padded))]
    return np.array(rows, np.int64).reshape(len(rows), window + 1)


@torch.no_grad()
def _surprise_of_one(det: LSTMDetector, seq: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """-log p and rank of each event of one session, straight from the model."""
    w = torch.from_numpy(_windows(det.vocab, seq, det.cfg.window))
    logp = torch.log_softmax(det.model(w[:, :-1]), dim=-1)  # (n, V)
    own = logp.gather(1, w[:, -1:])  # (n, 1)
    return (-own[:, 0]).numpy(), (logp > own).sum(dim=1).numpy()


def test_batched_surprise_equals_one_session_at_a_time():
    seqs = [s for _, s in sessions_from_lines(box_lines(RX, 20, seed=2, storms={3}), RX)] + [
        [],
        ["Nope"],
    ]
    cfg = replace(lstm.LSTMConfig(), hidden=16, layers=1)
    det = LSTMDetector.new(cfg, seqs)
    nll, rank, rows_of = lstm.surprise_rows(det.model, det.vocab, seqs, cfg.window, group=50)
    cuts = np.cumsum(rows_of)[:-1]
    together = zip(np.split(nll, cuts), np.split(rank, cuts))
    for seq, (nll, rank) in zip(seqs, together):
        n1, r1 = _surprise_of_one(det, seq)
        np.testing.assert_allclose(nll, n1, rtol=1e-5, atol=1e-6)
        assert (rank == r1).all()


keys_st = st.lists(st.lists(st.sampled_from(["A", "B", "C", "Nope"]), max_size=30), max_size=8)


@given(seqs=keys_st, window=st.integers(1, 12))
@hsettings(max_examples=60, deadline=None)
def test_stacked_windows_equal_one_session_at_a_time(seqs, window):
    vocab = lstm.Vocab.build([["A", "B", "C"]])
    rows, rows_of = lstm.many_windows(vocab, seqs, window)
    one = [_windows(vocab, s, window) for s in seqs]
    assert rows_of.tolist() == [len(s) + 1 for s in seqs]
    expected = np.concatenate(one) if one else np.zeros((0, window + 1), np.int64)
    assert rows.tolist() == expected.tolist()


@pytest.mark.parametrize("vocab_size", [5, 64, 65, 3000])
def test_distinct_histories_rebuild_every_row(vocab_size):
    """Packed into integers (small vocabularies) or not, the distinct rows give back each row."""
    rng = np.random.default_rng(vocab_size)
    hist = rng.integers(0, min(vocab_size, 4), size=(500, 10))
    hist[:, 0] = rng.integers(0, vocab_size, size=500)
    distinct, inv = lstm._distinct_rows(hist, vocab_size)
    assert (distinct[inv] == hist).all()
    assert len(distinct) == len({tuple(r) for r in hist.tolist()})


def _reference_score(nll, rank, cfg):
    """The rule as the module docstring states it, one session at a time (in float32, as the
    arrays come; the library sums in float64, hence the tolerance)."""
    miss = (nll > -np.log(cfg.min_p)) | ((rank >= cfg.top_g) & (cfg.top_g > 0))
    if not miss.any():
        return (1 - np.exp(-nll.max() / 10)) * 0.5
    return miss.sum() + (1 - np.exp(-nll[miss].mean() / 10))


@given(
    sizes=st.lists(st.integers(1, 20), min_size=1, max_size=10),
    seed=st.integers(0, 2**16),
    top_g=st.sampled_from((1, 2, 0)),  # 0: no rank rule, improbable events only
)
@hsettings(max_examples=60, deadline=None)
def test_session_scores_and_explanations_follow_the_rule(sizes, seed, top_g):
    rng = np.random.default_rng(seed)
    cfg = replace(lstm.LSTMConfig(), top_g=top_g)
    n = sum(sizes)
    nll = rng.exponential(2.0, n).astype(np.float32)
    rank = rng.integers(0, 3, n)
    rows_of = np.array(sizes)
    scores, n_miss = lstm.session_scores(nll, rank, rows_of, cfg)
    seqs = [[f"k{j}" for j in range(k - 1)] for k in sizes]
    why = lstm.explain(seqs, nll, rank, rows_of, cfg, limit=3)
    at = 0
    for i, k in enumerate(sizes):
        a, r = nll[at : at + k], rank[at : at + k]
        assert scores[i] == pytest.approx(_reference_score(a, r, cfg), rel=1e-5, abs=1e-7)
        miss = np.flatnonzero(lstm.misses(a, r, cfg))
        assert n_miss[i] == len(miss)
        top = sorted(miss.tolist(), key=lambda j: (-a[j], j))[:3]
        assert [t["position"] for t in why[i]] == top
        # the same alone as in the batch
        assert why[i] == lstm.explain([seqs[i]], a, r, np.array([k]), cfg, limit=3)[0]
        at += k


def test_feature_matrix_equals_row_by_row_and_reads_absent_as_zero():
    full = {c: 3 for c in MEASURES} | {"duration_s": 600.0, "ttff_ms": 900, "fatal_error": True}
    no_ttff = full | {"ttff_ms": None, "rebuffer_ratio": None}
    bare = {"duration_s": 0}
    m = feature_matrix([full, no_ttff, bare])
    for row, vec in zip([full, no_ttff, bare], m.tolist()):
        assert session_features(row) == vec
    named = [dict(zip(FEATURE_NAMES, v)) for v in m.tolist()]
    assert named[0]["no_first_frame"] == 0 and named[1]["no_first_frame"] == 1
    assert named[1]["log_ttff_ms"] == pytest.approx(np.log1p(1000))
    assert named[0]["fatal_error"] == 1 and named[2]["fatal_error"] == 0
    assert named[2]["freezes_per_h"] == 0 and named[2]["log_duration_s"] == 0
    # three freezes in ten minutes: 18 an hour (the hour is floored at ten minutes)
    assert named[0]["freezes_per_h"] == pytest.approx(np.log1p(18))
    with pytest.raises(KeyError):
        feature_matrix([{"video_freeze_count": 1}])


# --------------------------------------------------------------------------- the routes in-process


@pytest.fixture()
def models(db):
    return train_models(db)


@pytest.fixture()
def tok(db):
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        return {
            "admin": tokens.create_token(conn, admin=True, name="ops")[1],
            RX: tokens.create_token(conn, rxid=RX)[1],
            RX2: tokens.create_token(conn, rxid=RX2)[1],
        }


def make_client(dsn, **settings):
    service = Service(dsn, Settings(dsn=dsn, score_model_poll_s=0.5, **settings))
    client = TestClient(create_api(service, routers=(enable(service),)))
    return client, service


@pytest.fixture()
def client(db, models, tok):
    c, service = make_client(db.dsn)
    with c:
        wait_ready(c)
        yield c


def H(secret):
    return {"Authorization": f"Bearer {secret}"}


def test_scores_from_measures_and_from_raw_lines_agree(client, tok, models):
    lines = box_lines(RX, 6, seed=77, storms={2})
    as_measures = measures_of(lines)
    a = client.post("/v1/score", json={"sessions": as_measures}, headers=H(tok[RX]))
    b = client.post(
        "/v1/score", json={"sessions": [{"rxid": RX, "lines": lines}]}, headers=H(tok[RX])
    )
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    for r in (a, b):  # the answer is built unvalidated: it must still be what the schema says
        assert ScoreResponse.model_validate_json(r.content).model_dump(mode="json") == r.json()
    a, b = a.json(), b.json()
    assert a["model_versions"] == b["model_versions"] == {"lstm": 1, "ae": 1}
    assert len(a["sessions"]) == len(b["sessions"]) == 6
    for x, y in zip(a["sessions"], b["sessions"]):
        assert (x["session_id"], x["is_anomaly"], x["detectors"]) == (
            y["session_id"],
            y["is_anomaly"],
            y["detectors"],
        )
        for k in ("lstm", "ae"):
            assert x["scores"][k]["score"] == pytest.approx(y["scores"][k]["score"], rel=1e-6)
            assert x["scores"][k]["model_version"] == 1
    assert [s["is_anomaly"] for s in b["sessions"]] == [False, False, True, False, False, False]
    storm = b["sessions"][2]
    assert set(storm["detectors"]) == {"lstm", "ae"} and storm["scores"]["ae"]["ratio"] > 1
    assert storm["reasons"]["features"] and storm["reasons"]["transitions"]
    assert (
        storm["measures"]["video_freeze_count"] == 25
        and storm["source"] == "lines"
        and storm["item"] == 0
    )
    assert storm["start_ts"].startswith("2024-03-17")
    # the same session, measures only: the autoencoder alone
    bare = {k: v for k, v in as_measures[2].items() if k != "event_keys"}
    r = client.post("/v1/score", json={"sessions": [bare]}, headers=H(tok["admin"])).json()
    assert list(r["sessions"][0]["scores"]) == ["ae"] and r["sessions"][0]["is_anomaly"]


def test_the_box_named_sets_what_is_usual(db, tok):
    """With ``rxid`` the autoencoder reads a session's counts against that box's usual (its
    training sessions' median, in the checkpoint); without it, or for a box the model was not
    trained on, against the fleet's: 20 display drops are ordinary on a box whose firmware
    drops frames in every session, and anomalous anywhere else."""
    train_models(db, busy=RX2)
    c, _ = make_client(db.dsn)
    session = {**measures_of(box_lines(RX, 1, seed=3))[0], "session_id": None}
    session.update(display_drop_count=20, dropped_frames=200, event_keys=None)
    items = [{**session, "rxid": rx} for rx in (RX2, None, "R9999999999")]
    with c:
        wait_ready(c)
        r = c.post("/v1/score", json={"sessions": items}, headers=H(tok["admin"]))
    assert r.status_code == 200, r.text
    got = r.json()["sessions"]
    assert [s["is_anomaly"] for s in got] == [False, True, True]
    assert got[0]["scores"]["ae"]["score"] < got[1]["scores"]["ae"]["score"] / 3
    assert got[1]["scores"]["ae"]["score"] == got[2]["scores"]["ae"]["score"]
    reasons = [f["text"] for f in got[1]["reasons"]["features"]]
    assert any(t.startswith(("20 display drops (", "200 dropped frames (")) for t in reasons)


def test_a_batch_of_a_thousand_sessions(client, tok):
    many = measures_of(box_lines(RX, 250, seed=5)) * 4
    r = client.post("/v1/score", json={"sessions": many}, headers=H(tok["admin"]))
    assert r.status_code == 200 and len(r.json()["sessions"]) == 1000
    assert [s["item"] for s in r.json()["sessions"]] == list(range(1000))


def test_the_measures_model_is_exactly_the_detectors_input(db):
    """The /v1/score measures item is built from core.features.MEASURES: its OpenAPI schema
    lists those columns (plus the session's identity and event keys) with their bounds."""
    c, _ = make_client(db.dsn)
    schema = c.get("/openapi.json").json()["components"]["schemas"]["MeasuresIn"]
    assert list(schema["properties"]) == ["rxid", "session_id", *MEASURES, "event_keys"]
    assert schema["required"] == [n for n, m in MEASURES.items() if m.default is REQUIRED]
    assert schema["properties"]["rebuffer_ratio"]["anyOf"][0]["maximum"] == 1.0
    assert schema["properties"]["video_freeze_count"]["minimum"] == 0
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(
    "body, loc, message",
    [
        ({"sessions": []}, ["body", "sessions"], "at least 1"),
        ({"sessions": [{"duration_s": 1}] * 1001}, ["body", "sessions"], "at most 1000"),
        (
            {"sessions": [{"duration_s": -1}]},
            ["body", "sessions", 0, "measures", "duration_s"],
            "greater than or equal",
        ),
        (
            {"sessions": [{"duration_s": 1, "freezes": 3}]},
            ["body", "sessions", 0, "measures", "freezes"],
            "Extra inputs",
        ),
        (
            {"sessions": [{"ttff_ms": 3}]},
            ["body", "sessions", 0, "measures", "duration_s"],
            "Field required",
        ),
        (
            {"sessions": [{"duration_s": 1, "rebuffer_ratio": 2}]},
            ["body", "sessions", 0, "measures", "rebuffer_ratio"],
            "less than",
        ),
        (
            {"sessions": [{"duration_s": 1, "event_keys": [""]}]},
            ["body", "sessions", 0, "measures", "event_keys", 0],
            "at least 1",
        ),
        (
            {"sessions": [{"duration_s": 1, "rxid": "R1"}]},
            ["body", "sessions", 0, "measures", "rxid"],
            "pattern",
        ),
        (
            {"sessions": [{"lines": ["x"], "tz": "Mars/Olympus"}]},
            ["body", "sessions", 0, "lines", "tz"],
            "unknown time zone",
        ),
        (
            {"sessions": [{"lines": ["x"] * 20_001}]},
            ["body", "sessions", 0, "lines", "lines"],
            "at most 20000",
        ),
        (
            {"sessions": [{"lines": ["x"], "duration_s": 1}]},
            ["body", "sessions", 0, "lines", "duration_s"],
            "Extra inputs",
        ),
        ({"sessions": [1]}, ["body", "sessions", 0, "measures"], "valid dictionary"),
    ],
)
def test_malformed_requests_are_422_with_the_field(client, tok, body, loc, message):
    r = client.post("/v1/score", json=body, headers=H(tok["admin"]))
    assert r.status_code == 422, r.text
    assert any(e["loc"] == loc and message in e["msg"] for e in r.json()["detail"]), r.json()


def test_unusable_inputs_are_422_not_500(client, tok):
    r = client.post(
        "/v1/score",
        content=b'{"sessions": [{"duration_s": NaN}]}',
        headers={**H(tok["admin"]), "content-type": "application/json"},
    )
    assert r.status_code == 422
    r = client.post(
        "/v1/score",
        content=b'{"sessions": [{"lines": "\\ud800"}]}',
        headers={**H(tok["admin"]), "content-type": "application/json"},
    )
    assert r.status_code == 422 and "unicode" in str(r.json()["detail"])
    # raw lines without a session: no result for that item, said so (a batch is not refused for it)
    one = measures_of(box_lines(RX, 1, seed=3))
    r = client.post(
        "/v1/score",
        json={"sessions": [{"lines": "no logcat here\n\x00"}, one[0]]},
        headers=H(tok["admin"]),
    )
    assert (
        r.status_code == 200
        and r.json()["empty_items"] == [0]
        and [s["item"] for s in r.json()["sessions"]] == [1]
    )
    r = client.post(
        "/v1/score",
        json={
            "sessions": [
                {"duration_s": 1e9, "event_count": 10**12, "event_keys": ["never-seen"] * 50}
            ]
        },
        headers=H(tok["admin"]),
    )
    assert r.status_code == 200 and r.json()["sessions"][0]["is_anomaly"]
    r = client.post("/v1/score", content=b"x" * (4 * 1024 * 1024 + 1), headers=H(tok["admin"]))
    assert r.status_code == 413


def test_who_may_score_store_and_reload(client, tok):
    one = measures_of(box_lines(RX, 1, seed=3))
    assert client.post("/v1/score", json={"sessions": one}).status_code == 401
    assert (
        client.post("/v1/score", json={"sessions": one}, headers=H("lgz_nope")).status_code == 401
    )
    assert (
        client.post("/v1/score", json={"sessions": one}, headers=H(tok[RX2])).status_code == 200
    )  # read-only
    for who in (RX2, RX):  # another box's session, and its own: a box never stores a verdict
        r = client.post("/v1/score?store=true", json={"sessions": one}, headers=H(tok[who]))
        assert r.status_code == 403 and "may score but not store" in r.json()["detail"]
        assert "admin token" in r.json()["hint"]
    assert client.post("/v1/models/reload", headers=H(tok[RX])).status_code == 403
    assert client.post("/v1/models/reload").status_code == 401
    assert client.post("/v1/models/reload", headers=H(tok["admin"])).status_code == 200


def test_store_writes_anomalies_and_consolidated_rows(client, tok, db):
    lines = box_lines(RX, 5, seed=9, storms={1, 3})
    found = store_sessions(db.dsn, RX, lines)
    r = client.post(
        "/v1/score?store=true",
        json={"sessions": [{"rxid": RX, "lines": lines}]},
        headers=H(tok["admin"]),
    )
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == 5
    rows = query(
        db.dsn,
        "SELECT session_id::text, detector, model_version, is_anomaly FROM anomalies ORDER BY 1, 2",
    )
    assert len(rows) == 10 and {r[2] for r in rows} == {1}
    flagged = {found[i][0]["session_id"] for i in (1, 3)}
    cons = query(
        db.dsn,
        "SELECT session_id::text, is_anomaly, detectors, model_versions, start_ts"
        " FROM anomalies_consolidated",
    )
    assert {c[0] for c in cons} == flagged and all(c[1] for c in cons)
    assert cons[0][3] == {"lstm": 1, "ae": 1}
    starts = {m["session_id"]: m["start_ts"] for m, _ in found}
    assert all(int(c[4].timestamp() * 1000) == starts[c[0]] for c in cons)
    # the same rows as the batch job computes from the table
    # (store.scores.read_sessions + core.verdict.score_sessions)
    from logalyzer.core.verdict import score_sessions
    from logalyzer.store.registry import load
    from logalyzer.store.scores import read_sessions

    with psycopg.connect(db.dsn) as conn:
        batch = read_sessions(conn, ids=[(RX, m["session_id"]) for m, _ in found])
    ms = {k: load(db, k) for k in ("lstm", "ae")}
    want = {
        (str(s["session_id"]), k): v.score
        for s, vs in zip(batch, score_sessions(ms, batch))
        for k, v in vs.items()
    }
    got = dict(
        ((sid, det), sc)
        for sid, det, sc in query(db.dsn, "SELECT session_id::text, detector, score FROM anomalies")
    )
    assert got == pytest.approx(want, rel=1e-6)

    # admin, measures input; one session unknown: 409 and nothing written
    known = measures_of(lines)[:2]
    unknown = {**known[0], "session_id": str(uuid.uuid4())}
    before = query(db.dsn, "SELECT max(scored_at) FROM anomalies")[0][0]
    r = client.post(
        "/v1/score?store=true", json={"sessions": known + [unknown]}, headers=H(tok["admin"])
    )
    assert r.status_code == 409 and unknown["session_id"] in r.json()["detail"]
    assert query(db.dsn, "SELECT max(scored_at) FROM anomalies")[0][0] == before
    r = client.post(
        "/v1/score?store=true",
        json={"sessions": [{k: v for k, v in known[0].items() if k != "session_id"}]},
        headers=H(tok["admin"]),
    )
    assert r.status_code == 422 and "rxid and session_id" in r.json()["detail"][0]["msg"]
    r = client.post(
        "/v1/score?store=true", json={"sessions": [{"lines": lines}]}, headers=H(tok["admin"])
    )
    assert r.status_code == 422
    assert (
        client.post(
            "/v1/score?store=true", json={"sessions": known}, headers=H(tok["admin"])
        ).json()["stored"]
        == 2
    )


def test_readiness_waits_for_models_and_reload_swaps_versions(db, tok):
    c, service = make_client(db.dsn)
    with c:
        r = c.get("/readyz")
        assert r.status_code == 503 and "no detector loaded" in r.json()["checks"]["models"]
        r = c.post("/v1/score", json={"sessions": [{"duration_s": 1}]}, headers=H(tok["admin"]))
        assert r.status_code == 503 and "no detector loaded" in r.json()["detail"]
        train_models(db)  # version 1 of each; the poller picks them up
        assert wait_ready(c).json()["checks"] == {"database": "ok", "models": "ok"}
        train_models(db, seed=1)  # version 2: served after a reload
        r = c.post("/v1/models/reload", json={"versions": {"lstm": 1}}, headers=H(tok["admin"]))
        assert r.status_code == 200 and r.json() == {
            "before": {"lstm": 1, "ae": 1},
            "after": {"lstm": 1, "ae": 2},
        }
        assert query(db.dsn, "SELECT detector, version, set_by FROM serving_models ORDER BY 1") == [
            ("ae", None, "token 1 (ops)"),
            ("lstm", 1, "token 1 (ops)"),
        ]
        assert service.scorer.wanted() == {"lstm": 1, "ae": 2}
        one = measures_of(box_lines(RX, 1, seed=3))
        assert c.post("/v1/score", json={"sessions": one}, headers=H(tok[RX])).json()[
            "model_versions"
        ] == {"lstm": 1, "ae": 2}
        r = c.post("/v1/models/reload", json={"versions": {"ae": 9}}, headers=H(tok["admin"]))
        assert r.status_code == 404 and "version 9 of the ae detector" in r.json()["detail"]
        assert service.scorer.current.versions == {"lstm": 1, "ae": 2}  # nothing changed
        assert (
            c.post(
                "/v1/models/reload", json={"versions": {"gru": 1}}, headers=H(tok["admin"])
            ).status_code
            == 422
        )
        r = c.post("/v1/models/reload", headers=H(tok["admin"]))
        assert r.json()["after"] == {"lstm": 2, "ae": 2}


def test_pinned_versions_from_settings(db, tok):
    train_models(db)
    train_models(db, seed=1)
    c, service = make_client(db.dsn, score_versions={"ae": 1})
    with c:
        wait_ready(c)
        assert service.scorer.current.versions == {"lstm": 2, "ae": 1}


@pytest.mark.parametrize(
    "body",
    [
        b'{"sessions": [{"rxid": "\xff\xfe"}]}',  # invalid UTF-8
        b'{"sessions": [{"ttff_ms": ' + b"9" * 5000 + b"}]}",  # past Python's int digits
        b'{"sessions": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # deeper than any parser
        b"\x00\x01 not json at all",
    ],
    ids=["invalid-utf8", "huge-int", "deep-nesting", "garbage"],
)
def test_unreadable_bodies_are_a_json_error_with_a_hint(client, tok, body):
    headers = {**H(tok["admin"]), "Content-Type": "application/json"}
    for route in ("/v1/score", "/jam-software/events"):
        r = client.post(route, content=body, headers=headers)
        assert r.status_code in (400, 413), (route, r.status_code, r.text)  # 413: events' limit
        assert r.headers["content-type"].startswith("application/json")
        assert r.json()["hint"]
        if r.status_code == 400:
            assert "could not be read" in r.json()["detail"]
    schema = client.get("/openapi.json").json()
    assert "400" in schema["paths"]["/v1/score"]["post"]["responses"]
    assert "400" in schema["paths"]["/jam-software/events"]["post"]["responses"]
