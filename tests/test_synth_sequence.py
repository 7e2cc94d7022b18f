"""Sequence-only faults of the synthetic fleet (logalyzer.core.synth.sequence, issue 15).

Real generator output: each kind's session, read back from the written files and cut by the
sessions core, has its wrong order (and no ordinary session has it), and the rewrite leaves
the measures the autoencoder and the baseline read as they were; with the option off every
fleet is byte-identical to the fleets before the option existed.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from logalyzer.core import sessions as core
from logalyzer.core.features import FEATURE_NAMES, event_keys, feature_matrix
from logalyzer.core.rawlines import event_from_data
from logalyzer.core.synth import SEQUENCE_FAULT_KINDS, FleetSpec, generate_fleet
from logalyzer.core.synth.fleet import _devices
from logalyzer.core.synth.spec import _start_utc
from logalyzer.core.synth.timeline import _Planner
from tests.test_synth import events_from_files

# Digests of two small fleets (every file's text and the truth), taken on the commit before the
# option existed (587e909): the option off must not change a byte of any fleet.
BEFORE = {
    "default": "35ff4ef74236579c27a164194b66e172bccb52613da97a993855eee80bf2a555",
    "system_faults": "8b398b2806a49e8bf5e7b4f7da9b867b99a72cc8e75e94c744cc8b61d9632852",
}
SMALL = dict(devices=3, hours=2, seed=5, anomaly_rate=0.3, noise_lines_per_minute=20)
INCIDENTS = {
    k
    for k in (
        "BlackScreen",
        "BlackScreen:start",
        "BlackScreen:end",
        "VideoFreeze",
        "VideoFreeze:start",
        "VideoFreeze:end",
        "DisplayDrop",
        "BufferingStart",
        "BufferingEnd",
        "PlaybackError:fatal=true",
        "PlaybackError:fatal=false",
    )
} | {f"TrickMode:mode={m}" for m in ("PAUSE", "PLAY", "FF", "REW", "SEEK")}


def digest(out: Path, spec: FleetSpec) -> str:
    res = generate_fleet(out, spec)
    h = hashlib.sha256()
    for p in sorted(res.files):
        h.update(p.relative_to(res.out_dir).as_posix().encode())
        h.update(gzip.decompress(p.read_bytes()))
    h.update(res.truth_path.read_bytes())
    return h.hexdigest()


def test_off_keeps_every_fleet_byte_identical(tmp_path):
    assert digest(tmp_path / "a", FleetSpec(**SMALL)) == BEFORE["default"]
    assert digest(tmp_path / "b", FleetSpec(**SMALL, sequence_faults=0.0)) == BEFORE["default"]
    sys_spec = FleetSpec(**SMALL, system_faults=0.5, sequence_faults=0.0)
    assert digest(tmp_path / "c", sys_spec) == BEFORE["system_faults"]
    # the clean reference window (tests/test_reference.py) off: the same bytes too
    off = FleetSpec(**SMALL, system_faults=0.5, reference_clean_hours=0.0)
    assert digest(tmp_path / "d", off) == BEFORE["system_faults"]
    truth = json.loads((tmp_path / "b" / "ground_truth.json").read_text())
    assert "sequence_faults" not in truth["spec"]
    assert "reference_clean_hours" not in truth["spec"]


# --------------------------------------------------------------------------- on a fleet


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """12 boxes x 24 h, a fifth of the sessions anomalous, all of those sequence faults."""
    out = tmp_path_factory.mktemp("seqfleet")
    spec = FleetSpec(
        devices=12,
        hours=24,
        seed=13,
        anomaly_rate=0.2,
        sequence_faults=1.0,
        noise_lines_per_minute=5,
    )
    res = generate_fleet(out, spec)
    truth = json.loads(res.truth_path.read_text())
    rows = []  # (truth session, the core's Session of the same start, its keys)
    for dev in truth["devices"]:
        evs = [
            event_from_data(e.ts_ms, e.etype, {**e.data, "seq": e.seq})
            for e in events_from_files(out, dev)
        ]
        cut = {s.events[0].ts_ms: s for s in core.cut(core.order(evs))}
        for t in truth["sessions"]:
            if t["rxid"] != dev["rxid"]:
                continue
            s = cut[_ms(t["start_ts"])]
            rows.append((t, s, event_keys(s.events)))
    return truth, rows


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _wrong(kind: str, keys: list[str]) -> bool:
    """Whether a session's keys hold the fault of ``kind``."""
    if kind == "first_frame_late":
        ff = keys.index("FirstFrame") if "FirstFrame" in keys else None
        return ff is not None and any(k in INCIDENTS for k in keys[:ff])
    if kind == "freeze_end_without_start":
        open_ = False
        for k in keys:
            if k == "VideoFreeze:start":
                open_ = True
            elif k == "VideoFreeze:end":
                if not open_:
                    return True
                open_ = False
        return False
    if kind == "playback_in_standby":
        return "StandbyExit" in keys and "FirstFrame" in keys[: keys.index("StandbyExit")]
    if kind == "tune_loop":
        return keys.count("FirstFrame") >= 3
    raise ValueError(kind)


