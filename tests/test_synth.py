"""Tests for the synthetic fleet generator (logalyzer.core.synth).

The strongest check here parses the written files back with a small, independent VAR reader
and recomputes the sessions: the ground truth must be derivable from the files alone.
"""

from __future__ import annotations

import gzip
import json
import re
from calendar import timegm
from datetime import UTC, datetime
from pathlib import Path

import pytest

from logalyzer.core.synth import (
    ANOMALY_KINDS,
    EVENT_TYPES,
    HEADER_VARIANTS,
    MARKER_MAIN,
    FleetSpec,
    VarEvent,
    generate_fleet,
    truth_sessions,
)

UTC = UTC
SMALL = dict(noise_lines_per_minute=30, rotate_mb=0.15, overlap_lines=20)

# Shapes of LOG_FORMAT.md section 2 rows 1-9; groups: ts parts, pid, tag, msg.
_MD = r"(?P<mo>\d\d)-(?P<d>\d\d) (?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d)"
_YMD = r"(?P<y>\d{4})-(?P<mo>\d\d)-(?P<d>\d\d)[ T](?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d)"
_PT = r"(?P<pid>[ \d]{4}\d) (?P<tid>[ \d]{4}\d) (?P<lvl>[VDIWEFAS]) (?P<tag>.{8,}?): (?P<msg>.*)"
VARIANT_RE = {
    "threadtime": rf"{_MD}\.(?P<ms>\d{{3}}) {_PT}",
    "year": rf"{_YMD}\.(?P<ms>\d{{3}}) {_PT}",
    "usec": rf"{_MD}\.(?P<ms>\d{{3}})\d{{3}} {_PT}",
    "nsec": rf"{_MD}\.(?P<ms>\d{{3}})\d{{6}} {_PT}",
    "zone": rf"{_MD}\.(?P<ms>\d{{3}}) (?P<off>[+-]\d{{4}}) {_PT}",
    "uid": rf"{_MD}\.(?P<ms>\d{{3}}) (?P<uid>[ \d]{{4}}\d| [ a-z]{{5}}) {_PT}",
    "epoch": rf"(?P<ep> {{8}}\d{{10}})\.(?P<ms>\d{{3}}) {_PT}",
    "time": rf"{_MD}\.(?P<ms>\d{{3}}) (?P<lvl>[VDIWEFAS])/(?P<tag>.{{8,}}?)"
    r"\((?P<pid>[ \d]{4}\d)\): (?P<msg>.*)",
    "studio": rf"{_YMD}\.(?P<ms>\d{{3}}) (?P<pid>\d+)-(?P<tid>\d+)/(?P<pkg>\S+) "
    r"(?P<lvl>[VDIWEFAS])/(?P<tag>[^:]+): (?P<msg>.*)",
    "iso": rf"{_YMD}\.(?P<ms>\d{{3}})(?P<off>Z|[+-]\d\d:\d\d) (?P<pid>\d+) (?P<tid>\d+) "
    r"(?P<lvl>[VDIWEFAS]) (?P<tag>[^:]+): (?P<msg>.*)",
}
VARIANT_RE = {k: re.compile("^" + v + "$") for k, v in VARIANT_RE.items()}
SPEC_SAMPLES = {  # copied from LOG_FORMAT.md section 2 ('...' messages filled in)
    "threadtime": [
        "03-17 16:13:38.811  1702  2395 I VAR     : PLAYER|tune|ChangeContent|cid=ch101"
    ],
    "year": ["2024-03-17 16:13:38.811  1702  2395 I VAR     : x"],
    "usec": ["03-17 16:13:38.811532  1702  2395 D Tag     : x"],
    "zone": ["03-17 16:13:38.811 +0100  1702  2395 I Tag     : x"],
    "uid": [
        "03-17 16:13:38.811  media  1702  2395 W AudioTrack: x",
        "03-17 16:13:38.811 10128  3039  3039 E AndroidRuntime: x",
    ],
    "epoch": ["        1710692018.811  1702  2395 I VAR     : x"],
    "time": ["03-17 16:13:38.811 I/VAR     ( 1702): x"],
    "studio": ["2024-03-17 16:13:38.811 1702-2395/com.example.stb I/VAR: x"],
    "iso": [
        "2024-03-17T16:13:38.811Z 1702 2395 I VAR: x",
        "2024-03-17T16:13:38.811+01:00 1702 2395 I VAR: x",
    ],
}
KERNEL_RE = re.compile(r"^(?:<\d>)?\[ *\d+\.\d{6}(?:@\d)?\] ")
MARKER_RE = re.compile(
    r"^(--------- beginning of |== dumpstate: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d$|------ )"
)
_CANON = {re.sub(r"[-_]", "", t).lower(): t for t in EVENT_TYPES}
_KV = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


