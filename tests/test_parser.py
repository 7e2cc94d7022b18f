"""The header parser: the golden Loghub file, every variant of LOG_FORMAT.md, time rules, and
hypothesis properties (arbitrary bytes never raise; a generated line parses back; the compiled
header scanner and RE2 give the same rows)."""

from __future__ import annotations

import csv
import gzip
import hashlib
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from logalyzer.core.files import LineReader, is_valid_rxid, rxid_from_path
from logalyzer.core.parser import HEADERS_COMPILED, FileParser

from .helpers import DATA

UTC = UTC
ANDROID = DATA / "loghub-android"


def parse_lines(lines, rxid="R1234567890", **kw):
    """Rows of one chunk as RE2 reads them; the compiled header scanner must give the same."""
    arr = pa.array(lines, pa.string())
    fp = FileParser(rxid, compiled=False, **kw)
    rows = fp.parse(arr)
    if HEADERS_COMPILED:
        assert FileParser(rxid, compiled=True, **kw).parse(arr).equals(rows), "scanner != RE2"
    return rows.to_pylist(), fp


def test_golden_android_2k_every_line_matches_loghub():
    fp = FileParser("R1234567890", anchor=datetime(2017, 3, 17))
    rows = [
        r for c in LineReader(ANDROID / "Android_2k.log") for r in fp.parse(c.lines).to_pylist()
    ]
    with open(ANDROID / "Android_2k.log_structured.csv", newline="") as f:
        truth = list(csv.DictReader(f))
    assert len(rows) == len(truth) == 2000
    mismatches = []
    for got, exp in zip(rows, truth):
        ts = got["ts"]
        fields = (
            ts.strftime("%m-%d"),
            ts.strftime("%H:%M:%S.%f")[:12],
            str(got["pid"]),
            str(got["tid"]),
            got["level"],
            got["tag"],
            got["message"].rstrip(),
        )
        want = (
            exp["Date"],
            exp["Time"],
            exp["Pid"],
            exp["Tid"],
            exp["Level"],
            exp["Component"],
            exp["Content"].rstrip(),
        )
        if fields != want:
            mismatches.append((exp["LineId"], fields, want))
    assert mismatches == []
    # raw text is kept as it was: trailing blanks survive
    raw = (ANDROID / "Android_2k.log").read_text().splitlines()
    assert sum(1 for r in rows if r["message"].endswith(" ")) == sum(
        1 for line in raw if line.endswith(" ")
    )


# --------------------------------------------------------------------------- every variant

