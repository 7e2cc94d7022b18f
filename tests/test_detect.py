"""Anomaly detection: behaviour of the two detectors (pure core, trained in-process), their
checkpoints and threshold rule, then the whole path end to end — Ray Train on 2 CPU workers,
Ray Data scoring into the tables — and the CLI around it."""

from __future__ import annotations

import io
import math
import random
import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from logalyzer.cli import main
from logalyzer.core.autoencoder import AEConfig, Scaler, SessionAE, balance_copies
from logalyzer.core.baseline import BaselineConfig
from logalyzer.core.detectors import (
    AEDetector,
    BaselineDetector,
    LSTMDetector,
    Verdict,
    fit_in_process,
    from_bytes,
    sqrt_fence,
    threshold_rule,
    to_bytes,
)
from logalyzer.core.features import (
    FEATURE_NAMES,
    FEATURES,
    FLEET_FEATURE_NAMES,
    READINGS,
    USUAL_COLUMNS,
    BoxNormals,
    event_key,
    event_keys,
    failed_sessions,
    feature_matrix,
    reading,
    session_features,
)
from logalyzer.core.lstm import EOS, LSTMConfig
from logalyzer.core.sessions import Event
from logalyzer.core.synth import FleetSpec, generate_fleet
from logalyzer.core.verdict import consolidate
from logalyzer.jobs.detect import detect
from logalyzer.jobs.evaluate import load_hdfs, prf
from logalyzer.jobs.ingest import ingest
from logalyzer.jobs.sessionize import sessionize
from logalyzer.jobs.train import _fit_ae, fit, new_detector, train, training_array, worker_rows

from .helpers import DATA, query

T0 = 1_710_662_400_000

# --------------------------------------------------------------------------- event keys


def test_event_keys_fold_the_attribute_that_matters_and_nothing_else():
    e = lambda t, **kw: Event(T0, 1, t, **kw)  # noqa: E731
    assert event_key(e("HdmiHotplug", connected="false")) == "HdmiHotplug:connected=false"
    assert event_key(e("HdmiHotplug", connected="1")) == "HdmiHotplug:connected=true"
    assert event_key(e("PlaybackError", fatal="true")) == "PlaybackError:fatal=true"
    assert event_key(e("HdcpStatus", detail={"ok": False})) == "HdcpStatus:ok=false"
    assert event_key(e("TrickMode", detail={"mode": "ff"})) == "TrickMode:mode=FF"
    assert event_key(e("BlackScreen", state="start")) == "BlackScreen:start"
    assert event_key(e("VideoFreeze", dur_ms=300)) == "VideoFreeze"
    assert event_key(e("ChangeContent", cid="ch1")) == event_key(e("ChangeContent", cid="vod-9"))
    assert event_key(e("SomethingNew")) == "SomethingNew"


# --------------------------------------------------------------------------- autoencoder


def normal_row(r: random.Random, **over) -> dict:
    """A sessions row like ordinary playback: minutes long, the odd drop or rebuffer."""
    dur = r.uniform(120, 3000)
    row = {
        "content_id": f"ch{r.randint(1, 50)}",
        "duration_s": dur,
        "ttff_ms": r.randint(400, 2000),
        "black_screen_count": int(r.random() < 0.1),
        "black_screen_ms": 0,
        "video_freeze_count": int(r.random() < 0.1),
        "video_freeze_ms": 0,
        "display_drop_count": r.randint(0, 2),
        "dropped_frames": r.randint(0, 10),
        "buffering_count": r.randint(0, 1),
        "rebuffer_ratio": r.uniform(0, 0.01),
        "trick_mode_count": r.randint(0, 2),
        "hdmi_event_count": 0,
        "hdmi_disconnects": 0,
        "standby_count": 0,
        "error_count": 0,
        "fatal_error": False,
        "video_start_failure": False,
        "seq_gaps": 0,
        "event_count": r.randint(2, 12),
    }
    row["black_screen_ms"] = row["black_screen_count"] * r.randint(200, 2000)
    row["video_freeze_ms"] = row["video_freeze_count"] * r.randint(200, 2000)
    return {**row, **over}


@pytest.fixture(scope="module")
def ae() -> AEDetector:
    torch.manual_seed(0)  # its initial weights: the same whichever tests ran before
    r = random.Random(1)
    rows = [normal_row(r) for _ in range(600)]
    det = AEDetector.new(replace(AEConfig(), epochs=40), rows)
    fit_in_process(det, det.training_data(rows))
    det.threshold = threshold_rule(det.scores(rows))
    return det


