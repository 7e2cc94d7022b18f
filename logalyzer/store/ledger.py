"""The file ledger in SQL (``ingested_files``, sql/0001): what was loaded from which file, and
how it ended. The ingest job (:mod:`logalyzer.jobs.ingest`) decides; these statements record.

A file's row goes ``loading`` when a loader takes it (:func:`register`) and is closed with
its counts only after its lines are committed (:func:`close`), so a file cut off mid-load is
never mistaken for a finished one. Files that are not loaded at all (refused, unreadable) get
a closed row at once (:func:`record_settled`).
"""

from __future__ import annotations

#: The counts :func:`close` writes, in order (``FileResult`` attributes of the same names).
COUNTS = (
    "lines_read",
    "lines_loaded",
    "lines_duplicate",
    "lines_unparsed",
    "lines_truncated",
    "markers",
)


def previous_load(conn, path: str) -> tuple | None:
    """(status, size, mtime epoch, fingerprint, lines read, loaded, duplicate, unparsed) of the
    file's last load, or None if it was never seen."""
    return conn.execute(
        "SELECT status, size_bytes, extract(epoch from mtime), fingerprint, lines_read,"
        " lines_loaded, lines_duplicate, lines_unparsed"
        " FROM ingested_files WHERE path = %s",
        (path,),
    ).fetchone()


def record_settled(conn, path: str, rxid: str | None, status: str, error: str) -> None:
    """A file that will not be loaded (``refused``, ``failed``), with why."""
    conn.execute(
        "INSERT INTO ingested_files (path, rxid, status, error, started_at, finished_at)"
        " VALUES (%s, %s, %s, %s, now(), now())"
        " ON CONFLICT (path) DO UPDATE SET rxid = excluded.rxid, status = excluded.status,"
        " error = excluded.error, finished_at = now()",
        (path, rxid, status, error),
    )


def register(conn, path: str, rxid: str, size: int, mtime: float, fingerprint: str) -> int:
    """Mark the file ``loading`` and return its file_id."""
    row = conn.execute(
        "INSERT INTO ingested_files"
        " (path, rxid, size_bytes, mtime, fingerprint, status, started_at)"
        " VALUES (%s, %s, %s, to_timestamp(%s), %s, 'loading', now())"
        " ON CONFLICT (path) DO UPDATE SET rxid = excluded.rxid, size_bytes = excluded.size_bytes,"
        " mtime = excluded.mtime, fingerprint = excluded.fingerprint, status = 'loading',"
        " error = NULL, started_at = now(), finished_at = NULL"
        " RETURNING file_id",
        (path, rxid, size, mtime, fingerprint),
    ).fetchone()
    return row[0]


def close(
    conn,
    file_id: int,
    status: str,
    compression: str | None,
    counts: dict,
    bytes_read: int,
    error: str | None,
) -> None:
    """Close a loaded file's row: its status, how it was compressed, its :data:`COUNTS`."""
    conn.execute(
        "UPDATE ingested_files SET status = %s, compression = %s, lines_read = %s,"
        " lines_loaded = %s, lines_duplicate = %s, lines_unparsed = %s, lines_truncated = %s,"
        " markers = %s, bytes_read = %s, error = %s, finished_at = now() WHERE file_id = %s",
        (status, compression, *(counts[c] for c in COUNTS), bytes_read, error, file_id),
    )


def device_signature(conn, rxid: str) -> tuple:
    """(files, lines loaded, latest finished_at) of the device's done/partial files: what the
    device's high-water mark in ``devices`` is compared with."""
    return conn.execute(
        "SELECT count(*), coalesce(sum(lines_loaded), 0), max(finished_at) FROM ingested_files"
        " WHERE rxid = %s AND status IN ('done', 'partial')",
        (rxid,),
    ).fetchone()