VARIANT_SAMPLES = [
    (
        "threadtime",
        "03-17 16:13:38.811  1702  2395 I VAR     : PLAYER|tune|ChangeContent|cid=ch101",
        datetime(2024, 3, 17, 16, 13, 38, 811000, UTC),
        1702,
        2395,
        "I",
        "VAR",
    ),
    (
        "year",
        "2024-03-17 16:13:38.811  1702  2395 I VAR     : x",
        datetime(2024, 3, 17, 16, 13, 38, 811000, UTC),
        1702,
        2395,
        "I",
        "VAR",
    ),
    (
        "usec",
        "03-17 16:13:38.811532  1702  2395 D Tag: x",
        datetime(2024, 3, 17, 16, 13, 38, 811532, UTC),
        1702,
        2395,
        "D",
        "Tag",
    ),
    (
        "nsec",
        "03-17 16:13:38.811532999  1702  2395 D Tag: x",
        datetime(2024, 3, 17, 16, 13, 38, 811532, UTC),
        1702,
        2395,
        "D",
        "Tag",
    ),
    (
        "zone",
        "03-17 16:13:38.811 +0100  1702  2395 I Tag: x",
        datetime(2024, 3, 17, 15, 13, 38, 811000, UTC),
        1702,
        2395,
        "I",
        "Tag",
    ),
    (
        "uid name",
        "03-17 16:13:38.811  media  1702  2395 W AudioTrack: x",
        datetime(2024, 3, 17, 16, 13, 38, 811000, UTC),
        1702,
        2395,
        "W",
        "AudioTrack",
    ),
    (
        "uid number",
        "03-17 16:13:38.811 10128  3039  3039 E AndroidRuntime: x",
        datetime(2024, 3, 17, 16, 13, 38, 811000, UTC),
        3039,
        3039,
        "E",
        "AndroidRuntime",
    ),
    (
        "epoch",
        "        1710692018.811  1702  2395 I VAR     : x",
        datetime(2024, 3, 17, 16, 13, 38, 811000, UTC),
        1702,
        2395,
        "I",
        "VAR",
    ),
    (
        "time",
        "03-17 16:13:38.811 I/VAR     ( 1702): x",
        datetime(2024, 3, 17, 16, 13, 38, 811000, UTC),
        1702,
        None,
        "I",
        "VAR",
    ),
    (
        "studio",
        "2024-03-17 16:13:38.811 1702-2395/com.example.stb I/VAR: x",
        datetime(2024, 3, 17, 16, 13, 38, 811000, UTC),
        1702,
        2395,
        "I",
        "VAR",
    ),
    (
        "iso Z",
        "2024-03-17T16:13:38.811Z 1702 2395 I VAR: x",
        datetime(2024, 3, 17, 16, 13, 38, 811000, UTC),
        1702,
        2395,
        "I",
        "VAR",
    ),
    (
        "iso offset",
        "2024-03-17T16:13:38.811+01:00 1702 2395 I VAR: x",
        datetime(2024, 3, 17, 15, 13, 38, 811000, UTC),
        1702,
        2395,
        "I",
        "VAR",
    ),
]


@pytest.mark.parametrize(
    "name,line,ts,pid,tid,level,tag", VARIANT_SAMPLES, ids=[v[0] for v in VARIANT_SAMPLES]
)
def test_every_header_variant(name, line, ts, pid, tid, level, tag):
    (row,), _ = parse_lines([line], anchor=datetime(2024, 3, 1))
    assert (row["ts"], row["pid"], row["tid"], row["level"], row["tag"]) == (
        ts,
        pid,
        tid,
        level,
        tag,
    )
    assert row["status"] in ("ok", "partial")  # a VAR message "x" is read only in part
    assert row["message"].endswith("x") or row["message"].startswith("PLAYER")


def test_tag_with_spaces_and_colons_splits_on_first_colon_space():
    (row,), _ = parse_lines(
        ["03-17 16:13:38.811  1702  2395 I my tag:x : hello: world"], anchor=datetime(2024, 3, 1)
    )
    assert (row["tag"], row["message"]) == ("my tag:x", "hello: world")


def test_kernel_lines_take_uptime_and_the_preceding_wall_clock():
    rows, fp = parse_lines(
        [
            "03-17 16:13:38.811  1702  2395 I A: before",
            "[  123.456789] hdmitx: plugout",
            "<3>[    5.781021] oops",
            "[    1.379973@0] hdmitx: hpd",
        ],
        anchor=datetime(2024, 3, 1),
    )
    k = rows[1:]
    assert [r["uptime_s"] for r in k] == [123.456789, 5.781021, 1.379973]
    assert all(r["ts"] == rows[0]["ts"] and r["ts_inferred"] for r in k)
    assert [r["level"] for r in k] == [None, "E", None]
    assert {r["tag"] for r in k} == {"kernel"}
    assert k[0]["message"] == "hdmitx: plugout"
    assert fp.stats.kernel == 3


def test_markers_are_counted_not_stored_and_dumpstate_anchors_the_year():
    rows, fp = parse_lines(
        [
            "== dumpstate: 2019-12-31 23:00:00",
            "------ SYSTEM LOG (logcat -v threadtime -d *:v) ------",
            "--------- beginning of main",
            "12-31 23:59:59.000  1  1 I A: old year",
            "01-01 00:00:01.000  1  1 I A: new year",
        ],
        anchor=datetime(2024, 6, 1),
    )
    assert fp.stats.markers == 3
    assert [r["ts"].year for r in rows] == [2019, 2020]
    assert [r["line_no"] for r in rows] == [4, 5]


