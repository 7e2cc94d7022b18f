#!/usr/bin/env python3
"""Ingest benchmark: LOGalyzer against the physical limit and against a row-at-a-time loader.

Why: "fast" only means something next to two yardsticks measured on the same machine and the
same PostgreSQL server, from the same files:

  (b) the physical reference: ``zcat FILES | psql -c "\\copy ref_raw from pstdin"`` into a
      one-column UNLOGGED table: decompression plus the cheapest possible COPY, nothing parsed;
  (c) a baseline shaped like the original tool: ``multiprocessing.Pool(2)``, Python ``gzip``
      line by line, one ``re`` match and one MD5 per line, ``execute_values`` INSERT ... ON
      CONFLICT through a psycopg2 pool;
  (a) LOGalyzer's own ``logalyzer.jobs.ingest.ingest`` (Ray Data + COPY), called in this process
      so that a sampler thread sees the whole process tree (local Ray's gcs/raylet/workers
      are descendants of this process) and can report its peak memory.

Targets: a/b >= 0.25, a/c >= 5, peak memory < 2 GB. A miss is printed, never an exit code.
Everything printed is also written to ``bench/out/ingest.json``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import multiprocessing
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "out"

DEVICES = 10
SEED = 1
NOISE_PER_MINUTE = 700
# Uncompressed bytes one device writes per hour at NOISE_PER_MINUTE (measured on the
# generator: 10 devices x 1 h = 49.8 MB); turns --gb into hours.
BYTES_PER_DEVICE_HOUR = 5.0e6

TARGET_A_OVER_B = 0.25
TARGET_A_OVER_C = 5.0
TARGET_PEAK_BYTES = 2 * 1024**3

#: One sample reads /proc/<pid>/smaps_rollup of ~25 processes: about 90 ms of (kernel) CPU with
#: Ray's big mappings. At 4 a second that took a third of a core from the ingest it measured;
#: once a second it takes 9 % of one, and its own CPU is left out of the client's figures.
SAMPLE_EVERY_S = 1.0
BASELINE_WORKERS = 2
BASELINE_BATCH_ROWS = 10_000  # rows handed to one execute_values call (then commit)
BASELINE_PAGE_SIZE = 1000

# A CSV dialect in which no byte of a log line is special: every line loads as it is.
REF_COPY = r"\copy ref_raw (line) from pstdin with (format csv, quote e'\x01', delimiter e'\x02')"


# --------------------------------------------------------------------------- arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; defaults give the >= 1 GB run that `make bench` promises."""
    p = argparse.ArgumentParser(
        prog="bench/ingest.py",
        description="Ingest benchmark: LOGalyzer (a) vs zcat|psql \\copy (b) vs a "
        "row-at-a-time psycopg2 loader (c), on one PostgreSQL server.",
        epilog="Server: LOGALYZER_DSN if set, else the embedded PostgreSQL under --home. "
        "A fresh database bench_<hex> is created for the run and dropped at the end.",
    )
    p.add_argument(
        "--gb",
        type=float,
        default=1.1,
        help="uncompressed size of the synthetic fleet in GB (default 1.1; 0.05 = smoke run)",
    )
    p.add_argument(
        "--devices", type=int, default=DEVICES, help=f"devices in the fleet (default {DEVICES})"
    )
    p.add_argument(
        "--baseline-fraction",
        type=float,
        default=0.25,
        help="share of the files the slow baseline (c) reads; its rate is per second "
        "of what it read (default 0.25)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="folder for the cached fleet and ingest.json (default bench/out)",
    )
    p.add_argument(
        "--home",
        type=Path,
        default=None,
        help="LOGALYZER_HOME of the embedded server (default: LOGalyzer's own default)",
    )
    p.add_argument("--keep-db", action="store_true", help="do not drop the bench_<hex> database")
    p.add_argument(
        "--no-cold-run",
        action="store_true",
        help="skip the separate cold-start ingest; report Ray start-up + warm ingest instead",
    )
    p.add_argument("--skip-reference", action="store_true", help="do not run (b)")
    p.add_argument("--skip-baseline", action="store_true", help="do not run (c)")
    args = p.parse_args(argv)
    if args.gb <= 0 or args.devices < 1:
        p.error("--gb must be > 0 and --devices >= 1")
    if not 0 < args.baseline_fraction <= 1:
        p.error("--baseline-fraction must be in (0, 1]")
    return args


# --------------------------------------------------------------------------- the fleet