def test_a_freeze_storm_raises_the_autoencoder_score_and_names_freezes(ae):
    r = random.Random(2)
    base = normal_row(r, duration_s=900, video_freeze_count=0, video_freeze_ms=0)
    storm = dict(base, video_freeze_count=18, video_freeze_ms=60_000, event_count=40)
    calm, stormy = ae.score([base, storm])
    assert stormy.score > 5 * calm.score and stormy.is_anomaly and not calm.is_anomaly
    top = [f["feature"] for f in stormy.details["features"]]
    assert {"freezes_vs_box", "freezes_per_h", "freeze_share"} & set(top[:2])
    # and says so in the session's own units: 18 freezes, 72 an hour, 6.7 % of the time
    texts = {f["feature"]: f["text"] for f in stormy.details["features"]}
    said = {
        "freezes_vs_box": "18 freezes (usually ",
        "freezes_per_h": "freezes 72 per viewing hour (usually ",
        "freeze_share": "frozen 6.7% of the time (usually ",
    }
    for feature in set(said) & set(texts):
        assert texts[feature].startswith(said[feature]), texts[feature]


def test_unusual_system_lines_raise_the_autoencoder_score_and_are_named(ae):
    """An ANR burst the templates step judged unusual (its playback side ordinary)."""
    base = normal_row(random.Random(4), duration_s=900)
    calm, anr = ae.score([base, dict(base, system_unusual_lines=24)])
    assert anr.is_anomaly and not calm.is_anomaly
    top = anr.details["features"][0]
    assert top["feature"] == "system_lines"
    assert top["text"].startswith("24 unusual system lines (usually ")


def test_a_checkpoint_from_before_a_feature_scores_with_its_own_features():
    """A model trained before ``system_lines`` and the box-relative counts existed (its scaler
    names 26 fleet-wide features, it has no box normals) still loads and scores: the detector
    computes the features its scaler names."""
    names = [n for n in FLEET_FEATURE_NAMES if n != "system_lines"]
    r = random.Random(8)
    rows = [normal_row(r) for _ in range(50)]
    old = AEDetector(
        AEConfig(),
        Scaler.fit(names, feature_matrix(rows, names)),
        SessionAE(len(names), AEConfig()),
        threshold=1.0,
    )
    again = from_bytes(to_bytes(old))
    assert again.scaler.names == names and again.normals is None
    got = again.score([dict(rows[0], system_unusual_lines=99)])[0]
    assert got.score == pytest.approx(old.score(rows[:1])[0].score, rel=1e-6)
    assert "system_lines" not in [f["feature"] for f in got.details["features"]]


LOG = np.log1p  # counts, rates and times reach the model as log1p of the session's value


@pytest.mark.parametrize(
    "feature, value, expected, text",
    [
        ("hdmi_disconnects", LOG(10), LOG(1), "10 HDMI disconnects (usually 1)"),
        ("freezes_per_h", LOG(4.1), LOG(1.5), "freezes 4.1 per viewing hour (usually 1.5)"),
        ("log_ttff_ms", LOG(4200), LOG(850), "first frame after 4.2 s (usually 0.85 s)"),
        ("log_duration_s", LOG(35), LOG(1500), "lasted 35 s (usually 25 min)"),
        ("errors", LOG(1234), LOG(0.04), "1,234 playback errors (usually 0.04)"),
        ("hdmi_events", LOG(3), LOG(-0.3), "3 HDMI events (usually 0)"),  # rebuilt below 0
        ("rebuffer_ratio", 0.12, 0.003, "rebuffering 12% of the time (usually 0.3%)"),
        ("black_screen_share", 1.0, 1.4, "black screen 100% of the time (usually 100%)"),
        ("no_first_frame", 1.0, 0.1, "no first frame (usually a first frame)"),
        ("standby", 0.0, 0.9, "no standby (usually went to standby)"),
        ("fatal_error", 1.0, 0.8, "a fatal playback error (as usual)"),
        ("display_drops_vs_box", LOG(20), LOG(3), "20 display drops (usually 3)"),  # + offsets
        ("not_a_feature", 2.5, 0.25, "not_a_feature 2.5 (expected 0.25)"),  # an old checkpoint's
    ],
)
def test_reasons_read_in_the_users_units(feature, value, expected, text):
    assert reading(feature, value, expected) == text


def test_every_feature_has_a_reading():
    assert set(READINGS) == set(FEATURES) >= set(FEATURE_NAMES) | set(FLEET_FEATURE_NAMES)


