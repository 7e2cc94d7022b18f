#!/usr/bin/env python3
"""Search benchmark: a one-hour window of one 10 M-line box, without and with the index of
sql/0012 (BRIN on ts) and the two btrees it was chosen over, and what each costs the ingest's
COPY.

Why: issue 14 asks that `logalyzer grep` answer a one-hour window of a 10 M-line box in well
under a second, and that we say what the index costs the ingest. Pushing 10 M lines through
the pipeline would cost minutes of this 2-core machine and tell nothing more about the query,
so the box's partition is filled by SQL (``INSERT ... SELECT FROM generate_series``) with rows
like the ingest's: 30 days, a line every 0.26 s, 26 logcat tags, five levels, messages of
40-120 characters with ids and numbers, 40,000 lines a file, one in 2,000 an ANR, and laid out
on disk as the ingest writes them (time order by chunks of 35,000 rows, each chunk in
``line_md5`` order: store.lines sorts every chunk so).

Steps, in a fresh database on LOGALYZER_DSN's server (dropped at the end unless --keep-db):

1. The parent index of sql/0012 is dropped, so partitions are created without it.
2. Ingest cost: 1 M rows COPYed (binary, chunks of 35,000 md5-sorted rows, one transaction
   each, as store.lines does; the bytes made beforehand, so only PostgreSQL's side is timed)
   into a partition with only its md5 index, then with each candidate index, alternating,
   ``--copy-repeats`` times (the median is kept): BRIN (ts) (the one chosen), btree
   (ts, file_id, line_no), btree (ts). Measured as the PostgreSQL backend's CPU time (from
   /proc: the server must run on this machine) and WAL bytes, which a busy neighbour does not
   move, and wall time, which it does.
3. The 10 M-line box: filled, its md5 index built, ANALYZEd. For each index (none, then each
   candidate, built and timed): the four searches below over one hour in the middle of the
   month, each as EXPLAIN ANALYZE of store.search's own query (median of 3; once without an
   index) with the backend's CPU, for BRIN also in-process (the CLI's store calls and
   formatting, without a new process), and for none and BRIN as `logalyzer grep` in a new
   process (wall time: Python's start and imports included); for every index GET /v1/lines
   pages of 100 (``page_lines``: the hour's first and second, a day's first) and
   ``grep -C 3`` of the hour's 'timeout' hits; with BRIN a whole-month search for a rare
   pattern (a sequential scan, as it should be).

    LOGALYZER_DSN=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/grep.py [--lines 10000000] [--copy-lines 1000000] [--keep-db]

About 4-5 minutes of CPU at the defaults. Results go to bench/out/grep.json and are printed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

BOX, COPY_BOX = "R9000000001", "R9000000002"
T0 = datetime(2024, 3, 1, tzinfo=UTC)
DAYS = 30
PER_FILE = 40_000
CHUNK = 35_000
PARENT_INDEX = "log_lines_ts_brin"
#: name -> index definition on a partition (``{t}``); "brin" is sql/0012's, the two btrees
#: the alternatives it was chosen over.
INDEXES = {
    "brin": "CREATE INDEX {i} ON {t} USING brin (ts) WITH (autosummarize = on)",
    "btree (ts, file_id, line_no)": "CREATE INDEX {i} ON {t} (ts, file_id, line_no)",
    "btree (ts)": "CREATE INDEX {i} ON {t} (ts)",
}
CHOSEN = "brin"
WINDOW = (T0 + timedelta(days=15, hours=12), T0 + timedelta(days=15, hours=13))
#: name -> (pattern, regex, levels): what a support engineer asks of one hour of one box.
SEARCHES = {
    "every line": ("", False, ()),
    "substring 'timeout'": ("timeout", False, ()),
    "regex 'ANR in .*pid [0-9]+'": ("ANR in .*pid [0-9]+", True, ()),
    "level E": ("", False, ("E",)),
}

TAGS = (
    "ActivityManager OkHttp AmlogicVideoDecoderAwesome PowerManagerService AudioTrack MediaCodec "
    "WindowManager audio AudioFlinger SurfaceFlinger wpa_supplicant ExoPlayerImpl PlayerStats "
    "InputDispatcher chatty BufferQueueProducer ConnectivityService VARMON TvProvider "
    "Choreographer netd TvInputManagerService HdmiControlService ViewRootImpl kernel C2Vdec"
).split()
MESSAGES = [
    "Start proc %s:com.example.app%s/u0a52 for service",
    "getTimestamp_l(%s): device stall time corrected using current time %s",
    "--> GET https://cdn8.example.net/live/ch%s/seg_%s.ts (668-byte body)",
    "decode frame pts=%s size=%s",
    "Skipped %s frames!  The application may be doing too much work on its main thread. %s",
    "onOutputBufferDone: bitstream id %s, timestamp %s",
    "[c2.amlogic.hevc.decoder] setState: FLUSHED gen=%s id=%s",
    "relayoutWindow: Window{%s u0 com.google.android.gms/.Main} viewVisibility=%s",
    "Connection timeout after %s ms to 10.0.%s.1:443",
    "wlan0: CTRL-EVENT-SIGNAL-CHANGE above=1 signal=-%s noise=-%s txrate=433300",
    'Acquiring suspend blocker "PowerManagerService.Display" %s %s',
    "dequeueBuffer: BufferQueue has been abandoned %s %s",
    "Dropped %s frames in the last %s ms",
    "Received network state CONNECTED for netId %s (score %s)",
    "bitrate switch to %s kbps after %s ms of buffer",
    "hdmitx: hpd: %s edid block %s",
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=10_000_000, help="lines of the searched box")
    ap.add_argument("--copy-lines", type=int, default=1_000_000, help="lines COPYed per run")
    ap.add_argument("--copy-repeats", type=int, default=2, help="COPY runs per index")
    ap.add_argument("--keep-db", action="store_true", help="keep the benchmark database")
    args = ap.parse_args(argv)

    from _common import fresh_database

    from logalyzer.settings import Settings

    result: dict = {"lines": args.lines, "copy_lines": args.copy_lines, "cpus": os.cpu_count()}
    with fresh_database(Settings(), keep=args.keep_db) as (settings, db):
        with db.connect(autocommit=True) as conn:
            conn.execute(f"DROP INDEX {PARENT_INDEX}")  # step 1: partitions without it
            result["copy"] = copy_cost(conn, args.copy_lines, args.copy_repeats)
            show_copy(result["copy"])
            result["fill_s"] = fill(conn, BOX, args.lines)
            result["table_mb"] = size_mb(conn, "r" + BOX[1:])
            print(f"filled {args.lines:,} lines in {result['fill_s']:.0f} s", flush=True)
            result["search"] = {}
            for name in ("none", *INDEXES):
                result["search"][name] = search_with(conn, settings, name)
        result["load"] = os.getloadavg()
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "grep.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"written to {out / 'grep.json'}")
    return 0


# --------------------------------------------------------------------------- rows


def rows_sql(rxid: str, lo: int, hi: int, step: float) -> str:
    """SELECT of lines ``lo`` .. ``hi - 1`` of box ``rxid``, one every ``step`` seconds from
    :data:`T0`, in the ingest's physical order. ``h`` is a hash of the line number that picks
    its level, tag, message and numbers (deterministic, unlike random())."""
    tags = "ARRAY[" + ",".join(f"'{t}'" for t in TAGS) + "]"
    msgs = "ARRAY[" + ",".join("'" + m.replace("'", "''") + "'" for m in MESSAGES) + "]"
    return f"""
        SELECT '{rxid}' AS rxid, md5('{rxid}' || E'\\n' || g::text)::uuid AS line_md5,
               (g / {PER_FILE} + 1)::int AS file_id, (g % {PER_FILE} + 1)::bigint AS line_no,
               ts, false AS ts_inferred, (1000 + h % 900)::int AS pid,
               (1000 + h % 3000)::int AS tid,
               (ARRAY['V','D','D','D','I','I','I','I','W','W','E'])[1 + (h % 11)] AS level,
               ({tags})[1 + (h / 11 % {len(TAGS)})] AS tag,
               CASE WHEN h % 2000 = 7
                    THEN format('ANR in com.example.stb (pid %s) Reason: Input dispatching'
                                ' timed out (%s)', 2000 + h % 999, h)
                    ELSE format(({msgs})[1 + (h / 311 % {len(MESSAGES)})], h % 100000, g % 997)
               END AS message,
               'ok' AS status
        FROM (SELECT g, abs(hashint8(g)::bigint) AS h,
                     timestamptz '{T0.isoformat()}' + make_interval(secs => g * {step!r}) AS ts
              FROM generate_series({lo}::bigint, {hi - 1}) g) s
        ORDER BY g / {CHUNK}, line_md5"""


COLUMNS = "rxid, line_md5, file_id, line_no, ts, ts_inferred, pid, tid, level, tag, message, status"


def fill(conn, rxid: str, n: int) -> float:
    """The box's partition with ``n`` lines over 30 days, its md5 index built after the rows
    (as fast as the ingest's sorted COPY gets it, and minutes faster here); its files in the
    ledger. Returns seconds."""
    from logalyzer.store.db import ensure_partition

    t = time.perf_counter()
    part = ensure_partition(conn, rxid)
    conn.execute(f"DROP INDEX {part}_md5")
    step = DAYS * 86400 / n
    for lo in range(0, n, 1_000_000):
        q = rows_sql(rxid, lo, min(n, lo + 1_000_000), step)
        conn.execute(f"INSERT INTO {part} ({COLUMNS}) {q}")
    conn.execute(f"CREATE UNIQUE INDEX {part}_md5 ON {part} (line_md5)")
    conn.execute(
        "INSERT INTO ingested_files (file_id, path, rxid, status)"
        " SELECT f, format('/fleet/%%s/logcat_%%s.log.gz', %s::text, f), %s, 'done'"
        " FROM generate_series(1, %s) f ON CONFLICT DO NOTHING",
        (rxid, rxid, n // PER_FILE + 1),
    )
    conn.execute(f"VACUUM ANALYZE {part}")
    return time.perf_counter() - t


def size_mb(conn, relation: str) -> float:
    return conn.execute("SELECT pg_relation_size(%s) / 1e6", (relation,)).fetchone()[0]


# --------------------------------------------------------------------------- ingest cost


def backend_cpu(conn) -> float:
    """CPU seconds the connection's PostgreSQL backend has used (user + system), from /proc:
    the server runs on this machine. Why CPU and not wall time: this 2-core machine is shared,
    and a busy neighbour moved the wall time of one COPY by 3x between runs; the backend's own
    CPU moves by a few per cent."""
    fields = Path(f"/proc/{conn.info.backend_pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wal_bytes(conn) -> int:
    return int(conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0])


def copy_cost(conn, n: int, repeats: int) -> dict:
    """Per index variant, what COPYing ``n`` rows into a partition costs PostgreSQL: the
    backend's CPU, wall time and WAL, each the median of runs that alternate between the
    variants."""
    from logalyzer.store.db import ensure_partition

    part = ensure_partition(conn, COPY_BOX)
    chunks = copy_chunks(conn, n)
    runs: dict[str, list[tuple[float, float, int]]] = {"none": [], **{k: [] for k in INDEXES}}
    for _ in range(repeats):
        for variant, got in runs.items():
            conn.execute(f"TRUNCATE {part}")
            if variant != "none":
                conn.execute(INDEXES[variant].format(i=f"{part}_bench", t=part))
            conn.execute("CHECKPOINT")
            cpu, wall, wal = backend_cpu(conn), time.perf_counter(), wal_bytes(conn)
            for data in chunks:
                with conn.transaction(), conn.cursor() as cur:
                    with cur.copy(f"COPY {part} ({COLUMNS}) FROM STDIN (FORMAT binary)") as cp:
                        cp.write(data)
            got.append((backend_cpu(conn) - cpu, time.perf_counter() - wall, wal_bytes(conn) - wal))
            if variant != "none":
                conn.execute(f"DROP INDEX {part}_bench")
    conn.execute(f"DROP TABLE {part}")
    med = {v: [statistics.median(x[k] for x in r) for k in range(3)] for v, r in runs.items()}
    return {
        v: {
            "cpu_s": round(m[0], 2),
            "wall_s": round(m[1], 2),
            "cpu_us_per_line": round(m[0] / n * 1e6, 2),
            "wal_bytes_per_line": round(m[2] / n),
            "cpu_ratio": round(m[0] / med["none"][0], 3),
            "wal_ratio": round(m[2] / med["none"][2], 3),
            "runs_cpu_s": [round(x[0], 2) for x in runs[v]],
        }
        for v, m in med.items()
    }


def copy_chunks(conn, n: int) -> list[bytes]:
    """The binary COPY data of ``n`` rows in chunks of :data:`CHUNK`, each md5-sorted."""
    step = DAYS * 86400 / n
    conn.execute(f"CREATE UNLOGGED TABLE copy_src AS {rows_sql(COPY_BOX, 0, n, step)}")
    chunks = []
    for lo in range(0, n, CHUNK):
        window = (T0 + timedelta(seconds=lo * step), T0 + timedelta(seconds=(lo + CHUNK) * step))
        buf = io.BytesIO()
        with (
            conn.cursor() as cur,
            cur.copy(
                f"COPY (SELECT {COLUMNS} FROM copy_src WHERE ts >= %s AND ts < %s"
                " ORDER BY line_md5) TO STDOUT (FORMAT binary)",
                window,
            ) as cp,
        ):
            for block in cp:
                buf.write(block)
        chunks.append(buf.getvalue())
    conn.execute("DROP TABLE copy_src")
    return chunks


def show_copy(copy: dict) -> None:
    print("COPY of the ingest's chunks into a partition (medians; PostgreSQL backend CPU):")
    for v, r in copy.items():
        print(
            f"  {v:28s} cpu {r['cpu_s']:6.2f} s = {r['cpu_us_per_line']:5.2f} µs/line"
            f" x{r['cpu_ratio']:.2f}  WAL {r['wal_bytes_per_line']} B/line x{r['wal_ratio']:.2f}"
            f"  wall {r['wall_s']:.2f} s  cpu runs {r['runs_cpu_s']}",
            flush=True,
        )


# --------------------------------------------------------------------------- searches


def search_with(conn, settings, variant: str) -> dict:
    """The searches of :data:`SEARCHES` on the box with index ``variant`` (none first)."""
    part = "r" + BOX[1:]
    out: dict = {}
    if variant != "none":
        conn.execute(f"DROP INDEX IF EXISTS {part}_bench")
        t = time.perf_counter()
        conn.execute(INDEXES[variant].format(i=f"{part}_bench", t=part))
        out["build_s"] = round(time.perf_counter() - t, 1)
        out["index_mb"] = round(size_mb(conn, f"{part}_bench"), 1)
        conn.execute(f"ANALYZE {part}")
    print(f"index {variant}: {out}", flush=True)
    full = variant in ("none", CHOSEN)
    for name, (pattern, regex, levels) in SEARCHES.items():
        # a scan of the whole box costs seconds of CPU: once is enough to see it
        r = out[name] = explain(conn, pattern, regex, levels, 1 if variant == "none" else 3)
        if full:
            if variant == CHOSEN:
                r["in_process_s"] = in_process(conn, pattern, regex, levels)
            r["cli_s"] = cli(settings, pattern, regex, levels)
        print(f"  {name:28s} {json.dumps(r)}", flush=True)
    out["http_pages_s"] = http_pages(conn)
    out["context_s"] = context(conn)
    print(f"  GET /v1/lines pages: {out['http_pages_s']}, context: {out['context_s']}", flush=True)
    if variant == CHOSEN:
        out["whole_month_rare"] = whole_month(conn)
        print(f"  whole month, regex 'ANR in': {out['whole_month_rare']}", flush=True)
    return out


def _filter(pattern, regex, levels, window=WINDOW):
    from logalyzer.core.search import LineFilter

    return LineFilter(pattern=pattern, regex=regex, since=window[0], until=window[1], levels=levels)


def explain(conn, pattern, regex, levels, repeats: int) -> dict:
    """EXPLAIN ANALYZE of store.search's own query for the window: median execution ms, rows,
    and the plan's top node."""
    from logalyzer.core.search import TIMED
    from logalyzer.store.search_query import hits_query  # the query itself, not a copy of it

    q, params = hits_query(BOX, _filter(pattern, regex, levels), TIMED, None, None)
    runs, cpus, rows, plan = [], [], 0, ""
    for _ in range(repeats):
        cpu = backend_cpu(conn)
        doc = conn.execute(b"EXPLAIN (ANALYZE, FORMAT JSON) " + q.as_bytes(conn), params)
        cpus.append(backend_cpu(conn) - cpu)
        top = doc.fetchone()[0][0]
        runs.append(top["Execution Time"])
        rows = top["Plan"]["Actual Rows"]
        plan = _plan_nodes(top["Plan"])
    return {
        "ms": round(statistics.median(runs), 1),
        "cpu_ms": round(statistics.median(cpus) * 1000),  # clock ticks: 10 ms resolution
        "rows": rows,
        "plan": plan,
    }


def _plan_nodes(node: dict) -> str:
    name = node["Node Type"] + (f" {node['Index Name']}" if "Index Name" in node else "")
    kids = node.get("Plans", [])
    return name + (" <- " + _plan_nodes(kids[0]) if kids else "")


def in_process(conn, pattern, regex, levels) -> float:
    """What `logalyzer grep` does for the window, in this process: stream, paths, format."""
    from logalyzer.core.search import format_line
    from logalyzer.store.search import attach_paths, devices, stream_hits

    t = time.perf_counter()
    flt = _filter(pattern, regex, levels)
    paths: dict = {}
    for batch in stream_hits(conn, flt, devices(conn, [BOX])):
        attach_paths(conn, batch, paths)
        for ln in batch:
            format_line(ln)
    return round(time.perf_counter() - t, 3)


def cli(settings, pattern, regex, levels) -> float:
    """`logalyzer grep` for the window in a new process, output to /dev/null: wall seconds."""
    args = [pattern, "--rxid", BOX, "--since", WINDOW[0].isoformat()]
    args += ["--until", WINDOW[1].isoformat()] + (["--regex"] if regex else [])
    args += [x for lv in levels for x in ("--level", lv)]
    env = {**os.environ, "LOGALYZER_DSN": settings.dsn, "PYTHONPATH": str(HERE.parent)}
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "from logalyzer.cli import main; main()", "grep", *args],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return round(time.perf_counter() - t, 3)