def test_year_rollover_inside_one_file_across_chunks():
    fp = FileParser("R1234567890", anchor=datetime(2023, 12, 30))
    a = fp.parse(pa.array(["12-31 23:59:58.000  1  1 I A: a"])).to_pylist()
    b = fp.parse(
        pa.array(["01-01 00:00:02.000  1  1 I A: b", "02-01 00:00:02.000  1  1 I A: c"])
    ).to_pylist()
    assert [r["ts"].year for r in a + b] == [2023, 2024, 2024]


def test_year_from_anchor_picks_the_closest_year():
    # a file dated early January whose first lines are from late December
    (row,), _ = parse_lines(["12-31 23:00:00.000  1  1 I A: x"], anchor=datetime(2024, 1, 1, 2))
    assert row["ts"].year == 2023


def test_fleet_time_zone_and_dst():
    lines = [
        "07-01 12:00:00.000  1  1 I A: summer",
        "01-15 12:00:00.000  1  1 I A: winter",
        "07-01 12:00:00.000 +0000  1  1 I A: own offset wins",
    ]
    rows, _ = parse_lines(lines, tz="Europe/Paris", anchor=datetime(2024, 7, 1))
    assert rows[0]["ts"] == datetime(2024, 7, 1, 10, tzinfo=UTC)
    assert rows[1]["ts"] == datetime(2024, 1, 15, 11, tzinfo=UTC)
    assert rows[2]["ts"] == datetime(2024, 7, 1, 12, tzinfo=UTC)


def test_dst_ambiguous_hour_reads_as_standard_time_and_skipped_hour_shifts_forward():
    (repeated,), _ = parse_lines(
        ["10-27 02:30:00.000  1  1 I A: x"], tz="Europe/Paris", anchor=datetime(2024, 10, 27)
    )
    (skipped,), _ = parse_lines(
        ["03-31 02:30:00.000  1  1 I A: x"], tz="Europe/Paris", anchor=datetime(2024, 3, 31)
    )
    assert repeated["ts"] == datetime(2024, 10, 27, 1, 30, tzinfo=UTC)  # CET, +01:00
    assert skipped["ts"] == datetime(
        2024, 3, 31, 1, 30, tzinfo=UTC
    )  # read with +01:00 = 03:30 CEST


def test_unparsed_lines_kept_verbatim_with_inferred_time():
    rows, fp = parse_lines(
        [
            "garbage first",
            "03-17 16:13:38.811  1702  2395 I A: ok",
            "\ufffd\ufffd more garbage",
            "13-45 16:13:38.811  1  1 I A: impossible date",
        ],
        anchor=datetime(2024, 3, 1),
    )
    assert [r["status"] for r in rows] == ["unparsed", "ok", "unparsed", "unparsed"]
    assert rows[0]["message"] == "garbage first" and rows[0]["ts"] == rows[1]["ts"]
    assert rows[3]["message"] == "13-45 16:13:38.811  1  1 I A: impossible date"
    assert rows[2]["ts_inferred"] and rows[2]["ts"] == rows[1]["ts"]
    assert fp.stats.unparsed == 3


def test_line_md5_is_md5_of_rxid_newline_raw_line():
    line = "03-17 16:13:38.811  1702  2395 I A: x"
    (row,), _ = parse_lines([line], rxid="R0000000042", anchor=datetime(2024, 3, 1))
    assert row["line_md5"].hex() == hashlib.md5(f"R0000000042\n{line}".encode()).hexdigest()


