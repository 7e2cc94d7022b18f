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

import psycopg
import pyarrow as pa
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
from logalyzer.errors import (
    DatabaseGone,
    FilesFailed,
    InvalidIdentifier,
    LogalyzerError,
    NoInputFiles,
    first_line,
)
from logalyzer.jobs.rayutil import count, ensure_ray
from logalyzer.settings import Settings
from logalyzer.store import ledger
from logalyzer.store.db import Database, ensure_partition
from logalyzer.store.lines import BACKOFF_S, ChunkResult, LineLoader


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
    lines_degraded: int = 0  # refused by PostgreSQL as parsed, stored degraded (partial)
    lines_failed: int = 0  # refused even degraded: not stored
    lines_unparsed: int = 0
    lines_truncated: int = 0
    markers: int = 0
    error: str | None = None
    seconds: float = 0.0
    database_gone: bool = False  # the database stopped answering: the file is left for later


@dataclass
class IngestSummary:
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0

    def total(self, attr: str) -> int:
        return sum(getattr(f, attr) for f in self.files)

    @property
    def database_gone(self) -> bool:
        return any(f.database_gone for f in self.files)

    def raise_for_failures(self) -> None:
        """The exit status a scheduler sees (README, "Commands"): :class:`DatabaseGone` if
        the database went away mid-run, :class:`FilesFailed` if any file failed."""
        gone = [f for f in self.files if f.database_gone]
        if gone:
            raise DatabaseGone(
                f"{len(gone):,} file(s) not finished ({gone[0].error.split(': ', 1)[-1]})"
            )
        failed = [f for f in self.files if f.status == "failed"]
        if failed:
            raise FilesFailed(f"{len(failed):,} of {len(self.files):,} file(s) failed")


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
            if not force and ledger.settled(prev, st.st_size, st.st_mtime, fp):
                counts = {c: prev[c] for c in ledger.COUNTS}
                settled.append(FileResult(path, device, "unchanged", st.st_size, **counts))
                continue
            tasks.append(_Task(path, device, st.st_size, st.st_mtime, fp))
    return tasks, settled


def _record_settled(conn, path: str, rxid: str | None, status: str, error: str) -> FileResult:
    ledger.record_settled(conn, path, rxid, status, error)
    return FileResult(path, rxid, status, error=error)


# --------------------------------------------------------------------------- loading one file


def load_file(
    loader: LineLoader,
    task: dict,
    tz: str,
    on_chunk=None,
    writer: ThreadPoolExecutor | None = None,
) -> FileResult:
    """Read, parse and load one file; close its ledger row. Never raises for bad input.

    With a ``writer`` thread, chunk k is encoded and COPYed while chunk k+1 is parsed (the
    COPY waits on PostgreSQL and the encoding runs in Arrow, both outside the GIL); at most
    one chunk is in flight, so memory stays bounded. Rows PostgreSQL refuses and a database
    that goes away are the loader's business (:mod:`logalyzer.store.lines`); here they become
    the file's status: ``partial`` with ``input_damaged`` for refused rows (a re-read cannot do
    better), ``failed`` and left ``loading`` in the ledger when the database is gone (the next
    run reads the file again).
    """
    t0 = time.perf_counter()
    path, rxid, file_id = task["path"], task["rxid"], task["file_id"]
    res = FileResult(path, rxid, "done", task["size"])
    anchor = date_from_path(path) or datetime.fromtimestamp(task["mtime"])
    parser = FileParser(rxid, tz=tz, anchor=anchor)
    reader = LineReader(path)
    refused: list[str] = []  # PostgreSQL's reasons for refused rows
    pending: Future | None = None

    def send(table: pa.Table) -> ChunkResult:
        return loader.load(rxid, file_id, table)

    def landed(chunk: ChunkResult) -> None:
        res.lines_loaded += chunk.inserted
        res.lines_degraded += chunk.degraded
        res.lines_failed += chunk.failed
        res.lines_duplicate += chunk.duplicate
        if chunk.reason and not refused:
            refused.append(chunk.reason)

    try:
        loader.run(lambda conn: ensure_partition(conn, rxid))
        for chunk in reader:
            table = parser.parse(chunk.lines, chunk.truncated)
            if table.num_rows:
                if pending is not None:
                    landed(pending.result())
                    pending = None
                if writer is None:
                    landed(send(table))
                else:
                    pending = writer.submit(send, table)
            if on_chunk:
                on_chunk(len(chunk.lines), reader.report.bytes_in, table.num_rows)
        if pending is not None:
            landed(pending.result())
            pending = None
        res.error = reader.report.error
    except NotALogFile as exc:
        res.status, res.error = "failed", str(exc)
    except OSError as exc:
        res.status, res.error = _partial_or_failed(res), f"read error: {exc.strerror or exc}"
    except DatabaseGone as exc:
        res.status, res.error, res.database_gone = "failed", str(exc), True
    except psycopg.Error as exc:  # refused for a reason not in the data (permissions, schema)
        res.status, res.error = _partial_or_failed(res), first_line(exc)
    except Exception as exc:  # a bug: record it, show where, keep the other files going
        res.status, res.error = _partial_or_failed(res), first_line(exc)
        traceback.print_exc(file=sys.stderr)
    finally:
        if pending is not None:  # the reader failed while a chunk was on its way: let it land
            try:
                landed(pending.result())
            except Exception as exc:  # noqa: BLE001 - reported with the file
                res.error = f"{res.error}; {first_line(exc)}" if res.error else first_line(exc)
    damaged = reader.report.damaged or bool(res.lines_degraded or res.lines_failed)
    if res.status == "done" and damaged:
        res.status = "partial"
    if refused:
        note = (
            f"{res.lines_degraded:,} line(s) stored degraded, {res.lines_failed:,} not stored: "
            f"PostgreSQL refused them ({refused[0]})"
        )
        res.error = f"{res.error}; {note}" if res.error else note
    res.lines_read = reader.report.lines
    res.bytes_text = reader.report.bytes_out
    res.lines_unparsed = parser.stats.unparsed
    res.lines_truncated = reader.report.truncated_lines
    res.markers = parser.stats.markers
    res.seconds = time.perf_counter() - t0
    if not res.database_gone:
        _close_ledger(loader, res, file_id, reader.report, damaged)
    return res