def test_box_normals_are_each_boxs_median_and_the_fleets_for_the_rest():
    rows = [{"rxid": "R0000000001", "duration_s": 60, "display_drop_count": n} for n in range(11)]
    rows += [{"rxid": "R0000000002", "duration_s": 60, "display_drop_count": 50}] * 3  # too few
    rows += [{"duration_s": 60, "display_drop_count": 7}]  # no box
    normals = BoxNormals.fit(rows, min_sessions=10)
    assert set(normals.boxes) == {"R0000000001"}
    at = USUAL_COLUMNS.index("display_drop_count")
    usual = normals.of([{"rxid": "R0000000001"}, {"rxid": "R0000000002"}, {"rxid": "R9"}, {}])
    assert usual[:, at].tolist() == [5.0, 7.0, 7.0, 7.0]  # fleet median of 15 sessions: 7
    again = BoxNormals.from_dict(normals.to_dict())
    assert np.array_equal(again.of(rows), normals.of(rows))


def test_a_box_that_always_drops_frames_is_judged_against_its_own_usual():
    """Issue 15: a firmware whose ordinary sessions drop frames. Its busy sessions are
    ordinary on that box and anomalous on a quiet one; a storm on the busy box still is."""
    torch.manual_seed(0)
    r = random.Random(11)
    rows = [dict(normal_row(r), rxid=f"R000000000{i % 8}") for i in range(560)]
    busy = "R0000000009"  # 10 x the drops in every session
    for _ in range(70):
        row = normal_row(r)
        n = r.randint(15, 25)
        rows.append(dict(row, rxid=busy, display_drop_count=n, dropped_frames=10 * n))
    det = AEDetector.new(replace(AEConfig(), epochs=40), rows)
    fit_in_process(det, det.training_data(rows))
    det.threshold = det.threshold_for([])
    session = dict(normal_row(r, duration_s=1800), display_drop_count=20, dropped_frames=200)
    on_busy, on_quiet, storm = det.score(
        [
            dict(session, rxid=busy),
            dict(session, rxid="R0000000003"),
            dict(session, rxid=busy, display_drop_count=400, dropped_frames=4000),
        ]
    )
    assert not on_busy.is_anomaly and on_quiet.is_anomaly and storm.is_anomaly
    assert on_quiet.score > 3 * on_busy.score
    named = {f["feature"]: f["text"] for f in on_quiet.details["features"][:2]}
    assert {"display_drops_vs_box", "dropped_frames_vs_box"} & set(named)
    # read back in the session's own counts, the quiet box's usual (0) added back
    said = {"display_drops_vs_box": "20 display drops (", "dropped_frames_vs_box": "200 dropped"}
    for feature in set(said) & set(named):
        assert named[feature].startswith(said[feature]), named[feature]
    busy_says = storm.details["features"]
    assert any(f["text"].startswith("400 display drops (usually ") for f in busy_says), busy_says
    again = from_bytes(to_bytes(det))  # the normals travel in the checkpoint
    assert again.score([dict(session, rxid=busy)])[0].score == pytest.approx(on_busy.score, 1e-5)


def test_irrelevant_changes_leave_the_autoencoder_score_alone(ae):
    r = random.Random(3)
    row = normal_row(r)
    other = dict(row, content_id="vod-123456", rxid="R0000000009", start_ts="2030-01-01")
    assert ae.score([row])[0].score == ae.score([other])[0].score
    assert len(session_features(row)) == len(FEATURE_NAMES)


# --------------------------------------------------------------------------- LSTM


def normal_sequence(r: random.Random) -> list[str]:
    seq = ["ChangeContent", "FirstFrame"]
    for _ in range(r.randint(0, 6)):
        seq += r.choice(
            (
                ["DisplayDrop"],
                ["BufferingStart", "BufferingEnd"],
                ["ResolutionChange"],
                ["TrickMode:mode=PAUSE", "TrickMode:mode=PLAY"],
            )
        )
    return seq


@pytest.fixture(scope="module")
def lstm() -> LSTMDetector:
    r = random.Random(4)
    seqs = [normal_sequence(r) for _ in range(400)]
    det = LSTMDetector.new(replace(LSTMConfig(), epochs=15, top_g=5), seqs)  # 5 likely successors
    fit_in_process(det, det.training_data(seqs))
    det.threshold = threshold_rule(det.scores(seqs))
    return det