def test_var_lines_get_category_function_event_and_data():
    rows, fp = parse_lines(
        [
            "03-17 16:13:38.811  1702  2395 I VAR     : "
            "PLAYER|tune|CHANGE_CONTENT|cid=ch101 src=live seq=4",
            "03-17 16:13:38.900  1702  2395 I var: "
            '[PLAYER] render: black-screen state=start reason="no signal"',
            "03-17 16:13:39.000  1702  2395 I VAR: PLAYER|render|VideoFreeze",
        ],
        anchor=datetime(2024, 3, 1),
    )
    assert [(r["category"], r["function"], r["event_type"]) for r in rows] == [
        ("PLAYER", "tune", "ChangeContent"),
        ("PLAYER", "render", "BlackScreen"),
        ("PLAYER", "render", "VideoFreeze"),
    ]
    assert rows[0]["data"] == '{"cid":"ch101","src":"live","seq":4}'
    assert rows[1]["data"] == '{"state":"start","reason":"no signal"}'
    assert [r["status"] for r in rows] == ["ok", "ok", "partial"]
    assert fp.stats.var == 3 and fp.stats.partial == 1


# --------------------------------------------------------------------------- properties


@hsettings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=3000), gz=st.booleans())
def test_arbitrary_bytes_never_raise_and_every_line_is_kept(tmp_path, data, gz):
    path = tmp_path / ("R1234567890.log.gz" if gz else "R1234567890.log")
    path.write_bytes(gzip.compress(data) if gz else data)
    reader = LineReader(path)
    fp = FileParser("R1234567890", anchor=datetime(2024, 1, 1))
    try:
        rows = sum((fp.parse(c.lines, c.truncated).num_rows for c in reader), 0)
    except Exception as exc:  # only the documented refusal is allowed
        from logalyzer.core.files import NotALogFile

        assert isinstance(exc, NotALogFile)
        return
    if (
        not gz and data[:2] == b"\x1f\x8b"
    ):  # the magic says gzip: a damaged stream, no count to check
        assert reader.report.damaged
        return
    expected = data.replace(b"\r\n", b"\n").split(b"\n")
    if expected and expected[-1] == b"":
        expected.pop()
    assert reader.report.lines == len(expected)
    assert rows + fp.stats.markers == len(expected)


TAGS = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":/("),
    min_size=1,
    max_size=20,
)
MESSAGES = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=80).map(
    str.rstrip
)
WHEN = st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2037, 12, 31))


def _render(
    variant: str, when: datetime, pid: int, tid: int, level: str, tag: str, msg: str
) -> str:
    ms = f"{when:%H:%M:%S}.{when.microsecond // 1000:03d}"
    if variant == "threadtime":
        return f"{when:%m-%d} {ms} {pid:5d} {tid:5d} {level} {tag:<8}: {msg}"
    if variant == "year":
        return f"{when:%Y-%m-%d} {ms} {pid:5d} {tid:5d} {level} {tag:<8}: {msg}"
    if variant == "usec":
        return (
            f"{when:%m-%d %H:%M:%S}.{when.microsecond:06d} {pid:5d} {tid:5d} {level} {tag}: {msg}"
        )
    if variant == "zone":
        return f"{when:%m-%d} {ms} +0000 {pid:5d} {tid:5d} {level} {tag}: {msg}"
    if variant == "uid":
        return f"{when:%m-%d} {ms} system {pid:5d} {tid:5d} {level} {tag}: {msg}"
    if variant == "epoch":
        epoch = when.replace(tzinfo=UTC).timestamp()
        return f"{epoch:20.3f} {pid:5d} {tid:5d} {level} {tag:<8}: {msg}"
    if variant == "time":
        return f"{when:%m-%d} {ms} {level}/{tag:<8}({pid:5d}): {msg}"
    if variant == "studio":
        return f"{when:%Y-%m-%d} {ms} {pid}-{tid}/com.example.stb {level}/{tag}: {msg}"
    if variant == "iso":
        return (
            f"{when:%Y-%m-%dT%H:%M:%S}.{when.microsecond // 1000:03d}Z "
            f"{pid} {tid} {level} {tag}: {msg}"
        )
    raise AssertionError(variant)