def _close_ledger(loader: LineLoader, res: FileResult, file_id: int, report, damaged: bool):
    try:
        loader.run(
            lambda conn: ledger.close(
                conn,
                file_id,
                res.status,
                report.compression,
                {c: getattr(res, c) for c in ledger.COUNTS},
                report.bytes_in,
                res.error,
                input_damaged=damaged and res.status == "partial",
            )
        )
    except DatabaseGone as exc:  # the row stays `loading`: the next run reads the file again
        res.status, res.error, res.database_gone = "failed", str(exc), True


def _partial_or_failed(res: FileResult) -> str:
    return "partial" if res.lines_loaded else "failed"


class FileLoader:
    """A Ray Data actor: one database connection and staging table, many files."""

    def __init__(self, dsn: str, tz: str, backoff: tuple[float, ...] = BACKOFF_S):
        try:
            self.loader = LineLoader(dsn, backoff)
        except DatabaseGone:
            # The server went away while this actor was starting (the others may be loading
            # already). Raising here would kill the actor and Ray would report the pipeline
            # broken; instead each file this actor is given tries once and is left, like its
            # neighbours, for the next run (exit status 4, not 1).
            self.loader = LineLoader(dsn, backoff, connect_now=False)
            self.loader.gone = True
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="copy")
        self.tz = tz
        self.lines = metrics.Counter("logalyzer_ingest_lines", "log lines read")
        self.bytes = metrics.Counter("logalyzer_ingest_bytes", "file bytes read")
        self.rows = metrics.Counter("logalyzer_ingest_rows", "rows parsed and sent to COPY")

    def __call__(self, task: dict) -> dict:
        seen = {"bytes": 0}

        def on_chunk(lines: int, bytes_in: int, rows: int) -> None:
            count(self.lines, lines)
            count(self.bytes, bytes_in - seen["bytes"])
            seen["bytes"] = bytes_in
            count(self.rows, rows)

        return vars(load_file(self.loader, task, self.tz, on_chunk, self.writer))


def _bound_loader(dsn: str, tz: str) -> type:
    """A FileLoader subclass with its arguments built in: Ray then ships the class alone,
    instead of keeping constructor arguments in the object store for actor restarts. (Ray Data
    still passes its own plan to each actor as an object reference, which the driver's core
    worker warns about: README, under the configuration table.)"""

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
    try:
        with bar:
            for row in ds.iter_rows():
                res = FileResult(**row)
                results.append(res)
                bar.update(res.size)
                bar.set_postfix(lines=f"{sum(r.lines_read for r in results):,}", refresh=False)
    except ray.exceptions.RayError as exc:  # the loaders' pipeline itself broke down
        raise LogalyzerError(
            f"the loaders stopped after {len(results):,} of {len(items):,} files: "
            f"{first_line(exc, with_type=False)}",
            hint="re-run the same command: finished files are skipped, the rest are read again",
        ) from exc
    return results