def test_every_kind_occurs_with_its_wrong_order(fleet):
    truth, rows = fleet
    kinds = Counter(t["anomaly_kind"] for t, _, _ in rows if t["anomalous"])
    assert min(kinds[k] for k in SEQUENCE_FAULT_KINDS) >= 10, kinds
    # in the last hour of the log an anomalous session gets a playback anomaly instead
    assert sum(kinds.values()) - sum(kinds[k] for k in SEQUENCE_FAULT_KINDS) <= 12, kinds
    for t, _, keys in rows:
        kind = t["anomaly_kind"]
        if kind is None:  # no ordinary session has any of the four orders
            assert not any(_wrong(k, keys) for k in SEQUENCE_FAULT_KINDS), keys
        elif kind in SEQUENCE_FAULT_KINDS:
            assert keys[0] == "ChangeContent" and _wrong(kind, keys), (kind, keys)


def test_the_sessions_core_measures_what_the_truth_says(fleet):
    _, rows = fleet
    for t, s, _ in rows:
        m = core.measure(s, t["rxid"])
        for col in ("video_freeze_count", "video_freeze_ms", "event_count", "ttff_ms"):
            assert m[col] == t[col], (t["anomaly_kind"], col)


def test_fault_sessions_look_ordinary_to_the_feature_view(fleet):
    """Each fault session's 26 features lie in the range of the fleet's ordinary sessions
    (a session with one freeze in a few minutes may top the ordinary freeze rate, as an
    ordinary session with the same draw would: at most a few of them)."""
    _, rows = fleet
    x = feature_matrix([core.measure(s, t["rxid"]) for t, s, _ in rows])
    kind = np.array([t["anomaly_kind"] or "" for t, _, _ in rows])
    normal = x[kind == ""]
    lo, hi = normal.min(axis=0), normal.max(axis=0)
    faults = x[np.isin(kind, SEQUENCE_FAULT_KINDS)]
    outside = ((faults < lo - 1e-9) | (faults > hi + 1e-9)).any(axis=1)
    assert outside.mean() <= 0.03, outside.sum()


# --------------------------------------------------------------------------- by construction


def _planner(seed: int) -> _Planner:
    spec = FleetSpec(devices=1, hours=24, seed=seed, sequence_faults=1.0)
    start = int(_start_utc(spec.start).timestamp() * 1000)
    p = _Planner(_devices(spec, start)[0], spec, start + 10**9, [0])
    p.boot(start)
    return p


def _row(items: list, dur: int) -> dict:
    """The sessions core's row of a session of ``items`` (offsets), cut by the next tune."""
    t0 = 10**12
    evs = [(0, "ChangeContent", {"cid": "ch001", "src": "live"})]
    evs += sorted(items, key=lambda x: x[0]) + [(dur, "ChangeContent", {"cid": "ch002"})]
    core_evs = [
        event_from_data(t0 + off, etype, {**data, "seq": k + 1})
        for k, (off, etype, data, *_) in enumerate(evs)
    ]
    rows = core.sessionize("R0000000001", core_evs)
    return rows[0]


@pytest.mark.parametrize("kind", SEQUENCE_FAULT_KINDS)
def test_the_rewrite_keeps_every_measure(kind):
    """Ordinary draws before and after the kind's rewrite: the same sessions row (features
    and baseline counts alike), bar one event fewer when a freeze pair loses its start."""
    p = _planner(7)
    rewrite = {
        "first_frame_late": p._first_frame_late,
        "freeze_end_without_start": p._freeze_end_without_start,
        "playback_in_standby": p._playback_in_standby,
        "tune_loop": p._tune_loop,
    }[kind]
    r, done = random.Random(1), 0
    while done < 40:
        src = r.choice(("live", "vod", "app"))
        dur, items = p.ordinary_items(r.randint(350, 2200), src)
        items = sorted(items, key=lambda x: x[0])
        out = rewrite([tuple(it) for it in items])
        if out is None:
            continue
        done += 1
        before, after = _row(items, dur), _row(out, dur)
        skip = {"session_id", "summary", "event_count"}
        assert {k: v for k, v in before.items() if k not in skip} == {
            k: v for k, v in after.items() if k not in skip
        }
        lost = before["event_count"] - after["event_count"]
        assert lost == 0 or (kind == "freeze_end_without_start" and lost == 1)
        fb, fa = feature_matrix([before])[0], feature_matrix([after])[0]
        same = [n != "log_events" or lost == 0 for n in FEATURE_NAMES]
        assert (fb[same] == fa[same]).all()