def test_an_impossible_transition_raises_the_lstm_score_and_is_named(lstm):
    ok = ["ChangeContent", "FirstFrame", "DisplayDrop", "BufferingStart", "BufferingEnd"]
    bad = [
        "ChangeContent",
        "BufferingEnd",
        "FirstFrame",
        "DisplayDrop",
        "BufferingStart",
        "BufferingEnd",
    ]
    v_ok, v_bad = lstm.score([ok, bad])
    assert v_bad.score > v_ok.score + 1 and v_bad.is_anomaly and not v_ok.is_anomaly
    named = {(t["after"], t["event"]) for t in v_bad.details["transitions"]}
    assert ("ChangeContent", "BufferingEnd") in named
    unseen = lstm.score([["ChangeContent", "FirstFrame", "HdcpStatus:ok=false"]])[0]
    assert unseen.details["misses"] >= 1 and any(
        t["event"] == "HdcpStatus:ok=false" for t in unseen.details["transitions"]
    )


def test_an_early_end_is_a_miss(lstm):
    v = lstm.score([["ChangeContent"]])[0]
    assert any(t["event"] == EOS for t in v.details["transitions"])


def test_content_ids_and_timestamps_do_not_change_the_lstm_score(lstm):
    def events(shift_ms: int, cid: str) -> list[Event]:
        return [
            Event(T0 + shift_ms, 1, "ChangeContent", cid=cid, src="live"),
            Event(T0 + shift_ms + 900, 2, "FirstFrame", ttff_ms=900),
            Event(T0 + shift_ms + 5000, 3, "DisplayDrop", dropped=3),
        ]

    a, b = event_keys(events(0, "ch1")), event_keys(events(86_400_000, "vod-42"))
    assert a == b
    assert lstm.score([a])[0].score == lstm.score([b])[0].score


# --------------------------------------------------------------------------- checkpoints, rules


def test_checkpoints_load_by_themselves_and_score_the_same(ae, lstm):
    for det, sample in (
        (ae, [normal_row(random.Random(5))]),
        (lstm, [normal_sequence(random.Random(6))]),
    ):
        again = from_bytes(to_bytes(det), version=7)
        assert again.kind == det.kind and again.version == 7 and again.threshold == det.threshold
        assert again.cfg == det.cfg
        assert again.score(sample)[0].score == pytest.approx(det.score(sample)[0].score, rel=1e-6)


def test_the_baseline_flags_the_largest_count_z_above_its_95th_percentile():
    r = random.Random(3)
    rows = [normal_row(r) for _ in range(400)]
    det = BaselineDetector.new(BaselineConfig(), rows)
    det.threshold = det.threshold_for(det.scores(rows))
    assert (det.scores(rows) > det.threshold).mean() == pytest.approx(0.05, abs=0.01)
    storm = normal_row(r, video_freeze_count=15, duration_s=1800)
    v = det.score([storm])[0]
    assert v.is_anomaly and v.details["measure"].startswith("video_freeze_count")
    # what it does not read leaves it alone
    assert det.scores([{**storm, "seq_gaps": 40, "ttff_ms": 9000}])[0] == v.score
    again = from_bytes(to_bytes(det), version=2)
    assert again.kind == "baseline" and again.threshold == det.threshold and again.version == 2
    assert again.score([storm])[0].score == v.score


def test_threshold_rule_follows_the_normal_sessions_not_the_anomalies():
    rng = np.random.default_rng(0)
    normal = rng.normal(1.0, 0.1, 900)
    with_anomalies = np.concatenate([normal, rng.normal(20, 1, 100)])  # 10 % far out
    t1, t2 = threshold_rule(normal), threshold_rule(with_anomalies)
    assert 1.2 < t1 < 2.5 and t2 < 3 and (with_anomalies > t2).sum() >= 100
    assert threshold_rule([0.5] * 50) == pytest.approx(0.55)
    assert math.isinf(threshold_rule([]))


def test_the_cleaning_fence_follows_the_anomaly_rate_it_is_given():
    """sqrt_fence (how the autoencoder chooses the sessions it learns from) puts the far-out
    sessions outside whatever their share; threshold_rule's P90 floor caps a history with
    15 % anomalies at 10 % flagged."""
    rng = np.random.default_rng(0)
    for rate in (0.0, 0.02, 0.15):
        n = int(5000 * rate)  # heavy-tailed normal errors, anomalies far out
        s = np.concatenate([0.01 * rng.chisquare(1, 5000 - n), rng.uniform(0.5, 5, n)])
        assert (s > sqrt_fence(s, 5.0)).mean() == pytest.approx(rate, abs=0.005)
    assert (s > threshold_rule(s)).mean() == pytest.approx(0.10, abs=0.005)
    assert (np.array([0.3] * 50) > sqrt_fence([0.3] * 50, 5.0)).sum() == 0
    assert math.isinf(sqrt_fence([], 5.0))