def http_pages(conn) -> dict:
    """GET /v1/lines' store call (``page_lines``), 100 hits of every line: the first and the
    second page of the hour, and the first of a 24-hour window (the widest allowed)."""
    from logalyzer.store.search import page_lines

    out = {}
    for name, window in (("hour", WINDOW), ("day", (WINDOW[0], WINDOW[0] + timedelta(days=1)))):
        times, after = [], None
        for _ in range(2 if name == "hour" else 1):
            flt = _filter("", False, (), window)
            t = time.perf_counter()
            page = page_lines(conn, flt, [BOX], after, 100, 0, 4 << 20, 60_000)
            times.append(round(time.perf_counter() - t, 4))
            after = page.next
        out[name] = times
    return out


def context(conn) -> dict:
    """3 lines of context around each 'timeout' hit of the window: grep -C 3 (store.search
    reads time spans around the hits, so BRIN serves it too)."""
    from logalyzer.core.search import ContextMerger
    from logalyzer.store.search import context_blocks, stream_hits

    flt = _filter("timeout", False, ())
    t = time.perf_counter()
    hits = [ln for b in stream_hits(conn, flt, [BOX]) for ln in b]
    lines = sum(len(x[2]) for x in context_blocks(conn, flt, hits, 3, ContextMerger(3)))
    return {"s": round(time.perf_counter() - t, 3), "hits": len(hits), "lines": lines}


def whole_month(conn) -> dict:
    """The whole box, no window, a rare regex: planned as one scan, not an index walk."""
    from logalyzer.store.search import stream_hits

    flt = _filter("ANR in .*pid [0-9]+", True, (), window=(None, None))
    t = time.perf_counter()
    n = sum(len(b) for b in stream_hits(conn, flt, [BOX]))
    return {"s": round(time.perf_counter() - t, 2), "hits": n}


if __name__ == "__main__":
    sys.exit(main())