# ------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def fleet10(tmp_path_factory):
    out = tmp_path_factory.mktemp("fleet10")
    seen = []
    res = generate_fleet(out, FleetSpec(devices=10, hours=2, seed=3, **SMALL), progress=seen.append)
    return res, json.loads(res.truth_path.read_text()), sum(seen)


@pytest.fixture(scope="module")
def fleet5(tmp_path_factory):
    out = tmp_path_factory.mktemp("fleet5")
    res = generate_fleet(out, FleetSpec(devices=5, hours=2, seed=11, anomaly_rate=0.3, **SMALL))
    return res, json.loads(res.truth_path.read_text())


def read_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return f.read().split("\n")[:-1]


def content(lines: list[str]) -> list[str]:
    """The lines after a file's leading markers."""
    k = 0
    while k < len(lines) and MARKER_RE.match(lines[k]):
        k += 1
    return lines[k:]


def line_ts_ms(m: re.Match, variant: str, year: int) -> int:
    g = m.groupdict()
    if variant == "epoch":
        return int(g["ep"]) * 1000 + int(g["ms"])
    y = int(g.get("y") or year)
    t = timegm((y, int(g["mo"]), int(g["d"]), int(g["h"]), int(g["mi"]), int(g["s"])))
    off = g.get("off")
    if off and off != "Z":
        sign = -1 if off[0] == "-" else 1
        t -= sign * (int(off[1:3]) * 3600 + int(off[-2:]) * 60)
    return t * 1000 + int(g["ms"])


def parse_var(msg: str) -> tuple[str, dict]:
    """Event type (canonical) and data of a VAR message in either dialect."""
    if msg.startswith("["):
        m = re.match(r"^\[(\w+)\] (\w+): (\S+) (.*)$", msg)
        etype, raw = m.group(3), m.group(4)
    else:
        _, _, etype, raw = msg.split("|", 3)
    if raw.startswith("{"):
        data = json.loads(raw)
    else:
        data = {k: (json.loads(v) if v.startswith('"') else v) for k, v in _KV.findall(raw)}
    return _CANON[re.sub(r"[-_]", "", etype).lower()], data


def events_from_files(out: Path, dev: dict) -> list[VarEvent]:
    """Every distinct VAR line of a device, read back from its files (UTC fleets only)."""
    rx = VARIANT_RE[dev["header_variant"]]
    seen, events = set(), []
    for rel in dev["files"]:
        year, last_month = int(Path(rel).name[7:11]), None
        for line in read_lines(out / rel):
            m = rx.match(line)
            if not m or m.group("tag").strip() != "VAR" or line in seen:
                continue
            seen.add(line)
            if "y" not in m.groupdict() and m.groupdict().get("mo"):
                month = int(m.group("mo"))
                if last_month is not None and month < last_month - 6:
                    year += 1
                last_month = month
            etype, data = parse_var(m.group("msg"))
            common = {k: int(data.pop(k)) for k in ("sid", "seq", "mono")}
            events.append(
                VarEvent(
                    line_ts_ms(m, dev["header_variant"], year),
                    etype,
                    data,
                    common["seq"],
                    common["sid"],
                    common["mono"],
                )
            )
    return events