def test_failed_sessions_are_never_learnt_as_ordinary_and_are_flagged():
    """A history where 10 % of the sessions are the same video-start failure: the autoencoder
    learns from none of them (without that rule it learnt all 60 as ordinary and flagged
    none), flags every one, and its threshold is the fixed distance, not a fence."""
    r = random.Random(5)
    normal = [normal_row(r) for _ in range(540)]
    failure = dict(
        normal_row(r), ttff_ms=None, video_start_failure=True, fatal_error=True, error_count=1
    )
    rows = normal + [dict(failure, duration_s=20 + i % 5) for i in range(60)]
    det, _, _, learnt, scores = _fit_ae(None, rows, {}, 1, False, 0, False, in_process=True)
    assert not failed_sessions(learnt).any() and len(learnt) > 450
    assert failed_sessions(rows).sum() == 60
    assert (scores[540:] > det.threshold).all()
    assert (scores[:540] > det.threshold).mean() < 0.02
    assert det.threshold == pytest.approx(AEConfig().threshold_rmse ** 2)


def busy_row(r: random.Random) -> dict:
    """A sessions row of a box whose ordinary playback is busier: drops, rebuffers, the odd
    freeze and black screen, every session."""
    row = normal_row(r, display_drop_count=r.randint(2, 10), dropped_frames=r.randint(10, 60))
    row.update(buffering_count=r.randint(1, 4), rebuffer_ratio=r.uniform(0.01, 0.05))
    row.update(black_screen_count=r.randint(0, 2), video_freeze_count=r.randint(0, 2))
    row["black_screen_ms"] = row["black_screen_count"] * r.randint(200, 2000)
    row["video_freeze_ms"] = row["video_freeze_count"] * r.randint(200, 2000)
    return row


def test_a_busy_box_is_learnt_under_its_own_fence_and_its_storms_still_flagged():
    """20 boxes x 40 sessions, 3 boxes busier than the rest, one session in 20 a freeze
    storm: under the fleet's fence alone the busy boxes' ordinary sessions were mostly left
    out (69 % learnt); each box's own fence learns them, and no storm is learnt or missed.

    The fence's floor is off here, to see the box's own fence alone: the floor learns these
    busy boxes too (99 %), and then the two mildest storms (12-14 freezes, 2 % of a 40-50 min
    session frozen) score 0.615-0.647, under the threshold (bench/README.md, "Short sessions
    and rare ordinary ones"). So are the box-relative counts: against a busy box's usual
    freeze, its mildest storm (12 freezes in 39 min) reads 6.5 times usual and scores under
    the threshold (bench/README.md, "Counts against the box's usual")."""
    r = random.Random(7)
    rows, busy, storm = [], [], []
    for box in range(20):
        for i in range(40):
            row = busy_row(r) if box < 3 else normal_row(r)
            if i % 20 == 7:
                row.update(video_freeze_count=r.randint(12, 25), video_freeze_ms=50_000)
            rows.append({**row, "rxid": "R%010d" % box})
            busy.append(box < 3)
            storm.append(i % 20 == 7)
    busy, storm = np.array(busy), np.array(storm)
    learnt_share = {}
    for box_fence_min in (AEConfig().box_fence_min, 0):
        det, _, _, learnt, scores = _fit_ae(
            None,
            rows,
            {"box_fence_min": box_fence_min, "clean_floor_rmse": 0.0, "box_relative": False},
            1,
            False,
            0,
            False,
            in_process=True,
        )
        ids = set(map(id, learnt))  # the very rows it learnt from
        kept = np.array([id(x) in ids for x in rows])
        assert (scores[storm] > det.threshold).all() and not kept[storm].any()
        learnt_share[box_fence_min] = kept[busy & ~storm].mean()
    assert learnt_share[30] > 0.9 and learnt_share[0] < 0.8, learnt_share