@dataclass
class Fleet:
    dir: Path
    files: list[Path]  # the *.gz files only (ground_truth.json lies beside them)
    bytes_uncompressed: int
    lines: int
    devices: int
    hours: float
    overlap_lines: int
    generated_s: float | None  # None when it came from the cache


def fleet_hours(gb: float, devices: int) -> float:
    """Hours of log per device that make about `gb` GB; rounded so the cache name is stable."""
    return max(0.1, round(gb * 1e9 / (devices * BYTES_PER_DEVICE_HOUR), 1))


def ensure_fleet(out: Path, gb: float, devices: int) -> Fleet:
    """Generate the fleet once per parameter set; ground_truth.json (written last) marks a
    finished fleet, so an interrupted generation is redone instead of benchmarked."""
    from logalyzer.core.synth import FleetSpec, generate_fleet

    hours = fleet_hours(gb, devices)
    spec = FleetSpec(
        devices=devices, hours=hours, seed=SEED, noise_lines_per_minute=NOISE_PER_MINUTE
    )
    fdir = out / f"fleet-d{devices}-h{hours:g}-s{SEED}-n{NOISE_PER_MINUTE}"
    truth = fdir / "ground_truth.json"
    took = None
    if not truth.exists():
        if fdir.exists():
            shutil.rmtree(fdir)
        print(f"generating fleet {fdir.name} (~{gb:g} GB) ...", flush=True)
        t0 = time.perf_counter()
        generate_fleet(fdir, spec)
        took = time.perf_counter() - t0
    totals = json.loads(truth.read_text(encoding="utf-8"))["totals"]
    files = sorted(fdir.rglob("*.gz"))
    if len(files) != totals["files"]:
        raise SystemExit(
            f"{fdir}: {len(files)} .gz files but the truth lists {totals['files']}; "
            f"delete the folder to regenerate"
        )
    return Fleet(
        fdir,
        files,
        totals["bytes_uncompressed"],
        totals["lines"],
        devices,
        hours,
        spec.overlap_lines,
        took,
    )


# --------------------------------------------------------------------------- database


def with_dbname(dsn: str, dbname: str) -> str:
    """The same server and credentials, another database (works for URLs and key=value)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    info = conninfo_to_dict(dsn)
    info["dbname"] = dbname
    return make_conninfo(**info)


def psycopg_dbname(dsn: str) -> str:
    """The database name of a DSN, for the report."""
    from psycopg.conninfo import conninfo_to_dict

    return conninfo_to_dict(dsn).get("dbname", "?")


def open_server(home: Path | None):
    """LOGALYZER_DSN's server, else the embedded one; the returned handle keeps it alive."""
    from logalyzer.settings import Settings
    from logalyzer.store.db import open_database

    settings = Settings(home=home) if home else Settings()
    return open_database(settings, migrate_schema=False)