@hsettings(max_examples=300, deadline=None)
@given(
    variant=st.sampled_from(
        ["threadtime", "year", "usec", "zone", "uid", "epoch", "time", "studio", "iso"]
    ),
    when=WHEN,
    pid=st.integers(1, 99999),
    tid=st.integers(1, 99999),
    level=st.sampled_from(list("VDIWEFAS")),
    tag=TAGS,
    msg=MESSAGES,
)
def test_generated_line_parses_back(variant, when, pid, tid, level, tag, msg):
    if variant != "usec":  # the other variants carry milliseconds
        when = when.replace(microsecond=when.microsecond // 1000 * 1000)
    line = _render(variant, when, pid, tid, level, tag, msg)
    (row,), _ = parse_lines([line], anchor=when)
    want = when.replace(tzinfo=UTC)
    assert row["status"] == "ok", line
    assert row["ts"] == want
    assert row["pid"] == pid
    assert row["tid"] == (None if variant == "time" else tid)
    assert (row["level"], row["tag"], row["message"]) == (level, tag, msg)


@pytest.mark.parametrize(
    ("path", "rxid"),
    [
        ("/logs/R1234567890/logcat.gz", "R1234567890"),
        ("/logs/box_r1234567890_2024-03-17.log", "R1234567890"),
        ("/logs/R12345678901/logcat.gz", None),  # eleven digits: not an RxID
        ("/logs/R\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660/l.gz", None),
    ],
)
def test_rxids_in_paths_are_r_and_ten_ascii_digits(path, rxid):
    """One pattern (core.files.RXID_PATTERN) for paths and for validation: other scripts'
    digits (Arabic-Indic here) are no RxID, so they can never name a second partition."""
    assert rxid_from_path(path) == rxid


def test_only_ascii_digits_make_a_valid_rxid():
    assert is_valid_rxid("R1234567890")
    assert not is_valid_rxid("R\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660")
    assert not is_valid_rxid("R123456789") and not is_valid_rxid("r1234567890")


@hsettings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.lists(
        st.sampled_from([b"a", b"\xc3\xa9", b"\xed\xa0\x80", b"\xff", b"\x00", b"\r", b"\n", b" "]),
        max_size=60,
    ).map(b"".join)
)
def test_lines_are_read_as_pythons_decoder_reads_them(tmp_path, data):
    # Valid UTF-8 is checked by Arrow, invalid by Python's decoder: the same lines either way
    # (U+FFFD for each bad byte, NUL dropped, trailing CRs trimmed).
    path = tmp_path / "R1234567890.log.gz"
    path.write_bytes(gzip.compress(data))
    got = [s for c in LineReader(path) for s in c.lines.to_pylist()]
    raw = data.split(b"\n")
    if raw[-1] == b"":
        raw.pop()
    assert got == [r.replace(b"\x00", b"").decode("utf-8", "replace").rstrip("\r") for r in raw]


# ------------------------------------------------------------ the compiled scanner against RE2

#: Pieces of headers and of what breaks them: digits, separators, RE2's \s and what is not in
#: it (\v), Unicode whitespace and control bytes at the end of a tag, 10-digit fractions.
PIECES = st.sampled_from(
    [
        "03-17", "2024-", "12-31", "16:13:38", "99:99:99", ".811", ",5", ".123456789",
        ".1234567890", ".", " ", "  ", "\t", "\x0b", "\x0c", "\r", "\n", "1702", "0",
        "99999999999999", "D", "I", "X", "VAR", "Tag", ":", ": ", " : ", "\u00a0", "\u3000",
        "\x1c", "\x1f", "é", "✓", "-", "/", "(", ")", "[", "<3>", "Z", "+0100", "UTC",
        "GMT", "media", "u0_a12", "a.b", "_x", "10128", "I/",
    ]
)  # fmt: skip
HEADERISH = st.tuples(
    st.sampled_from(["", "2024-", "1999-"]),
    st.sampled_from(["", " media", " 10128", " UTC", " Z", " u0_a1.x", " a-b", " 1a"]),
    st.lists(PIECES, max_size=12).map("".join),
).map(lambda p: f"{p[0]}03-17 16:13:38.811{p[1]}  1702  2395 D {p[2]}")