def test_one_ordinary_incident_in_a_short_session_is_learnt_and_storms_still_flagged():
    """A fleet of sessions of 1-7 minutes, most without any incident, 15 % with one drop,
    rebuffer or pause, one in 20 a freeze storm. The cleaning fence over scores that are
    nearly all 0 sits at about 0, so without its floor the single incidents were never
    learnt and most of them were flagged; under the floor they are learnt."""
    r = random.Random(4)
    quiet = dict(display_drop_count=0, dropped_frames=0, buffering_count=0, rebuffer_ratio=0.0)
    quiet.update(trick_mode_count=0, black_screen_count=0, black_screen_ms=0)
    quiet.update(video_freeze_count=0, video_freeze_ms=0)
    rows, one = [], []
    for _ in range(1000):
        row, k = normal_row(r, duration_s=r.uniform(60, 400), **quiet), r.random()
        if k < 0.05:
            row.update(display_drop_count=1, dropped_frames=r.randint(1, 10))
        elif k < 0.10:
            row.update(buffering_count=1, rebuffer_ratio=r.uniform(0.001, 0.01))
        elif k < 0.15:
            row.update(trick_mode_count=1)
        rows.append(row)
        one.append(k < 0.15)
    storm = np.arange(len(rows)) % 20 == 7
    for i in np.flatnonzero(storm):
        rows[i].update(
            video_freeze_count=r.randint(8, 15), video_freeze_ms=r.randint(20_000, 40_000)
        )
    one = np.array(one) & ~storm
    flagged = {}
    for floor in (0.0, AEConfig().clean_floor_rmse):
        det, _, _, _, scores = _fit_ae(
            None, rows, {"clean_floor_rmse": floor}, 1, False, 0, False, in_process=True
        )
        assert (scores[storm] > det.threshold).all()
        flagged[floor] = (scores[one] > det.threshold).mean()
    assert flagged[0.0] > 0.3 and flagged[AEConfig().clean_floor_rmse] < 0.02, flagged


def test_rare_ordinary_sessions_are_shown_more_often_and_common_ones_once():
    """balance_copies: a value a standard unit off that only 3 of 1,000 sessions have asks for
    share x 1,000 / 3 copies of those sessions (capped); a common one, or none, asks for one."""
    z = np.zeros((1000, 3), np.float32)
    z[:3, 0] = 4.0  # rare
    z[:200, 1] = -1.5  # common (20 %)
    z[500, 2] = 0.9  # under a standard unit: not unusual
    copies = balance_copies(z, share=0.01, most=8)
    assert copies[:3].tolist() == [4, 4, 4]  # ceil(10 / 3)
    assert (copies[3:] == 1).all()
    assert balance_copies(z, share=0.05, most=8)[:3].tolist() == [8, 8, 8]  # capped
    assert (balance_copies(z, share=0.0, most=8) == 1).all()


def test_the_autoencoder_learns_rare_ordinary_sessions_as_often_as_it_is_told():
    """_fit_ae repeats the kept sessions with a rare unusual value (here 8 of 800 with an HDMI
    disconnect) in every fit after the first, the model's own included; off, it does not."""
    r = random.Random(3)
    rows = [normal_row(r) for _ in range(800)]
    for row in rows[::100]:
        row.update(hdmi_event_count=2, hdmi_disconnects=1)
    shown = {}
    for share in (0.0, 0.02):
        _, data, _, learnt, _ = _fit_ae(
            None,
            rows,
            {"rare_share": share, "epochs": 1, "min_steps": 0},
            1,
            False,
            0,
            False,
            in_process=True,
        )
        kept_rare = sum(x["hdmi_disconnects"] > 0 for x in learnt)
        shown[share] = (len(data) - len(learnt), kept_rare)
    assert shown[0.0][0] == 0
    extra, kept_rare = shown[0.02]
    assert kept_rare > 0 and extra >= kept_rare  # each kept one shown at least twice


def test_a_checkpoint_with_a_retired_config_field_loads_with_its_threshold(ae):
    """Models trained before ``threshold_rmse`` saved ``fence_k``: they load and score as
    they did, with the threshold stored beside the config."""
    ck = torch.load(io.BytesIO(to_bytes(ae)), weights_only=True)
    ck["config"] = {**ck["config"], "fence_k": 11.0}
    ck["threshold"] = 0.123
    buf = io.BytesIO()
    torch.save(ck, buf)
    again = from_bytes(buf.getvalue())
    assert again.threshold == 0.123 and again.cfg == ae.cfg


def test_combined_verdict_is_the_autoencoders_and_carries_both_reasons():
    """The LSTM's flag is a second opinion: named among the detectors, not the verdict."""
    lstm_v = Verdict(3.0, 2.0, True, {"transitions": [{"event": "X"}]})
    ae_v = Verdict(0.1, 0.2, False, {"features": [{"feature": "freezes"}]})
    verdict, flagged, reasons = consolidate({"lstm": lstm_v, "ae": ae_v})
    assert not verdict and flagged == ["lstm"]
    assert reasons == {"features": [{"feature": "freezes"}], "transitions": [{"event": "X"}]}
    assert consolidate({"ae": ae_v})[:2] == (False, [])
    ae_flags = Verdict(0.5, 0.2, True, {"features": []})
    assert consolidate({"lstm": lstm_v, "ae": ae_flags})[:2] == (True, ["lstm", "ae"])
    assert consolidate({"ae": ae_flags})[:2] == (True, ["ae"])