@contextmanager
def bench_database(server_dsn: str, keep: bool) -> Iterator[str]:
    """A fresh database for this run, dropped afterwards even on failure, so repeated runs
    never measure each other's leftovers."""
    import psycopg

    name = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(server_dsn, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_dbname(server_dsn, name)
    finally:
        if keep:
            print(f"kept database {name}")
        else:
            with psycopg.connect(server_dsn, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def execute(dsn: str, *statements: str) -> list:
    """Run statements in one autocommit session; return the last one's rows (if any)."""
    import psycopg

    rows: list = []
    with psycopg.connect(dsn, autocommit=True) as c:
        for s in statements:
            cur = c.execute(s)
            rows = cur.fetchall() if cur.description else []
    return rows


def checkpoint(dsn: str) -> None:
    """Flush the previous phase's dirty pages so they are not written during the next one."""
    try:
        execute(dsn, "CHECKPOINT")
    except Exception:  # not a superuser: the phases then share some background writes
        pass


def server_facts(dsn: str) -> dict:
    """Version and the settings that move COPY speed most, for the record."""
    names = ("shared_buffers", "max_wal_size", "synchronous_commit", "fsync", "wal_level")
    rows = execute(
        dsn,
        "SELECT name, setting || coalesce(unit, '') FROM pg_settings"
        f" WHERE name IN ({', '.join(repr(n) for n in names)})",
    )
    facts = dict(rows)
    facts["version"] = execute(dsn, "SHOW server_version")[0][0]
    return facts


# --------------------------------------------------------------------------- memory


class MemorySampler:
    """Samples the memory of this process and all its descendants every SAMPLE_EVERY_S.

    Why PSS: Ray's workers share pages (libraries, the object store in /dev/shm); RSS would
    count those once per process and overstate the footprint. PSS splits shared pages among
    their users, so the sum over the tree is what the tree really occupies. PostgreSQL
    processes are left out in case the embedded server happens to be a descendant: the
    server's memory is the same for every contender.
    """

    def __init__(self, every_s: float = SAMPLE_EVERY_S):
        import psutil

        self._psutil = psutil
        self.root = psutil.Process()
        self.every_s = every_s
        self.samples: list[tuple[float, int, int]] = []  # (perf_counter time, bytes, processes)
        self.top: list[tuple[str, int]] = []  # (process, bytes) at the highest sample so far
        self.cpu_s = 0.0  # CPU the sampling thread has spent so far (not the ingest's)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mem-sampler", daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter()
            total, parts = self.sample()
            if not self.samples or total > max(s[1] for s in self.samples):
                self.top = sorted(parts, key=lambda p: -p[1])
            self.samples.append((t, total, len(parts)))
            self.cpu_s = time.thread_time()
            self._stop.wait(max(0.0, self.every_s - (time.perf_counter() - t)))

    def sample(self) -> tuple[int, list[tuple[str, int]]]:
        """(total bytes, [(process, bytes), ...]) of the tree right now."""
        ps = self._psutil
        try:
            procs = [self.root] + self.root.children(recursive=True)
        except ps.Error:
            procs = [self.root]
        parts = []
        for p in procs:
            try:
                name = p.name()
                if name == "postgres":
                    continue
                used = _pss(p.pid) or p.memory_info().rss
                parts.append((f"{p.pid} {name}", used))
            except ps.Error:  # exited between listing and reading
                continue
        return sum(u for _, u in parts), parts

    def window(self, t0: float, t1: float) -> dict:
        """Peak bytes (and the process count then) over [t0, t1], and in each half of it:
        a second half well above the first would mean memory grows with the data."""
        mid = (t0 + t1) / 2
        inside = [s for s in self.samples if t0 <= s[0] <= t1]

        def peak(part: list) -> int | None:
            return max((s[1] for s in part), default=None)

        top = max(inside, key=lambda s: s[1], default=None)
        return {
            "peak_bytes": top[1] if top else None,
            "processes_at_peak": top[2] if top else None,
            "peak_first_half_bytes": peak([s for s in inside if s[0] < mid]),
            "peak_second_half_bytes": peak([s for s in inside if s[0] >= mid]),
            "samples": len(inside),
        }


def _pss(pid: int) -> int | None:
    """PSS bytes from /proc/<pid>/smaps_rollup (the kernel's sum; psutil's memory_full_info
    parses the whole smaps instead, which for Ray's workers and their gigabytes of mappings
    cost the sampler about half a core on this 2-core machine, taken from the ingest it
    measures). None where the file cannot be read."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


# --------------------------------------------------------------------------- (b) reference


def find_psql() -> str:
    """psql on PATH, else the one that ships inside the pgserver wheel."""
    found = shutil.which("psql")
    if found:
        return found
    import pgserver

    return str(Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql")


def run_reference(dsn: str, fleet: Fleet) -> dict:
    """(b): decompress with zcat and COPY the raw lines into a one-column UNLOGGED table."""
    execute(dsn, "DROP TABLE IF EXISTS ref_raw", "CREATE UNLOGGED TABLE ref_raw (line text)")
    checkpoint(dsn)
    psql = find_psql()
    t0 = time.perf_counter()
    zcat = subprocess.Popen(["zcat", "--", *map(str, fleet.files)], stdout=subprocess.PIPE)
    load = subprocess.Popen(
        [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", REF_COPY], stdin=zcat.stdout
    )
    zcat.stdout.close()  # psql owns the pipe now; zcat sees SIGPIPE if psql dies
    rc_load, rc_zcat = load.wait(), zcat.wait()
    seconds = time.perf_counter() - t0
    if rc_load or rc_zcat:
        raise RuntimeError(f"reference failed: zcat rc={rc_zcat}, psql rc={rc_load}")
    rows = execute(dsn, "SELECT count(*) FROM ref_raw")[0][0]
    execute(dsn, "TRUNCATE ref_raw")  # free the space; the next phase starts clean
    return rate(
        {
            "name": "(b) zcat | psql \\copy",
            "psql": psql,
            "rows": rows,
            "rows_match_lines": rows == fleet.lines,
            "files": len(fleet.files),
        },
        fleet.lines,
        fleet.bytes_uncompressed,
        seconds,
    )


# --------------------------------------------------------------------------- (c) baseline

# The logcat "threadtime" header: MM-DD HH:MM:SS.mmm  PID  TID L TAG: message
THREADTIME = re.compile(
    r"^(\d\d-\d\d)\s+(\d\d:\d\d:\d\d\.\d{3})\s+(\d+)\s+(\d+)\s+([VDIWEFAS])\s+(.*?)\s*:\s(.*)$"
)
RXID = re.compile(r"(?<!\d)R(\d{10})(?!\d)", re.IGNORECASE)

BASELINE_DDL = (
    "DROP TABLE IF EXISTS baseline_lines",
    "CREATE TABLE baseline_lines (rxid text NOT NULL, line_md5 uuid NOT NULL, file text,"
    " line_no integer, log_date text, log_time text, pid integer, tid integer, level text,"
    " tag text, message text NOT NULL)",
    "CREATE UNIQUE INDEX baseline_lines_md5 ON baseline_lines (line_md5)",
)
BASELINE_INSERT = (
    "INSERT INTO baseline_lines (rxid, line_md5, file, line_no, log_date, log_time,"
    " pid, tid, level, tag, message) VALUES %s ON CONFLICT (line_md5) DO NOTHING"
)

_pg_pool = None  # one psycopg2 pool per baseline worker process, made by _baseline_init


def _baseline_init(dsn: str) -> None:
    """Pool initializer: each worker process keeps its own psycopg2 connection pool."""
    global _pg_pool
    from psycopg2 import pool

    _pg_pool = pool.SimpleConnectionPool(1, 1, dsn)


def baseline_row(rxid: str, path: str, line_no: int, line: str) -> tuple:
    """One line as the original tool stored it: regex-parsed header, or the raw text."""
    md5 = hashlib.md5((rxid + "\n" + line).encode("utf-8", "surrogateescape")).hexdigest()
    m = THREADTIME.match(line)
    if m is None:
        return (rxid, md5, path, line_no, None, None, None, None, None, None, line)
    d, t, pid, tid, level, tag, msg = m.groups()
    return (rxid, md5, path, line_no, d, t, int(pid), int(tid), level, tag, msg)


def _baseline_file(path: str) -> tuple[int, int]:
    """Worker: read one gzip file line by line, insert in pages; return (lines, bytes)."""
    from psycopg2.extras import execute_values

    m = RXID.search(path)
    rxid = "R" + m.group(1) if m else "UNKNOWN"
    lines = nbytes = 0
    conn = _pg_pool.getconn()
    try:
        with conn.cursor() as cur, gzip.open(path, "rb") as f:
            batch: list[tuple] = []
            for raw in f:
                lines += 1
                nbytes += len(raw)
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                batch.append(baseline_row(rxid, path, lines, line))
                if len(batch) >= BASELINE_BATCH_ROWS:
                    execute_values(cur, BASELINE_INSERT, batch, page_size=BASELINE_PAGE_SIZE)
                    conn.commit()
                    batch = []
            if batch:
                execute_values(cur, BASELINE_INSERT, batch, page_size=BASELINE_PAGE_SIZE)
            conn.commit()
    finally:
        _pg_pool.putconn(conn)
    return lines, nbytes


def baseline_subset(files: list[Path], fraction: float) -> list[Path]:
    """Evenly spaced files (so every device's header variant is represented), about
    `fraction` of them and at least one per worker when there are enough."""
    n = min(len(files), max(min(BASELINE_WORKERS, len(files)), round(fraction * len(files))))
    return [files[i * len(files) // n] for i in range(n)]


def run_baseline(dsn: str, fleet: Fleet, fraction: float) -> dict:
    """(c): the row-at-a-time loader on a subset of the files; its rate is per second of
    what it processed, so the subset does not flatter or penalise it."""
    execute(dsn, *BASELINE_DDL)
    checkpoint(dsn)
    subset = baseline_subset(fleet.files, fraction)
    t0 = time.perf_counter()
    with multiprocessing.Pool(
        BASELINE_WORKERS, initializer=_baseline_init, initargs=(dsn,)
    ) as pool:
        done = pool.map(_baseline_file, [str(p) for p in subset], chunksize=1)
    seconds = time.perf_counter() - t0
    lines, nbytes = sum(d[0] for d in done), sum(d[1] for d in done)
    rows = execute(dsn, "SELECT count(*) FROM baseline_lines")[0][0]
    execute(dsn, "TRUNCATE baseline_lines")
    return rate(
        {
            "name": "(c) row-at-a-time baseline",
            "rows": rows,
            "files": len(subset),
            "fraction_requested": fraction,
            "fraction_of_files": len(subset) / len(fleet.files),
            "fraction_of_bytes": nbytes / fleet.bytes_uncompressed,
            "workers": BASELINE_WORKERS,
            "page_size": BASELINE_PAGE_SIZE,
        },
        lines,
        nbytes,
        seconds,
    )


# --------------------------------------------------------------------------- (a) LOGalyzer


def reset_logalyzer_tables(dsn: str) -> None:
    """Empty tables for the next ingest (partitions stay: creating one costs milliseconds)."""
    execute(dsn, "TRUNCATE log_lines, ingested_files RESTART IDENTITY")
    checkpoint(dsn)


def timed_ingest(dsn: str, fleet: Fleet) -> tuple[object, float, float, float]:
    """One ingest() call; returns (summary, wall seconds, start, end) on perf_counter."""
    from logalyzer.jobs.ingest import ingest
    from logalyzer.settings import Settings
    from logalyzer.store.db import Database

    t0 = time.perf_counter()
    summary = ingest(
        Settings(dsn=dsn), Database(dsn), [str(p) for p in fleet.files], progress=False
    )
    t1 = time.perf_counter()
    return summary, t1 - t0, t0, t1


def summarize_ingest(summary) -> dict:
    """Totals and statuses of an IngestSummary (statuses should all be 'done')."""
    statuses: dict[str, int] = {}
    for f in summary.files:
        statuses[f.status] = statuses.get(f.status, 0) + 1
    errors = sorted({f.error for f in summary.files if f.error})[:5]
    return {
        "files": len(summary.files),
        "statuses": statuses,
        "errors": errors,
        "lines_read": summary.total("lines_read"),
        "bytes_text": summary.total("bytes_text"),
        "lines_loaded": summary.total("lines_loaded"),
        "lines_duplicate": summary.total("lines_duplicate"),
        "lines_unparsed": summary.total("lines_unparsed"),
        "markers": summary.total("markers"),
    }


def expected_distinct(fleet: Fleet, markers: int) -> int:
    """Distinct stored lines by construction: every line but the markers (never stored) and
    the `overlap_lines` a rotated file repeats from its predecessor (removed by MD5)."""
    rotations = len(fleet.files) - fleet.devices
    return fleet.lines - markers - fleet.overlap_lines * rotations


def run_logalyzer(dsn: str, fleet: Fleet, cold_run: bool) -> dict:
    """(a): optionally a cold ingest (Ray starts inside the call), then a warm one on empty
    tables with Ray already up; memory is sampled over both."""
    import psycopg

    from logalyzer.jobs.rayutil import ensure_ray
    from logalyzer.settings import Settings
    from logalyzer.store.db import migrate

    with psycopg.connect(dsn) as c:
        migrate(c)
    checkpoint(dsn)
    out: dict = {}
    with MemorySampler() as mem:
        if cold_run:
            summary, wall, t0, t1 = timed_ingest(dsn, fleet)
            out["cold"] = rate(
                {"name": "(a) LOGalyzer, cold", **summarize_ingest(summary)},
                summary.total("lines_read"),
                summary.total("bytes_text"),
                wall,
            )
            out["cold"]["memory"] = mem.window(t0, t1)
            reset_logalyzer_tables(dsn)
        s0 = time.perf_counter()
        ensure_ray(Settings(dsn=dsn))  # a no-op after the cold run, which started Ray
        out["ray_start_s"] = None if cold_run else time.perf_counter() - s0
        server0, client0 = server_cpu_s(dsn), client_cpu_s() - mem.cpu_s
        summary, wall, t0, t1 = timed_ingest(dsn, fleet)
        server1, client1 = server_cpu_s(dsn), client_cpu_s() - mem.cpu_s
        warm = summarize_ingest(summary)
    out["warm"] = rate(
        {"name": "(a) LOGalyzer, warm", **warm}, warm["lines_read"], warm["bytes_text"], wall
    )
    out["warm"]["memory"] = mem.window(t0, t1)
    stored = max(1, warm["lines_loaded"])
    out["warm"]["cpu"] = {
        # per million lines stored: what sizes a cluster (README, "Capacity")
        "server_s_per_m_lines": None
        if server0 is None or server1 is None
        else (server1 - server0) / stored * 1e6,
        "client_s_per_m_lines": (client1 - client0) / stored * 1e6,
    }
    out["memory_all"] = mem.window(float("-inf"), float("inf"))
    out["memory_all"]["driver_before_bytes"] = mem.samples[0][1] if mem.samples else None
    out["memory_all"]["processes_at_peak_bytes"] = dict(mem.top)
    if not cold_run:  # Ray already running when ingest() ran: estimate the cold call
        out["cold"] = rate(
            {"name": "(a) LOGalyzer, cold (estimate: Ray start + warm)", **warm},
            warm["lines_read"],
            warm["bytes_text"],
            out["ray_start_s"] + wall,
        )
    rows = execute(dsn, "SELECT count(*) FROM log_lines")[0][0]
    exp = expected_distinct(fleet, warm["markers"])
    out["sanity"] = {
        "rows_in_log_lines": rows,
        "expected_distinct_lines": exp,
        "rows_match": rows == exp == warm["lines_loaded"],
        "lines_read_match": warm["lines_read"] == fleet.lines,
        "all_done": set(warm["statuses"]) == {"done"},
    }
    return out


def server_cpu_s(dsn: str) -> float | None:
    """CPU seconds the PostgreSQL server has spent so far: the postmaster, its live processes
    and the ones it has reaped (backends of closed connections). None where the server is not
    a process of this machine (or not ours to read).

    The postmaster is found as the parent of this session's backend while the session is
    open: once it closes, the backend exits and the lookup races with its exit."""
    import psutil
    import psycopg

    try:
        with psycopg.connect(dsn, autocommit=True) as c:
            post = psutil.Process(c.execute("SELECT pg_backend_pid()").fetchone()[0]).parent()
            return None if post is None else _tree_cpu_s(post, post.children())
    except psutil.Error:
        return None


def client_cpu_s() -> float:
    """CPU seconds of this process and every live descendant (local Ray's workers)."""
    import psutil

    me = psutil.Process()
    return _tree_cpu_s(me, me.children(recursive=True))


def _tree_cpu_s(root, children) -> float:
    """``root``'s CPU seconds with those of the children it has reaped, plus each live one's
    in ``children`` (one that exits between the listing and the reading counts nothing)."""
    import psutil

    total = sum(root.cpu_times()[:4])  # user, system, reaped children's user, system
    for child in children:
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def shutdown_ray() -> None:
    """Stop the local Ray this process started, before its database is dropped."""
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()


# --------------------------------------------------------------------------- report


def rate(d: dict, lines: int, nbytes: int, seconds: float) -> dict:
    """Add lines, MB (1e6 bytes, uncompressed), seconds and their per-second rates to d."""
    d.update(
        lines=lines,
        mb=nbytes / 1e6,
        seconds=seconds,
        lines_per_s=lines / seconds if seconds else None,
        mb_per_s=nbytes / 1e6 / seconds if seconds else None,
    )
    return d


def ratio(a: dict | None, b: dict | None) -> float | None:
    if not a or not b or not a.get("lines_per_s") or not b.get("lines_per_s"):
        return None
    return a["lines_per_s"] / b["lines_per_s"]


def verdicts(res: dict) -> list[dict]:
    """The three targets, each PASS/MISS (or n/a when its phase was skipped)."""
    a = res["logalyzer"]
    peak = a["memory_all"]["peak_bytes"] or 0
    rows = [
        (
            "a/b (LOGalyzer warm / zcat|psql)",
            ratio(a["warm"], res.get("reference")),
            ">=",
            TARGET_A_OVER_B,
        ),
        (
            "a/c (LOGalyzer warm / baseline)",
            ratio(a["warm"], res.get("baseline")),
            ">=",
            TARGET_A_OVER_C,
        ),
        ("peak memory of the ingest tree (GB)", peak / 1024**3, "<", TARGET_PEAK_BYTES / 1024**3),
    ]
    out = []
    for name, value, op, target in rows:
        ok = None if value is None else (value >= target if op == ">=" else value < target)
        out.append(
            {
                "name": name,
                "value": value,
                "op": op,
                "target": target,
                "result": "n/a" if ok is None else ("PASS" if ok else "MISS"),
            }
        )
    return out


def fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def gib(v: int | None) -> str:
    return "-" if v is None else f"{v / 1024**3:.2f} GB"


def print_report(res: dict) -> None:
    """The human summary: one aligned table of rates, memory, targets, sanity checks."""
    fl, a = res["fleet"], res["logalyzer"]
    print()
    print(
        f"Fleet   {fl['dir']}: {fl['files']} files, {fl['devices']} devices x {fl['hours']:g} h, "
        f"{fl['bytes_uncompressed'] / 1e6:,.0f} MB uncompressed, {fl['lines']:,} lines"
        + (f" (generated in {fl['generated_s']:.0f} s)" if fl["generated_s"] else " (cached)")
    )
    sv = res["server"]
    print(
        f"Server  PostgreSQL {sv['version']} ({sv['where']}), database {res['database']}; "
        f"shared_buffers={sv.get('shared_buffers')} "
        f"synchronous_commit={sv.get('synchronous_commit')} "
        f"fsync={sv.get('fsync')}"
    )
    la0, la1 = res["load_average_at_start"], res["load_average_at_end"]
    busy = max(la0[0], la1[1]) > 0.5 * (res["machine"]["cpus"] or 1)
    code = res["code"]
    print(
        f"Code    commit {code['commit']}"
        + (
            " + uncommitted edits in logalyzer/ or sql/"
            if code["logalyzer_uncommitted_edits"]
            else ""
        )
    )
    print(
        f"Machine {res['machine']['cpus']} CPUs, Python {res['machine']['python']}; load average "
        f"{la0[0]:.1f} at start, {la1[1]:.1f} over the last 5 min at end"
        + ("  <- other work was running: rates are noisy" if busy else "")
    )
    print()
    head = f"{'':46} {'lines':>12} {'MB':>9} {'seconds':>9} {'lines/s':>11} {'MB/s':>8}"
    print(head)
    print("-" * len(head))
    rows = [a["warm"], a["cold"], res.get("reference"), res.get("baseline")]
    labels = [
        "(a) LOGalyzer ingest, Ray already started *",
        "(a) LOGalyzer ingest, cold (incl. Ray start)"
        if res["cold_measured"]
        else "(a) LOGalyzer, cold = Ray start + warm",
        "(b) zcat | psql \\copy (physical reference)",
        "(c) row-at-a-time baseline",
    ]
    for label, r in zip(labels, rows):
        if r is None:
            print(f"{label:46} {'skipped':>12}")
            continue
        print(
            f"{label:46} {r['lines']:>12,} {r['mb']:>9,.1f} {r['seconds']:>9.2f} "
            f"{fmt(r['lines_per_s'], ',.0f'):>11} {fmt(r['mb_per_s'], '.1f'):>8}"
        )
    print("* the warm numbers are the ones used in the ratios below")
    if a["ray_start_s"] is None:
        print(
            f"  cold - warm (Ray start-up and first-use costs): "
            f"{a['cold']['seconds'] - a['warm']['seconds']:.2f} s"
        )
    else:
        print(f"  Ray start-up (ensure_ray, timed alone): {a['ray_start_s']:.2f} s")
    if res.get("baseline"):
        b = res["baseline"]
        print(
            f"  (c) read {b['files']} of {fl['files']} files "
            f"(--baseline-fraction {b['fraction_requested']:g}: "
            f"{b['fraction_of_files']:.0%} of the files, "
            f"{b['fraction_of_bytes']:.0%} of the bytes); "
            f"rate over what it read"
        )
    if res.get("reference"):
        r = res["reference"]
        print(
            f"  (b) rows in ref_raw {r['rows']:,} vs lines in the files {fl['lines']:,}: "
            f"{'OK' if r['rows_match_lines'] else 'MISMATCH'}"
        )
    cpu = a["warm"].get("cpu")
    if cpu:
        srv = cpu["server_s_per_m_lines"]
        print(
            "  CPU per million lines stored (warm): PostgreSQL server "
            + ("n/a (not a local process)" if srv is None else f"{srv:.1f} s")
            + f", ingest (driver + Ray workers) {cpu['client_s_per_m_lines']:.1f} s"
        )
    print()
    w = a["warm"]["memory"]
    print(
        "Memory of the ingest (PSS summed over this process and all its descendants, "
        f"sampled every {SAMPLE_EVERY_S:g} s)"
    )
    m = a["memory_all"]
    top = ", ".join(
        f"{k.split(' ', 1)[1]} {v / 1e6:.0f}"
        for k, v in list(m["processes_at_peak_bytes"].items())[:4]
    )
    print(
        f"  overall: peak {gib(m['peak_bytes'])} "
        f"({m['processes_at_peak']} processes; largest MB: {top}); "
        f"this process alone before Ray {gib(m['driver_before_bytes'])}"
    )
    print(
        f"  warm ingest: peak {gib(w['peak_bytes'])} ({w['processes_at_peak']} processes); "
        f"first half {gib(w['peak_first_half_bytes'])}, "
        f"second half {gib(w['peak_second_half_bytes'])}"
    )
    if "memory" in a["cold"]:
        c = a["cold"]["memory"]
        print(
            f"  cold ingest: peak {gib(c['peak_bytes'])} ({c['processes_at_peak']} processes); "
            f"first half {gib(c['peak_first_half_bytes'])}, "
            f"second half {gib(c['peak_second_half_bytes'])}"
        )
    print()
    print(f"{'Target':40} {'value':>9}   {'goal':>8}   result")
    for v in res["targets"]:
        print(
            f"{v['name']:40} {fmt(v['value'], '.2f'):>9}   "
            f"{v['op']:>2} {v['target']:<5g}   {v['result']}"
        )
    print()
    s, st = a["sanity"], a["warm"]
    print(
        f"Sanity  log_lines rows {s['rows_in_log_lines']:,}, "
        f"expected distinct {s['expected_distinct_lines']:,} "
        f"(lines - {st['markers']:,} markers - overlap of rotated files), "
        f"loaded {st['lines_loaded']:,}: "
        f"{'OK' if s['rows_match'] else 'MISMATCH'}"
    )
    print(
        f"        lines read {st['lines_read']:,} vs lines in the files {fl['lines']:,}: "
        f"{'OK' if s['lines_read_match'] else 'MISMATCH'}; statuses {st['statuses']}"
        + (f"; errors {st['errors']}" if st["errors"] else "")
    )


# --------------------------------------------------------------------------- main


def code_version() -> dict:
    """The commit measured and whether logalyzer/ had uncommitted edits: a result is only
    comparable with another of the same code."""

    def git(*a: str) -> str | None:
        try:
            return subprocess.run(
                ["git", "-C", str(HERE.parent), *a],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    dirty = git("status", "--porcelain", "--", "logalyzer", "sql")
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "logalyzer_uncommitted_edits": None if dirty is None else bool(dirty),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    fleet = ensure_fleet(args.out, args.gb, args.devices)
    server = open_server(args.home)
    where = "LOGALYZER_DSN" if os.environ.get("LOGALYZER_DSN") else "embedded pgserver"
    res: dict = {
        "fleet": {
            "dir": str(fleet.dir),
            "files": len(fleet.files),
            "devices": fleet.devices,
            "hours": fleet.hours,
            "bytes_uncompressed": fleet.bytes_uncompressed,
            "lines": fleet.lines,
            "generated_s": fleet.generated_s,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "code": code_version(),
        "load_average_at_start": os.getloadavg(),
        "cold_measured": not args.no_cold_run,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    t_run = time.perf_counter()
    with bench_database(server.dsn, args.keep_db) as dsn:
        res["database"] = psycopg_dbname(dsn)
        res["server"] = {"where": where, **server_facts(dsn)}
        try:
            if not args.skip_reference:
                print("(b) zcat | psql ...", flush=True)
                res["reference"] = run_reference(dsn, fleet)
            if not args.skip_baseline:
                print(
                    f"(c) row-at-a-time baseline on ~{args.baseline_fraction:g} of the files ...",
                    flush=True,
                )
                res["baseline"] = run_baseline(dsn, fleet, args.baseline_fraction)
            print(
                "(a) LOGalyzer ingest"
                + ("" if args.no_cold_run else " (cold, then warm)")
                + " ...",
                flush=True,
            )
            res["logalyzer"] = run_logalyzer(dsn, fleet, cold_run=not args.no_cold_run)
        finally:
            shutdown_ray()
    res["load_average_at_end"] = os.getloadavg()
    res["targets"] = verdicts(res)
    res["bench_seconds"] = time.perf_counter() - t_run
    print_report(res)
    path = args.out / "ingest.json"
    path.write_text(json.dumps(res, indent=1, default=str) + "\n", encoding="utf-8")
    print(f"\nwritten {path} (whole benchmark {res['bench_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