def files_bytes(res) -> dict[Path, bytes]:
    return {
        p.relative_to(res.out_dir): p.read_bytes()
        for p in sorted(res.out_dir.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------------------------- tests


def test_regexes_follow_spec_samples():
    for variant, samples in SPEC_SAMPLES.items():
        for s in samples:
            assert VARIANT_RE[variant].match(s), (variant, s)
    assert VARIANT_RE["nsec"].match("03-17 16:13:38.811532123  1702  2395 D Tag     : x")


def test_every_variant_and_dialect_and_line_shapes(fleet10):
    res, truth, _ = fleet10
    devs = truth["devices"]
    assert {d["header_variant"] for d in devs} == set(HEADER_VARIANTS)
    assert {d["var_dialect"] for d in devs} == {"current", "legacy"}
    assert len({d["rxid"] for d in devs}) == 10
    assert all(re.fullmatch(r"R\d{10}", d["rxid"]) for d in devs)
    for d in devs:
        rx = VARIANT_RE[d["header_variant"]]
        lines = content(read_lines(res.out_dir / d["files"][0]))
        timed = [ln for ln in lines if not KERNEL_RE.match(ln)]
        assert len(timed) > 100
        bad = [ln for ln in timed[:400] if not rx.match(ln)]
        assert not bad, (d["header_variant"], bad[:3])
        assert any(" VAR" in ln or "/VAR" in ln for ln in timed)
        assert any(KERNEL_RE.match(ln) for ln in lines)


def test_spellings_json_and_quoting_occur(fleet10):
    res, truth, _ = fleet10
    text = "\n".join(
        ln
        for d in truth["devices"]
        for f in d["files"]
        for ln in read_lines(res.out_dir / f)
        if "VAR" in ln
    )
    assert re.search(r"\|BlackScreen\||BLACK_SCREEN|black-screen", text)
    assert "CHANGE_CONTENT" in text and "|ChangeContent|" in text
    assert re.search(r"VAR.*\{\"", text)  # JSON data
    assert re.search(r'msg="[^"]* [^"]*"', text)  # quoted values with spaces


def test_truth_matches_files(fleet10):
    res, truth, progress_total = fleet10
    tot = truth["totals"]
    assert tot["files"] == len(res.files) == sum(len(d["files"]) for d in truth["devices"])
    lines = nbytes = 0
    for p in res.files:
        raw = gzip.decompress(p.read_bytes())  # plain stdlib gzip can read them
        nbytes += len(raw)
        lines += raw.count(b"\n")
    assert (lines, nbytes) == (tot["lines"], tot["bytes_uncompressed"])
    assert res.lines == lines and res.bytes_uncompressed == nbytes == progress_total
    assert sum(d["lines"] for d in truth["devices"]) == lines


def test_sessions_recomputed_from_files(fleet10):
    res, truth, _ = fleet10
    var_total = 0
    for dev in truth["devices"]:
        events = events_from_files(res.out_dir, dev)
        var_total += len(events)
        mine = truth_sessions(events, rxid=dev["rxid"])
        theirs = [s for s in truth["sessions"] if s["rxid"] == dev["rxid"]]
        assert len(mine) == len(theirs) > 3
        for a, b in zip(mine, theirs):
            for k, v in a.items():
                if k == "edge_cases":
                    assert set(v) - {"spans_files", "new_year"} <= set(b[k])
                elif not k.startswith("_") and k not in ("anomalous", "anomaly_kind"):
                    assert v == b[k], (dev["index"], k, a["session_index"])
    assert var_total == truth["totals"]["var_events"]


def test_every_event_type_present(fleet5):
    res, truth = fleet5
    types = set()
    for dev in truth["devices"]:
        types |= {e.etype for e in events_from_files(res.out_dir, dev)}
    assert types == set(EVENT_TYPES)


def test_anomaly_kinds_present(fleet5):
    _, truth = fleet5
    kinds = {s["anomaly_kind"] for s in truth["sessions"] if s["anomalous"]}
    assert kinds == set(ANOMALY_KINDS)
    n = len(truth["sessions"])
    assert 0.1 < sum(s["anomalous"] for s in truth["sessions"]) / n < 0.5
    by_kind = {s["anomaly_kind"]: s for s in truth["sessions"] if s["anomalous"]}
    assert by_kind["video_start_failure"]["video_start_failure"]
    assert by_kind["freeze_storm"]["video_freeze_count"] >= 8
    assert by_kind["hdmi_flapping"]["hdmi_disconnects"] >= 5
    assert by_kind["error_loop"]["fatal_error"] and by_kind["error_loop"]["error_count"] >= 5


def test_edge_cases_on_fixed_devices(tmp_path):
    res = generate_fleet(tmp_path, FleetSpec(devices=3, hours=2, seed=5, noise_lines_per_minute=10))
    truth = json.loads(res.truth_path.read_text())
    index = {d["rxid"]: d["index"] for d in truth["devices"]}
    edges = {(index[s["rxid"]], e) for s in truth["sessions"] for e in s["edge_cases"]}
    for want in [
        (0, "pre_first_change"),
        (0, "unclosed_episode"),
        (0, "seq_gap"),
        (1, "standby_mid_playback"),
        (1, "spans_files"),
        (2, "silent_gap"),
    ]:
        assert want in edges
    pre = [s for s in truth["sessions"] if "pre_first_change" in s["edge_cases"]]
    assert pre[0]["content_id"] is None and pre[0]["session_index"] == 0
    gap = next(s for s in truth["sessions"] if "silent_gap" in s["edge_cases"])
    nxt = next(
        s
        for s in truth["sessions"]
        if s["rxid"] == gap["rxid"] and s["session_index"] == gap["session_index"] + 1
    )
    assert (
        datetime.fromisoformat(nxt["start_ts"]) - datetime.fromisoformat(gap["end_ts"])
    ).total_seconds() > 1800
    assert sum(s["seq_gaps"] for s in truth["sessions"] if index[s["rxid"]] == 0) >= 3


def test_rotation_overlap(fleet10):
    res, truth, _ = fleet10
    n = 20
    pairs = 0
    for dev in truth["devices"]:
        files = [content(read_lines(res.out_dir / f)) for f in dev["files"]]
        assert len(files) >= 2
        for a, b in zip(files, files[1:]):
            assert b[:n] == a[-n:]
            assert b[n] != a[-1] if len(b) > n else True
            pairs += 1
        names = [Path(f).name for f in dev["files"]]
        assert names == sorted(names)
        assert all(re.fullmatch(r"logcat_\d{8}T\d{6}\.log\.gz", x) for x in names)
    assert pairs >= 10


def test_every_file_starts_with_markers(fleet10):
    res, truth, _ = fleet10
    for dev in truth["devices"]:
        for f in dev["files"]:
            lines = read_lines(res.out_dir / f)
            head = lines[: len(lines) - len(content(lines))]
            assert head[-1] == MARKER_MAIN
            assert (len(head) == 3) == dev["dumpstate"]


def test_determinism(tmp_path):
    spec = FleetSpec(devices=3, hours=1, seed=42, noise_lines_per_minute=40, rotate_mb=0.05)
    a = generate_fleet(tmp_path / "a", spec)
    b = generate_fleet(tmp_path / "b", spec)
    c = generate_fleet(
        tmp_path / "c",
        FleetSpec(devices=3, hours=1, seed=43, noise_lines_per_minute=40, rotate_mb=0.05),
    )
    fa, fb = files_bytes(a), files_bytes(b)
    assert fa == fb and len(fa) > 4
    assert files_bytes(c) != fa
    assert json.loads(c.truth_path.read_text()) != json.loads(a.truth_path.read_text())


def test_new_year_crossing(tmp_path):
    spec = FleetSpec(
        devices=3,
        hours=3,
        seed=1,
        noise_lines_per_minute=20,
        start=datetime(2023, 12, 31, 22, 0, tzinfo=UTC),
    )
    res = generate_fleet(tmp_path, spec)
    truth = json.loads(res.truth_path.read_text())
    dev = truth["devices"][0]
    assert dev["header_variant"] == "threadtime"  # no year in the line
    first = dev["files"][0]
    assert Path(first).name.startswith("logcat_20231231T22")
    lines = read_lines(res.out_dir / first)
    assert any(ln.startswith("12-31 23:") for ln in lines)
    assert any(ln.startswith("01-01 00:") for ln in lines)
    assert any("new_year" in s["edge_cases"] for s in truth["sessions"])
    # the truth is still derivable (year inferred from the file name, then Dec -> Jan)
    for dev in truth["devices"]:
        if dev["header_variant"] in VARIANT_RE:
            mine = truth_sessions(events_from_files(res.out_dir, dev))
            theirs = [s for s in truth["sessions"] if s["rxid"] == dev["rxid"]]
            assert [s["end_ts"] for s in mine] == [s["end_ts"] for s in theirs]


def test_zone_with_dst(tmp_path):
    spec = FleetSpec(
        devices=5,
        hours=3,
        seed=5,
        noise_lines_per_minute=20,
        tz="Europe/Paris",
        start=datetime(2024, 3, 31, 0, 0, tzinfo=UTC),
    )
    res = generate_fleet(tmp_path, spec)
    truth = json.loads(res.truth_path.read_text())
    zoned = [d for d in truth["devices"] if d["header_variant"] in ("zone", "iso", "epoch")]
    assert {d["header_variant"] for d in zoned} == {"zone", "iso", "epoch"}
    for dev in zoned:
        text = "\n".join(read_lines(res.out_dir / dev["files"][0]))
        if dev["header_variant"] == "zone":
            assert " +0100 " in text and " +0200 " in text
        if dev["header_variant"] == "iso":
            assert "+01:00 " in text and "+02:00 " in text
        events = events_from_files(res.out_dir, dev)
        mine = truth_sessions(events)
        theirs = [s for s in truth["sessions"] if s["rxid"] == dev["rxid"]]
        assert [s["start_ts"] for s in mine] == [s["start_ts"] for s in theirs]


def _ev(t, etype, seq, **data):
    return VarEvent(t * 1000, etype, data, seq=seq)


def test_truth_sessions_rules():
    evs = [
        _ev(0, "BootInfo", 1, model="M", fw="F", app="A"),
        _ev(5, "HdmiHotplug", 2, connected=True),  # no playback: no session
        _ev(10, "ChangeContent", 3, cid="c1", src="live"),
        _ev(11, "FirstFrame", 4, ttff_ms=900),
        _ev(20, "BlackScreen", 5, state="start"),
        _ev(22, "BlackScreen", 6, state="end", dur_ms=1500),  # dur_ms wins over 2000
        _ev(30, "VideoFreeze", 7, state="start"),
        _ev(31, "VideoFreeze", 8, state="end"),  # end - start = 1000
        _ev(40, "BufferingStart", 11),  # seq jump: 2 lost lines
        _ev(50, "StandbyEnter", 12, reason="power_key"),  # counted, closes (buffer open)
        _ev(60, "StandbyExit", 13),  # no session
        _ev(70, "ChangeContent", 14, cid="c2", src="vod"),
        _ev(71, "PlaybackError", 15, fatal=True, code=1),
        _ev(80 + 1801, "ChangeContent", 16, cid="c3", src="live"),  # after a silent gap
        _ev(80 + 1802, "DisplayDrop", 17, dropped=5),
    ]
    s = truth_sessions(evs, rxid="R0000000001")
    assert [x["content_id"] for x in s] == ["c1", "c2", "c3"]
    a, b, c = s
    assert (a["black_screen_count"], a["black_screen_ms"]) == (1, 1500)
    assert (a["video_freeze_count"], a["video_freeze_ms"]) == (1, 1000)
    assert (a["buffering_count"], a["rebuffer_ms"]) == (1, 10000)  # closed at the StandbyEnter
    assert a["standby_count"] == 1 and a["event_count"] == 8 and a["seq_gaps"] == 2
    assert a["end_ts"] == "1970-01-01T00:00:50.000Z" and a["ttff_ms"] == 900
    assert a["model"] == "M" and "unclosed_episode" in a["edge_cases"]
    assert b["video_start_failure"] and b["end_ts"] == "1970-01-01T00:01:11.000Z"
    assert "silent_gap" in b["edge_cases"] and b["duration_s"] == 1.0
    assert c["dropped_frames"] == 5 and "log_end" in c["edge_cases"]
    pre = truth_sessions(
        [
            _ev(0, "BootInfo", 1),
            _ev(1, "FirstFrame", 2, ttff_ms=5),
            _ev(9, "ChangeContent", 3, cid="x"),
        ]
    )
    assert pre[0]["content_id"] is None and pre[0]["event_count"] == 2
    assert pre[0]["end_ts"] == "1970-01-01T00:00:09.000Z"
    assert not pre[0]["video_start_failure"]
    dropped = _ev(3, "DisplayDrop", 3)
    dropped.dropped = True
    assert truth_sessions([_ev(0, "ChangeContent", 1), dropped])[0]["event_count"] == 1