def test_prf():
    r = prf([1, 1, 0, 0, 1], [1, 0, 0, 1, 1])
    assert (r.tp, r.fp, r.fn) == (2, 1, 1) and r.f1 == pytest.approx(2 / 3)


def test_the_hdfs_benchmark_reads_with_its_documented_split():
    rows = load_hdfs(DATA / "hdfs-100k")
    train_rows = [r for r in rows if r["split"] == "train"]
    test_rows = [r for r in rows if r["split"] == "test"]
    assert len(rows) == 7940
    assert (
        sum(r["anomaly"] for r in train_rows) == 256 and sum(r["anomaly"] for r in test_rows) == 57
    )
    assert sum(r["normal_train"] for r in rows) == 6096 and all(r["seq"] for r in rows)


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    out = tmp_path_factory.mktemp("fleet")
    generate_fleet(
        out, FleetSpec(devices=6, hours=10, seed=5, noise_lines_per_minute=2, anomaly_rate=0.1)
    )
    return out


EPOCHS = 20  # enough for the autoencoder to tell storms from ordinary sessions (3 was not)


@pytest.mark.timeout(300)
def test_two_workers_finish_when_the_rows_do_not_split_evenly(settings, ray_local):
    """129 rows on two workers, 64 a batch each: with rows[rank::2] worker 0 had 65 rows (two
    batches) and worker 1 had 64 (one), and the training hung at worker 0's second batch."""
    r = random.Random(3)
    rows = [normal_row(r) for _ in range(129)]
    det = new_detector("ae", rows, {"batch_size": 128, "epochs": 3, "min_steps": 0})
    data = training_array(det, rows)
    assert [len(worker_rows(data, r, 2)) for r in (0, 1)] == [64, 64]
    assert [len(worker_rows(data[:1], r, 2)) for r in (0, 1)] == [1, 1]
    det, metrics = fit(settings, det, data, len(rows), workers=2)
    assert len(metrics["losses"]) == 3


def test_train_and_detect_end_to_end_into_the_tables(fleet, db, settings, ray_local, capsys):
    ingest(settings, db, [str(fleet)], progress=False)
    sessionize(settings, db, progress=False)
    n = query(db.dsn, "SELECT count(*) FROM sessions")[0][0]
    assert n > 100 and query(db.dsn, "SELECT count(*) FROM session_events")[0][0] == n

    results = train(settings, db, workers=2, epochs=EPOCHS, progress=False)
    # the autoencoder first: it cleans the LSTM's data
    assert [r.detector for r in results] == ["ae", "lstm", "baseline"]
    assert all(r.version == 1 and r.workers == 2 and r.threshold > 0 for r in results)
    models = query(
        db.dsn,
        "SELECT detector, version, threshold, metrics->'workers', length(checkpoint)"
        " FROM models ORDER BY detector",
    )
    assert [(m[0], m[1], m[3]) for m in models] == [
        ("ae", 1, 2),
        ("baseline", 1, None),
        ("lstm", 1, 2),
    ]
    assert all(m[4] > 1000 for m in models)
    # the autoencoder learnt from the sessions it found ordinary (two fits chose them)
    ae_fit = query(db.dsn, "SELECT metrics FROM models WHERE detector = 'ae'")[0][0]
    assert ae_fit["clean_rounds"] == 2
    assert ae_fit["learnt_from"] == ae_fit["kept"] == results[0].sessions < n
    # the baseline flags its share of the history, by its rule: about 5 %
    assert results[2].flagged_share == pytest.approx(0.05, abs=0.01)

    # one seed, one model: training again with the same seed gives the same weights and
    # thresholds (every worker seeded, the same rows in the same order)
    again = train(settings, db, ("ae", "lstm"), workers=2, epochs=EPOCHS, progress=False)
    assert [r.threshold for r in again] == [r.threshold for r in results[:2]]
    assert [r.losses for r in again] == [r.losses for r in results[:2]]
    capsys.readouterr()
    other = train(settings, db, ("ae",), workers=2, epochs=EPOCHS, seed=1, progress=True)
    assert other[0].losses != results[0].losses  # the seed is used
    shown = capsys.readouterr().err  # the epochs and the loss, as they end
    done = re.search(r"train ae.* (\d+)/(\d+) ", shown)  # at least EPOCHS: min_steps
    assert done and done[1] == done[2] and int(done[1]) >= EPOCHS and "loss=" in shown
    assert "round 1 of 2: ae finds" in shown and "round 2 of 2: ae finds" in shown

    summary = detect(settings, db, progress=False)
    assert summary.scored == n and summary.versions == {"lstm": 2, "ae": 3, "baseline": 1}
    rows = query(
        db.dsn,
        "SELECT detector, count(*), count(*) FILTER (WHERE is_anomaly) FROM anomalies"
        " GROUP BY 1 ORDER BY 1",
    )
    assert [(r[0], r[1]) for r in rows] == [("ae", n), ("baseline", n), ("lstm", n)]
    flagged = sum(r[2] for r in rows)
    assert flagged > 0
    cons = query(
        db.dsn,
        "SELECT c.is_anomaly, c.detectors, c.reasons, c.model_versions, c.ae_score,"
        " c.lstm_score, c.start_ts = s.start_ts FROM anomalies_consolidated c"
        " JOIN sessions s USING (rxid, session_id)",
    )
    versions = {"lstm": 2, "ae": 3, "baseline": 1}
    # the baseline is scored and stored, but only the autoencoder makes the verdict (the
    # LSTM's flag is a second opinion: a row, not anomalous)
    assert cons and all(c[1] and c[3] == versions and c[6] for c in cons)
    assert all(set(c[1]) <= {"lstm", "ae"} for c in cons)
    assert all(c[0] == ("ae" in c[1]) == (c[4] > 1) for c in cons)
    assert any(c[0] for c in cons) and all(max(c[4] or 0, c[5] or 0) > 1 for c in cons)
    assert any(c[2]["features"] for c in cons)

    assert detect(settings, db, progress=False).scored == 0  # nothing new
    assert detect(settings, db, rescore=True, progress=True).scored == n
    shown = capsys.readouterr().err
    assert f"{n}/{n}" in shown and "anomalous=" in shown

    r = CliRunner().invoke(main, ["models"], env={"LOGALYZER_DSN": db.dsn}, catch_exceptions=False)
    assert r.exit_code == 0 and "ae v1" in r.output and "lstm v1" in r.output
    assert "baseline v1" in r.output


