"""Search (`logalyzer grep`, `GET /v1/lines`) against a plain scan of the input files: a small
synthetic fleet is ingested once for the module (real Ray, real PostgreSQL), then every answer
is checked against the decompressed files read in Python: the same lines, as many, in the same
order, each pointing at the file and line it came from."""

from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from logalyzer.cli import main
from logalyzer.core.search import ContextMerger, LineFilter, decode_cursor, encode_cursor
from logalyzer.core.synth import FleetSpec, generate_fleet
from logalyzer.http.app import Service, create_api
from logalyzer.jobs.ingest import ingest
from logalyzer.store import tokens
from logalyzer.store.db import Database
from logalyzer.store.search import devices, page_lines

from .conftest import empty_database

#: A box whose second file has no wall-clock line at all (a dmesg dump): its lines have no time.
DMESG_RX = "R5555555555"
MARKER = re.compile(
    r"^(?:-{9} (?:beginning of|switch to) |-{6,} .*-{6,}\s*$|={2,}\s*$|== dumpstate: )"
)
#: Texts that occur only in messages (never in a header or tag), so a scan of raw lines and a
#: search of messages must agree.
PATTERNS = ("stall time corrected", "Booting Linux", "onHotplug", "hdmitx", "dmesg-only")


# --------------------------------------------------------------------------- the fleet


