"""Ingest: logcat files → ``log_lines``, in parallel with Ray Data, idempotently.

The driver plans (RxIDs, the ledger's verdict on each file) and registers every file in
``ingested_files``; a Ray Data pipeline of file paths then hands each file to one of a pool of
loader actors (gzip cannot be split, so a file is the unit of work). A loader streams its file
through :class:`~logalyzer.core.files.LineReader` and :class:`~logalyzer.core.parser.FileParser`,
writes each chunk with COPY, and closes the file's ledger row itself, so the ledger stays true
even if the driver dies. Counters (lines, bytes, rows) go to the Ray dashboard through
``ray.util.metrics``.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import ray
from ray.util import metrics
from tqdm import tqdm

from logalyzer.core.files import (
    LineReader,
    NotALogFile,
    date_from_path,
    discover,
    fingerprint,
    is_valid_rxid,
    rxid_from_path,
)
from logalyzer.core.parser import FileParser
from logalyzer.errors import InvalidIdentifier, NoInputFiles
from logalyzer.jobs.rayutil import ensure_ray
from logalyzer.settings import Settings
from logalyzer.store import ledger, pgbinary
from logalyzer.store.db import Database, LineLoader, connect, ensure_partition

_JSONB = frozenset({"data"})


@dataclass
class FileResult:
    """How one file went: the ledger row, as the summary shows it."""

    path: str
    rxid: str | None
    status: str  # done | partial | failed | refused | unchanged
    size: int = 0
    bytes_text: int = 0  # decompressed bytes read
    lines_read: int = 0
    lines_loaded: int = 0
    lines_duplicate: int = 0
    lines_unparsed: int = 0
    lines_truncated: int = 0
    markers: int = 0
    error: str | None = None
    seconds: float = 0.0


@dataclass
class IngestSummary:
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0

    def total(self, attr: str) -> int:
        return sum(getattr(f, attr) for f in self.files)


# --------------------------------------------------------------------------- planning


@dataclass
class _Task:
    path: str
    rxid: str
    size: int
    mtime: float
    fp: str


def plan(
    db: Database,
    paths: list[str | Path],
    rxid: str | None = None,
    force: bool = False,
    only_rxids: set[str] | None = None,
) -> tuple[list[_Task], list[FileResult]]:
    """Decide, for every input file, to load it or why not; record refusals in the ledger.

    Files of devices outside ``only_rxids`` (when given) are left out silently: the operator
    asked for a subset of the fleet.
    """
    files = discover(paths)
    if not files:
        raise NoInputFiles(f"no log files found in {', '.join(map(str, paths)) or 'no paths'}")
    tasks: list[_Task] = []
    settled: list[FileResult] = []
    with db.connect(autocommit=True) as conn:
        for p in files:
            path = str(p.resolve()) if p.exists() else str(p.absolute())
            device = rxid or rxid_from_path(path)
            if device is None:
                settled.append(
                    _record_settled(
                        conn,
                        path,
                        None,
                        "refused",
                        "no RxID (R + 10 digits) in the path; name it with --rxid",
                    )
                )
                continue
            if only_rxids is not None and device not in only_rxids:
                continue
            try:
                st = os.stat(path)
                if not os.path.isfile(path):
                    raise IsADirectoryError("not a regular file")
                fp = fingerprint(path, st.st_size)
            except OSError as exc:
                settled.append(
                    _record_settled(
                        conn, path, device, "failed", f"unreadable: {exc.strerror or exc}"
                    )
                )
                continue
            prev = ledger.previous_load(conn, path)
            if (
                not force
                and prev
                and prev[0] in ("done", "partial")
                and prev[1] == st.st_size
                and abs(float(prev[2]) - st.st_mtime) < 1e-3
                and prev[3] == fp
            ):
                settled.append(
                    FileResult(
                        path,
                        device,
                        "unchanged",
                        st.st_size,
                        lines_read=prev[4],
                        lines_loaded=prev[5],
                        lines_duplicate=prev[6],
                        lines_unparsed=prev[7],
                    )
                )
                continue
            tasks.append(_Task(path, device, st.st_size, st.st_mtime, fp))
    return tasks, settled


def _record_settled(conn, path: str, rxid: str | None, status: str, error: str) -> FileResult:
    ledger.record_settled(conn, path, rxid, status, error)
    return FileResult(path, rxid, status, error=error)


# --------------------------------------------------------------------------- loading one file


def load_file(
    conn,
    loader: LineLoader,
    task: dict,
    tz: str,
    on_chunk=None,
    writer: ThreadPoolExecutor | None = None,
) -> FileResult:
    """Read, parse and load one file; close its ledger row. Never raises for bad input.

    ``conn`` must be in autocommit mode: each chunk is its own transaction (see LineLoader).
    With a ``writer`` thread, chunk k is encoded and COPYed while chunk k+1 is parsed (the
    COPY waits on PostgreSQL and the encoding runs in Arrow, both outside the GIL); at most
    one chunk is in flight, so memory stays bounded.
    """
    t0 = time.perf_counter()
    path, rxid, file_id = task["path"], task["rxid"], task["file_id"]
    res = FileResult(path, rxid, "done", task["size"])
    anchor = date_from_path(path) or datetime.fromtimestamp(task["mtime"])
    parser = FileParser(rxid, tz=tz, anchor=anchor)
    reader = LineReader(path)
    stored = 0
    pending: Future | None = None

    def send(table: pa.Table) -> int:
        return loader.load(rxid, _to_copy(table, rxid, file_id), table.num_rows)

    try:
        ensure_partition(conn, rxid)
        for chunk in reader:
            table = parser.parse(chunk.lines, chunk.truncated)
            if table.num_rows:
                if pending is not None:
                    res.lines_loaded += pending.result()
                    pending = None
                if writer is None:
                    res.lines_loaded += send(table)
                else:
                    pending = writer.submit(send, table)
                stored += table.num_rows
            if on_chunk:
                on_chunk(len(chunk.lines), reader.report.bytes_in, table.num_rows)
        if pending is not None:
            res.lines_loaded += pending.result()
            pending = None
        if reader.report.damaged:
            res.status = "partial"
        res.error = reader.report.error
    except NotALogFile as exc:
        res.status, res.error = "failed", str(exc)
    except OSError as exc:
        res.status, res.error = _partial_or_failed(res), f"read error: {exc.strerror or exc}"
    except Exception as exc:  # a database error or a bug: record it, keep the other files going
        res.status = _partial_or_failed(res)
        res.error = (
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        )
        traceback.print_exc(file=sys.stderr)
    finally:
        if pending is not None:  # the reader failed while a chunk was on its way: let it land
            try:
                res.lines_loaded += pending.result()
            except Exception as exc:  # noqa: BLE001 - reported with the file
                res.error = f"{res.error}; {type(exc).__name__}: {exc}" if res.error else str(exc)
    res.lines_read = reader.report.lines
    res.bytes_text = reader.report.bytes_out
    res.lines_duplicate = stored - res.lines_loaded
    res.lines_unparsed = parser.stats.unparsed
    res.lines_truncated = reader.report.truncated_lines
    res.markers = parser.stats.markers
    res.seconds = time.perf_counter() - t0
    ledger.close(
        conn,
        file_id,
        res.status,
        reader.report.compression,
        {c: getattr(res, c) for c in ledger.COUNTS},
        reader.report.bytes_in,
        res.error,
    )
    return res


def _to_copy(table: pa.Table, rxid: str, file_id: int) -> bytes:
    """A parsed chunk as binary COPY data: sorted by line_md5 (see LineLoader), with rxid and
    file_id added."""
    n = table.num_rows
    table = table.take(pc.sort_indices(table["line_md5"]))
    table = table.append_column("rxid", pa.repeat(rxid, n)).append_column(
        "file_id", pa.repeat(file_id, n).cast(pa.int32())
    )
    return pgbinary.encode(table, jsonb=_JSONB)


def _partial_or_failed(res: FileResult) -> str:
    return "partial" if res.lines_loaded else "failed"


class FileLoader:
    """A Ray Data actor: one database connection and staging table, many files."""

    def __init__(self, dsn: str, tz: str):
        self.conn = connect(dsn, autocommit=True)
        self.loader = LineLoader(self.conn)
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="copy")
        self.tz = tz
        self.lines = metrics.Counter("logalyzer_ingest_lines", "log lines read")
        self.bytes = metrics.Counter("logalyzer_ingest_bytes", "file bytes read")
        self.rows = metrics.Counter("logalyzer_ingest_rows", "rows parsed and sent to COPY")

    def __call__(self, task: dict) -> dict:
        seen = {"bytes": 0}

        def on_chunk(lines: int, bytes_in: int, rows: int) -> None:
            self.lines.inc(lines)
            self.bytes.inc(max(0, bytes_in - seen["bytes"]))
            seen["bytes"] = bytes_in
            if rows:
                self.rows.inc(rows)

        return vars(load_file(self.conn, self.loader, task, self.tz, on_chunk, self.writer))


def _bound_loader(dsn: str, tz: str) -> type:
    """A FileLoader subclass with its arguments built in: Ray then ships the class alone,
    instead of keeping constructor arguments in the object store for actor restarts."""

    class BoundFileLoader(FileLoader):
        def __init__(self) -> None:
            super().__init__(dsn, tz)

    return BoundFileLoader


# --------------------------------------------------------------------------- the job


def ingest(
    settings: Settings,
    db: Database,
    paths: list[str | Path],
    rxid: str | None = None,
    force: bool = False,
    progress: bool | None = None,
    only_rxids: set[str] | None = None,
) -> IngestSummary:
    """Load ``paths`` (files or folders) into ``log_lines``; return what happened to each file."""
    t0 = time.perf_counter()
    if rxid is not None and not is_valid_rxid(rxid):
        raise InvalidIdentifier(f"--rxid {rxid!r} is not an RxID")
    tasks, settled = plan(db, paths, rxid=rxid, force=force, only_rxids=only_rxids)
    summary = IngestSummary(files=list(settled))
    if tasks:
        items = []
        with db.connect(autocommit=True) as conn:
            for t in sorted(tasks, key=lambda t: -t.size):  # biggest first: better balance
                items.append(
                    {
                        "path": t.path,
                        "rxid": t.rxid,
                        "size": t.size,
                        "mtime": t.mtime,
                        "file_id": ledger.register(conn, t.path, t.rxid, t.size, t.mtime, t.fp),
                    }
                )
        summary.files.extend(_run_loaders(settings, db, items, progress))
    summary.seconds = time.perf_counter() - t0
    return summary


def _run_loaders(
    settings: Settings, db: Database, items: list[dict], progress: bool | None
) -> list[FileResult]:
    ensure_ray(settings)
    workers = settings.ingest_concurrency or max(1, int(ray.cluster_resources().get("CPU", 1)))
    workers = min(workers, len(items))
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.map(
        _bound_loader(db.dsn, settings.tz),
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=1,
    )
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(
        total=sum(i["size"] for i in items),
        unit="B",
        unit_scale=True,
        desc=f"ingest {len(items)} files",
        disable=not show,
        file=sys.stderr,
    )
    results = []
    with bar:
        for row in ds.iter_rows():
            res = FileResult(**row)
            results.append(res)
            bar.update(res.size)
            bar.set_postfix(lines=f"{sum(r.lines_read for r in results):,}", refresh=False)
    return results