#: What follows a header: plain "tag: message" splits half the time, any pieces otherwise.
TAIL = st.one_of(
    st.sampled_from(["Tag: msg", "t:", "A B : c: d", "x:y", "Tag\t: m"]),
    st.lists(PIECES, max_size=12).map("".join),
)
#: Near misses of the zone, iso and epoch headers: separators, zones and fractions that RE2
#: takes or refuses, and a uid spelt like a zone.
ZONEISH = st.tuples(
    st.sampled_from(["", "2024-", "1999-"]),
    st.sampled_from([" ", "T", "T ", "  ", "\t", "T\t", "\n"]),
    st.sampled_from([".811", "", ",5", ".123456789", ".1234567890", "."]),
    st.sampled_from(
        ["", "Z", "UTC", " UTC", " Z", "+0100", " +01:00", "-01:0", "+01001", "GMT", " -0530",
         "+01:00Z", " +01:0012", "U", "\t+0100"]
    ),
    st.sampled_from(["", " media", " 10128", " UTC", " Z", " u0_a1.x", " a-b", " 1a", " Zed"]),
    TAIL,
).map(lambda p: f"{p[0]}03-17{p[1]}16:13:38{p[2]}{p[3]}{p[4]}  1702  2395 D {p[5]}")  # fmt: skip
EPOCHISH = st.tuples(
    st.sampled_from(["", " ", "   ", "\t", "\x0b"]),
    st.sampled_from(
        ["1710662539", "123456789", "12345678", "1710662539.097", "1710662539.", "1" * 20,
         "1710662539.5x"]
    ),
    st.sampled_from(["", " media", " 10128", " UTC", " Z"]),
    TAIL,
).map(lambda p: f"{p[0]}{p[1]}{p[2]}  282   282 D {p[3]}")  # fmt: skip
#: Near misses of Android Studio's export and of `logcat -v time`.
STUDIOISH = st.tuples(
    st.sampled_from(["", "2024-"]),
    st.sampled_from([" ", "  ", "\t", "T"]),
    st.sampled_from([".811", "", ".1234567890", "."]),
    st.sampled_from([" 798-979/system_process ", "  798-979/ ", " 798-/x ", " 798-979/a\x0bb "]),
    st.sampled_from(["I/", "I /", "X/", "I"]),
    TAIL,
).map(lambda p: f"{p[0]}03-17{p[1]}08:02:09{p[2]}{p[3]}{p[4]}{p[5]}")  # fmt: skip
TIMEISH = st.tuples(
    st.sampled_from(["", "2024-"]),
    st.sampled_from([" ", "  ", "\t"]),
    st.sampled_from([".242", "", ",5", "."]),
    st.sampled_from(["", " +0100", " -01:00", " Z", " +01:0", "+0100"]),
    st.sampled_from([" D/", "  I/", " D /", " X/", "D/"]),
    st.lists(st.sampled_from(["Tag", " ", "(", ")", "(1)", "x", "\t", "é", ":", "\n"]), max_size=5)
    .map("".join),
    st.sampled_from(["(  302)", "( 302 )", "(302)", "()", "(3a)", " (7)"]),
    st.sampled_from([": msg", ":", ": ", ":x", " : m", ": a (1): b", ":\n", ": m\nn"]),
).map(lambda p: f"{p[0]}03-17{p[1]}08:01:34{''.join(p[2:])}")  # fmt: skip
#: Header atoms in any order: what neither reader should take, and what both must read alike.
ATOMS = st.lists(
    st.sampled_from(
        ["2024-", "03-17", "T", " ", "  ", "\t", "16:13:38", ".811", ".1234567890", "Z", "UTC",
         "+0100", "+01:00", "-01:0", " media", " 1702", " 2395", " D ", "tag: m", "1710662539",
         ".097", ":", "U", "798-979/", "D/", "(302)", "( 3 )"]
    ),
    max_size=14,
).map("".join)  # fmt: skip


def test_the_header_scanner_is_built():
    # `make setup` compiles it; without a compiler RE2 reads every header, slower.
    assert HEADERS_COMPILED, "logalyzer/core/_headers.c was not built: is a C compiler missing?"