@pytest.fixture(scope="module")
def fleet(pg_dsn, settings, ray_local, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("grep-fleet")
    generate_fleet(out, FleetSpec(devices=3, hours=1, seed=14, noise_lines_per_minute=40))
    box = out / DMESG_RX
    box.mkdir()
    (box / "logcat_20240317T080000.log.gz").write_bytes(
        gzip.compress(
            b"".join(
                f"03-17 08:{m:02d}:00.000  1702  2395 I Tag: timed line {m}\n".encode()
                for m in range(10)
            )
        )
    )
    (box / "dmesg_20240317T090000.log.gz").write_bytes(
        gzip.compress(
            b"".join(f"[ 5000.{k:06d}] dmesg-only: untimed line {k}\n".encode() for k in range(8))
        )
    )
    empty_database(pg_dsn)
    summary = ingest(settings, Database(pg_dsn), [out])
    assert {f.status for f in summary.files} == {"done"}
    return out


@pytest.fixture(scope="module")
def scan(fleet) -> dict[str, list[str]]:
    """Per box, its distinct raw lines in the order a search shows them: files in name (=
    time) order, lines in file order, each line once (the first time it is met, as the
    ingest's MD5 dedup keeps it), markers left out; the dmesg file's lines last (no time)."""
    out: dict[str, list[str]] = {}
    for box in sorted(p for p in fleet.iterdir() if p.is_dir()):
        files = sorted(box.glob("*.gz"), key=lambda f: (f.name.startswith("dmesg"), f.name))
        seen, lines = set(), []
        for f in files:
            for line in raw_lines(f):
                if not MARKER.match(line) and line not in seen:
                    seen.add(line)
                    lines.append(line)
        out[box.name] = lines
    return out


def raw_lines(path: Path) -> list[str]:
    text = gzip.decompress(Path(path).read_bytes()).decode()
    return text.split("\n")[:-1]


def expected_hits(scan, pattern: str, rxids=None) -> list[tuple[str, str]]:
    return [
        (rx, line)
        for rx, lines in sorted(scan.items())
        if rxids is None or rx in rxids
        for line in lines
        if pattern in line
    ]


# --------------------------------------------------------------------------- helpers


def grep(dsn: str, *args: str):
    return CliRunner().invoke(main, ["grep", *args], env={"LOGALYZER_DSN": dsn})


def grep_json(dsn: str, *args: str) -> list[dict]:
    res = grep(dsn, *args, "--json")
    assert res.exit_code == 0, res.output
    return [json.loads(line) for line in res.stdout.splitlines()]


def as_raw(records: list[dict]) -> list[tuple[str, str]]:
    """Each record's line as the file holds it, read at the path and line number it names."""
    files: dict[str, list[str]] = {}
    out = []
    for r in records:
        if r["path"] not in files:
            files[r["path"]] = raw_lines(r["path"])
        out.append((r["rxid"], files[r["path"]][r["line_no"] - 1]))
    return out


# --------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize("pattern", PATTERNS)
def test_grep_finds_what_a_scan_of_the_files_finds_in_the_same_order(pg_dsn, scan, pattern):
    records = grep_json(pg_dsn, pattern)
    want = expected_hits(scan, pattern)
    assert want, f"the fleet should hold {pattern!r}"
    assert as_raw(records) == want  # same lines, same count, same order, right file:line
    assert all(pattern in r["message"] and r["match"] for r in records)
    times = defaultdict(list)
    for r in records:
        times[r["rxid"]].append(r["ts"])
    for rx, ts in times.items():  # timed lines in time order, untimed ones (null) after them
        timed = [t for t in ts if t is not None]
        assert timed == sorted(timed) and ts == timed + [None] * (len(ts) - len(timed)), rx


def test_text_lines_name_box_time_file_and_line(pg_dsn, scan):
    res = grep(pg_dsn, "stall time corrected", "--limit", "3")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        assert re.fullmatch(
            r"R\d{10} \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z logcat_\w+\.log\.gz:\d+ W/AudioTrack: "
            r".*stall time corrected.*",
            line,
        ), line
    assert "3 matching line(s)" in res.stderr


def test_untimed_lines_come_last_and_only_without_a_window(pg_dsn, scan):
    records = grep_json(pg_dsn, "", "--rxid", DMESG_RX)
    assert as_raw(records) == [(DMESG_RX, line) for line in scan[DMESG_RX]]
    assert [r["ts"] is None for r in records] == [False] * 10 + [True] * 8
    windowed = grep_json(pg_dsn, "", "--rxid", DMESG_RX, "--since", "2024-03-17")
    assert len(windowed) == 10 and all(r["ts"] for r in windowed)


def test_filters_agree_with_the_unfiltered_search(pg_dsn, scan):
    everything = grep_json(pg_dsn, "")
    assert as_raw(everything) == expected_hits(scan, "")
    rxids = sorted(scan)[1:3]
    got = grep_json(pg_dsn, "", "--rxid", rxids[0], "--rxid", rxids[1].lower())
    assert got == [r for r in everything if r["rxid"] in rxids]
    assert grep_json(pg_dsn, "", "--rxid", ",".join(rxids)) == got
    timed = [r for r in everything if r["ts"]]
    start = datetime.fromisoformat(timed[len(timed) // 3]["ts"])
    end = start + timedelta(minutes=20)
    got = grep_json(pg_dsn, "", "--since", start.isoformat(), "--until", end.isoformat())
    assert got and got == [r for r in timed if start <= datetime.fromisoformat(r["ts"]) < end]
    # a zone in the time is honoured; a time without one is UTC
    local = start.astimezone(UTC).replace(tzinfo=None).isoformat()
    assert grep_json(pg_dsn, "", "--since", local, "--until", end.isoformat()) == got
    plus1 = (start + timedelta(hours=1)).replace(tzinfo=None).isoformat() + "+01:00"
    assert grep_json(pg_dsn, "", "--since", plus1, "--until", end.isoformat()) == got
    got = grep_json(pg_dsn, "", "--tag", "AudioTrack", "--tag", "kernel")
    assert got and got == [r for r in everything if r["tag"] in ("AudioTrack", "kernel")]
    got = grep_json(pg_dsn, "", "--level", "w,e", "--level", "F")
    assert got and got == [r for r in everything if r["level"] in ("W", "E", "F")]
    got = grep_json(pg_dsn, "", "--limit", "7")
    assert got == everything[:7]


def test_plain_text_is_literal_and_case_sensitive_unless_told(pg_dsn, scan):
    # LIKE's wildcards are plain characters here (tags hold _ too: compare with the messages)
    pattern = "getTimestamp_l("
    assert as_raw(grep_json(pg_dsn, pattern)) == expected_hits(scan, pattern)
    everything = grep_json(pg_dsn, "")
    for pattern in ("%", "_", "\\", "_l(", "%s"):
        want = [r for r in everything if pattern in r["message"]]
        assert grep_json(pg_dsn, pattern) == want, pattern
    assert grep_json(pg_dsn, "STALL TIME CORRECTED") == []
    assert grep_json(pg_dsn, "STALL TIME CORRECTED", "-i") == grep_json(
        pg_dsn, "stall time corrected"
    )


def test_regex_finds_what_pythons_re_finds(pg_dsn, scan):
    pattern = r"stall time corrected using current time [0-9]+5$"
    want = [(rx, line) for rx, line in expected_hits(scan, "") if re.search(pattern, line)]
    assert want
    assert as_raw(grep_json(pg_dsn, pattern, "--regex")) == want
    assert grep_json(pg_dsn, "STALL.*[0-9]+5$", "--regex", "-i") == grep_json(
        pg_dsn, pattern, "--regex"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["(", "--regex"], "invalid regular expression"),
        (["x", "--since", "yesterday"], "not a time: 'yesterday'"),
        (["x", "--since", "2024-03-18", "--until", "2024-03-17"], "empty time window"),
        (["x", "--rxid", "R0000000009"], "no lines stored for R0000000009"),
        (["x", "--rxid", "R123"], "not RxIDs: R123"),
        (["x", "--level", "Q"], "not a log level: 'Q'"),
    ],
)
def test_bad_searches_are_one_line_and_a_hint(pg_dsn, fleet, args, message):
    res = grep(pg_dsn, *args)
    assert res.exit_code == 1, res.output
    err = res.stderr.splitlines()
    assert len(err) == 2 and message in err[0] and err[1].startswith("Hint: ")
    assert "Traceback" not in res.output and res.stdout == ""


def test_context_shows_the_neighbours_in_the_files(pg_dsn, scan):
    n, pattern = 2, "stall time corrected"
    want_lines, want_groups = [], 0
    for rx, lines in sorted(scan.items()):  # grep -C 2 over the scan
        hits = [i for i, line in enumerate(lines) if pattern in line]
        groups: list[list[int]] = []
        for i in hits:
            lo, hi = max(0, i - n), min(len(lines), i + n + 1)
            if groups and lo <= groups[-1][1]:
                groups[-1][1] = hi
            else:
                groups.append([lo, hi])
        want_groups += len(groups)
        want_lines += [(rx, lines[k]) for lo, hi in groups for k in range(lo, hi)]
    records = grep_json(pg_dsn, pattern, "-C", str(n))
    assert as_raw(records) == want_lines
    assert [r["match"] for r in records] == [pattern in line for _, line in want_lines]
    text = grep(pg_dsn, pattern, "--context", str(n)).stdout.splitlines()
    assert text.count("--") == want_groups - 1
    assert sum(1 for t in text if t != "--") == len(want_lines)
    assert all(re.search(r"\.gz-\d+ ", t) for t in text if t != "--" and pattern not in t)


def test_context_stays_inside_the_timed_or_untimed_lines(pg_dsn, scan):
    """A box's lines without a time come after its timed ones, but they are not their
    neighbours in any real sense: context does not cross from one group to the other."""
    got = grep_json(pg_dsn, "untimed line 0", "-C", "2", "--rxid", DMESG_RX)
    assert [r["message"] for r in got] == [f"dmesg-only: untimed line {k}" for k in range(3)]
    got = grep_json(pg_dsn, "timed line 9", "-C", "2", "--rxid", DMESG_RX)
    assert [r["message"] for r in got] == [f"timed line {k}" for k in (7, 8, 9)]


# --------------------------------------------------------------------------- the store


def test_keyset_pages_under_a_byte_budget_give_every_hit_once(pg_dsn, fleet):
    flt = LineFilter(pattern="o")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        boxes = devices(conn)
        whole = page_lines(conn, flt, boxes, None, 100_000)
        assert whole.next is None
        got, after, pages = [], None, 0
        while True:
            page = page_lines(conn, flt, boxes, after, 50, max_bytes=2000)
            assert (
                page.lines
                and sum(len(ln.message) for ln in page.lines) <= 2000
                or (len(page.lines) == 1)
            )
            got += page.lines
            pages += 1
            if page.next is None:
                break
            after = decode_cursor(encode_cursor(page.next))
    assert [ln.position for ln in got] == [ln.position for ln in whole.lines]
    assert pages > len(whole.lines) / 50  # the budget, not the limit, ended most pages
    assert any(ln.ts is None for ln in got)  # the untimed segment is paged too


def test_context_merger_joins_blocks_that_touch():
    from logalyzer.core.search import Line

    def line(k: int, rx: str = "R0000000001") -> Line:
        return Line(
            rx,
            datetime(2024, 3, 17, tzinfo=UTC) + timedelta(seconds=k),
            1,
            k,
            _uuid(k),
            "I",
            "T",
            f"m{k}",
        )

    m = ContextMerger(1)
    assert m.add([line(0)], line(1), [line(2)]) == (False, [line(0), line(1), line(2)])
    # hit 4: before it 2 (the extra line) and 3; 2 was shown, so 3 touches: no separator
    assert m.add([line(2), line(3)], line(4), [line(5)]) == (False, [line(3), line(4), line(5)])
    # hit 8: before it 6, 7; the last shown is 5 < 6: a gap, a separator
    assert m.add([line(6), line(7)], line(8), []) == (True, [line(7), line(8)])
    assert m.add([], line(0, "R0000000002"), [])[0] is True  # another box


def _uuid(k: int):
    from uuid import UUID

    return UUID(int=k)


def test_every_partition_gets_the_time_index(pg_dsn, fleet):
    with psycopg.connect(pg_dsn) as conn:
        parts = devices(conn)
        defs = conn.execute(
            "SELECT tablename FROM pg_indexes WHERE indexdef LIKE '%USING brin (ts)%'"
            " AND tablename <> 'log_lines'"
        ).fetchall()
    assert sorted(t.upper() for (t,) in defs) == parts


# --------------------------------------------------------------------------- HTTP


@pytest.fixture(scope="module")
def api(pg_dsn, fleet):
    with psycopg.connect(pg_dsn) as conn:
        admin = tokens.create_token(conn, admin=True)[1]
        box = tokens.create_token(conn, rxid=DMESG_RX)[1]
    with TestClient(create_api(Service(pg_dsn, db_timeout=5.0))) as client:
        yield client, {"Authorization": f"Bearer {admin}"}, {"Authorization": f"Bearer {box}"}


def window_of(records: list[dict]) -> tuple[str, str]:
    timed = [datetime.fromisoformat(r["ts"]) for r in records if r["ts"]]
    return min(timed).isoformat(), (max(timed) + timedelta(seconds=1)).isoformat()


def test_http_pages_give_the_clis_lines_each_once(pg_dsn, api):
    client, admin, _ = api
    rxids = sorted(devices_of(pg_dsn))[:2]
    args = ["o", *[x for r in rxids for x in ("--rxid", r)]]
    since, until = window_of(grep_json(pg_dsn, *args))
    want = grep_json(pg_dsn, *args, "--since", since, "--until", until)
    params = {"rxid": rxids, "since": since, "until": until, "q": "o", "limit": 37}
    got, cursor, pages = [], None, 0
    while True:
        r = client.get(
            "/v1/lines", params={**params, **({"cursor": cursor} if cursor else {})}, headers=admin
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["lines"]) <= 37 and body["rxids"] == rxids
        got += body["lines"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == -(-len(want) // 37)
    norm = lambda recs: [(x["rxid"], x["path"], x["line_no"], x["message"]) for x in recs]
    assert norm(got) == norm(want)
    assert all(
        datetime.fromisoformat(x["ts"]) == datetime.fromisoformat(y["ts"])
        for x, y in zip(got, want)
    )


def test_http_context_pages_cover_every_hit(pg_dsn, api):
    client, admin, _ = api
    rx = sorted(devices_of(pg_dsn))[0]
    since, until = window_of(grep_json(pg_dsn, "stall", "--rxid", rx))
    want = grep_json(pg_dsn, "stall", "--rxid", rx, "--since", since, "--until", until, "-C", "1")
    params = {"rxid": rx, "since": since, "until": until, "q": "stall", "limit": 3, "context": 1}
    got, cursor = [], None
    while True:
        body = client.get(
            "/v1/lines", params={**params, **({"cursor": cursor} if cursor else {})}, headers=admin
        ).json()
        got += body["lines"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    key = lambda x: (x["path"], x["line_no"])
    assert {key(x) for x in got if x["match"]} == {key(x) for x in want if x["match"]}
    assert {key(x) for x in got} == {key(x) for x in want}


def devices_of(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return devices(conn)


def test_http_needs_an_admin_token(api):
    client, _, box = api
    params = {"rxid": DMESG_RX, "since": "2024-03-17T08:00:00Z"}
    r = client.get("/v1/lines", params=params, headers=box)
    assert r.status_code == 403 and "admin" in r.json()["detail"] and r.json()["hint"]
    r = client.get("/v1/lines", params=params)
    assert r.status_code == 401 and r.json()["hint"]
    r = client.get("/v1/lines", params=params, headers={"Authorization": "Bearer lgz_nope"})
    assert r.status_code == 401


@pytest.mark.parametrize(
    "params, status, words",
    [
        (
            {"since": "2024-03-17T00:00:00Z", "until": "2024-03-19T00:00:00Z"},
            400,
            "wider than 24 h",
        ),
        (
            {"since": "2024-03-17T08:00:00Z", "until": "2024-03-17T08:00:00Z"},
            400,
            "empty time window",
        ),
        ({"since": "2024-03-17T08:00:00Z", "q": "(", "regex": "true"}, 400, "invalid regular"),
        ({"since": "2024-03-17T08:00:00Z", "cursor": "not-a-cursor"}, 400, "not a cursor"),
        ({"since": "2024-03-17T08:00:00Z", "rxid": "R0000000009"}, 404, "no lines stored"),
        ({"since": "2024-03-17T08:00:00Z", "rxid": "R12"}, 422, "rxid"),
        ({"since": "yesterday"}, 422, "since"),
        ({}, 422, "since"),
        ({"since": "2024-03-17T08:00:00Z", "limit": 0}, 422, "limit"),
        ({"since": "2024-03-17T08:00:00Z", "limit": 5000}, 422, "limit"),
        ({"since": "2024-03-17T08:00:00Z", "context": 50}, 422, "context"),
        ({"since": "2024-03-17T08:00:00Z", "level": "Q"}, 422, "level"),
        ({"since": "2024-03-17T08:00:00Z", "q": "x" * 1001}, 422, '"q"'),
    ],
)
def test_http_bad_searches_are_json_errors(api, params, status, words):
    client, admin, _ = api
    r = client.get("/v1/lines", params={"rxid": DMESG_RX, **params}, headers=admin)
    assert r.status_code == status, r.text
    body = r.json()
    assert words in json.dumps(body["detail"])
    if status != 422:
        assert body["hint"]
    assert "Traceback" not in r.text


def test_http_cursor_of_another_box_is_refused(pg_dsn, api):
    client, admin, _ = api
    other = sorted(devices_of(pg_dsn))[0]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        page = page_lines(conn, LineFilter(), [other], None, 1)
    params = {
        "rxid": DMESG_RX,
        "since": "2024-03-17T08:00:00Z",
        "cursor": encode_cursor(page.next),
    }
    r = client.get("/v1/lines", params=params, headers=admin)
    assert r.status_code == 400 and "does not cover" in r.json()["detail"]


def test_http_search_past_its_time_limit_is_a_400(pg_dsn, fleet):
    """A page that runs past LOGALYZER_LINES_TIMEOUT_S is cancelled by PostgreSQL: here it
    waits for a lock another session holds on the box's partition (waiting counts)."""
    from logalyzer.settings import Settings

    svc = Service(pg_dsn, Settings(dsn=pg_dsn, lines_timeout_s=0.2))
    with psycopg.connect(pg_dsn) as conn:
        admin = tokens.create_token(conn, admin=True)[1]
    with TestClient(create_api(svc)) as client, psycopg.connect(pg_dsn) as locker:
        locker.execute(f"LOCK TABLE r{DMESG_RX[1:]} IN ACCESS EXCLUSIVE MODE")
        r = client.get(
            "/v1/lines",
            params={"rxid": DMESG_RX, "since": "2024-03-17T07:00:00Z"},
            headers={"Authorization": f"Bearer {admin}"},
        )
        locker.rollback()
    assert r.status_code == 400, r.text
    assert "took longer than 200 ms" in r.json()["detail"] and "narrow" in r.json()["hint"]


def test_http_fuzzed_searches_of_real_boxes_never_fail(pg_dsn, api):
    """Schema-generated requests to /v1/lines, half of them naming the fleet's boxes so the
    search itself runs (not only the 404): never a 500, answers as documented. Cross-parameter
    rules (the window's width, a cursor of this search) may rightly refuse valid data: 400."""
    import schemathesis
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings
    from schemathesis.checks import positive_data_acceptance

    client, admin, _ = api
    boxes = devices_of(pg_dsn)
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    op = schema["/v1/lines"]["GET"]

    @given(case=op.as_strategy())
    @hsettings(
        max_examples=150,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case):
        if case.query and len(str(case.query)) % 2:
            case.query["rxid"] = boxes[: 1 + len(str(case.query)) % len(boxes)]
            case.query.setdefault("since", "2024-03-17T07:30:00Z")
        r = case.call_and_validate(headers=admin, excluded_checks=[positive_data_acceptance])
        statuses.append(r.status_code)

    statuses: list[int] = []
    run()
    assert statuses.count(200) >= 10, statuses  # the searches ran, not only the refusals