def test_detect_without_models_and_train_without_sessions_are_clear_errors(db):
    env = {"LOGALYZER_DSN": db.dsn}
    r = CliRunner().invoke(main, ["detect"], env=env)
    assert r.exit_code == 1 and "no trained" in r.output and "logalyzer train" in r.output
    r = CliRunner().invoke(main, ["train"], env=env)
    assert r.exit_code == 1 and "at least 20" in r.output
    r = CliRunner().invoke(main, ["train", "--detectors", "lstm,bogus"], env=env)
    assert r.exit_code == 1 and "unknown detector(s): bogus" in r.output


@pytest.mark.parametrize("job, option", [("train", "--workers"), ("detect", "--rescore")])
def test_ray_job_entry_points_answer_help(job, option):
    import subprocess
    import sys

    from .helpers import ROOT

    r = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / f"{job}.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and option in r.stdout and f"jobs/{job}.py" in r.stdout


def test_eval_synthetic_repeats_prints_mean_and_spread_beside_the_baseline(
    db, settings, ray_local, tmp_path
):
    env = {"LOGALYZER_DSN": db.dsn, "LOGALYZER_HOME": str(settings.home)}
    args = ["eval", "synthetic", "--devices", "4", "--hours", "4", "--seed", "5"]
    args += ["--out", str(tmp_path / "fleet"), "--repeats", "2", "--epochs", "2"]
    args += ["--cohorts", "drops:0.5,long:0.5"]  # boxes 1 drops and long, 0 and 3 long, 2 none
    r = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out = r.output.splitlines()
    assert any(line.startswith("  training seed 0: F1 lstm") for line in out)
    assert any(line.startswith("  training seed 1: F1 lstm") for line in out)
    assert "mean ± std over 2 trainings:" in r.output
    head = [line for line in out if "(F1 mean ± std)" in line][0].split()
    assert head[:4] == ["lstm", "ae", "baseline", "combined"]
    assert any(line.startswith("all kinds") and line.count("±") == 4 for line in out)
    for cohort in ("drops", "long", "none"):  # each cohort's boxes apart
        assert any(line.startswith(f"cohort {cohort} ") and line.count("±") == 4 for line in out)
        assert any(line.startswith(f"cohort {cohort} (") for line in out)  # the last training
    # two trainings of each detector in the registry, every session scored by the last ones
    models = query(db.dsn, "SELECT detector, max(version) FROM models GROUP BY 1 ORDER BY 1")
    assert models == [("ae", 2), ("baseline", 2), ("lstm", 2)]
    n = query(db.dsn, "SELECT count(*) FROM sessions")[0][0]
    scored = query(
        db.dsn, "SELECT count(*) FROM anomalies WHERE model_version = 2 GROUP BY detector"
    )
    assert [s[0] for s in scored] == [n, n, n]