def test_the_scanner_reads_nearly_every_real_line():
    # What it leaves to RE2 must be rare, or it buys nothing: the Loghub sample's lines.
    lines = pa.concat_arrays([c.lines for c in LineReader(ANDROID / "Android_2k.log")])
    ok, fields = FileParser._scan(lines)
    assert ok.sum() >= 0.99 * len(lines)
    assert fields["tag"].to_pylist()[:1] == ["WindowManager"]
    # and the uid column (variant 5), which the synthetic fleets write
    uid = [
        "03-17 16:13:38.811  media  1702  2395 W AudioTrack: x",
        "03-17 16:13:38.811 UTC 1 2 I t: m",
    ]
    ok, fields = FileParser._scan(pa.array(uid))
    assert ok.tolist() == [True, False]  # a uid spelt like a zone is left to RE2
    assert fields["uid"].to_pylist() == ["media"]


def test_the_scanner_reads_every_header_variant_but_the_kernels():
    # Variants 4 and 6-9 (LOG_FORMAT.md section 2), as the synthetic fleets write them: RE2
    # cost a third of the loader's time on a fleet with such boxes (bench/README.md).
    lines = [
        "03-17 08:02:17.744 +0000   276   291 D Amlogic: decode frame",
        "2024-03-17T08:01:52.789Z 704 1050 D PowerManagerService: acquire",
        "2024-03-17T08:01:52.789-05:30 u0_a1 704 1050 I iso: with a uid",
        "2024-03-17T08:01:52.789 704 1050 W iso: without a zone",
        "        1710662539.097   282   282 D Amlogic: decode frame",
        "2024-03-17 08:02:09.913 798-979/system_process I/chatty: uid=1000(system) expire",
        "03-17 08:01:34.242 +0100 D/Amlogic (1) x(  302): decode frame",
        "2024-03-17 08:01:52 UTC 704 1050 D t: a zone word after a space is also a uid",
        "2024-03-17T 08:01:52.789 704 1050 W no zone: iso wants the time right after the T",
        "03-17 08:01:34.242 +0100D/Tag(302): the level right after the zone",
    ]
    ok, fields = FileParser._scan(pa.array(lines))
    assert ok.tolist() == [True] * 7 + [False] * 3
    assert fields["tz"].to_pylist() == ["+0000", "Z", "-05:30", None, None, None, "+0100"]
    assert fields["epoch"].to_pylist() == [None] * 4 + ["1710662539.097", None, None]
    assert fields["uid"].to_pylist() == [None, None, "u0_a1"] + [None] * 4
    assert fields["pid"].to_pylist()[-2:] == ["798", "302"]
    assert fields["tid"].to_pylist()[-2:] == ["979", None]
    assert fields["tag"].to_pylist()[-2:] == ["chatty", "Amlogic (1) x"]
    rows, _ = parse_lines(lines, anchor=datetime(2024, 3, 17))  # and equal RE2's rows
    assert [r["status"] for r in rows[7:]] == ["ok", "unparsed", "unparsed"]
    assert [r["ts"].isoformat() for r in rows[:3]] == [
        "2024-03-17T08:02:17.744000+00:00",
        "2024-03-17T08:01:52.789000+00:00",
        "2024-03-17T13:31:52.789000+00:00",
    ]


@hsettings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            HEADERISH,
            ZONEISH,
            EPOCHISH,
            STUDIOISH,
            TIMEISH,
            ATOMS,
            st.lists(PIECES, max_size=20).map("".join),
            st.text(max_size=60),
        ),
        min_size=1,
        max_size=12,
    ),
    st.integers(0, 12),
)
def test_compiled_scanner_gives_the_rows_re2_gives(lines, start):
    # parse_lines compares both ways; a slice checks the scanner reads from the array's offset.
    parse_lines(lines)
    arr = pa.array(lines, pa.string()).slice(min(start, len(lines)))
    a = FileParser("R1234567890", compiled=True).parse(arr)
    b = FileParser("R1234567890", compiled=False).parse(arr)
    assert a.equals(b)
