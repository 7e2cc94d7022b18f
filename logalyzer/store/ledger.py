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
    "lines_degraded",
    "lines_failed",
    "lines_unparsed",
    "lines_truncated",
    "markers",
)


def previous_load(conn, path: str) -> dict | None:
    """The file's last load (status, size, mtime as epoch seconds, fingerprint,
    input_damaged and the :data:`COUNTS`), or None if it was never seen."""
    cur = conn.execute(
        "SELECT status, size_bytes AS size, extract(epoch from mtime)::float8 AS mtime,"
        " fingerprint, input_damaged, "
        + ", ".join(COUNTS)
        + " FROM ingested_files WHERE path = %s",
        (path,),
    )
    row = cur.fetchone()
    return dict(zip([d.name for d in cur.description], row)) if row else None


def settled(prev: dict | None, size: int, mtime: float, fingerprint: str) -> bool:
    """Whether a file needs no new read: unchanged since a load that finished it, ``done``, or
    ``partial`` for damage in the input itself (a load cut short is finished by the next run)."""
    return bool(
        prev
        and (prev["status"] == "done" or (prev["status"] == "partial" and prev["input_damaged"]))
        and prev["size"] == size
        and prev["mtime"] is not None
        and abs(prev["mtime"] - mtime) < 1e-3
        and prev["fingerprint"] == fingerprint
    )


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
    input_damaged: bool = False,
) -> None:
    """Close a loaded file's row: its status, how it was compressed, its :data:`COUNTS`, and
    whether its damage is in the input itself (see :func:`settled`)."""
    conn.execute(
        "UPDATE ingested_files SET status = %s, compression = %s, "
        + ", ".join(f"{c} = %s" for c in COUNTS)
        + ", bytes_read = %s, error = %s, input_damaged = %s, finished_at = now()"
        " WHERE file_id = %s",
        (
            status,
            compression,
            *(counts[c] for c in COUNTS),
            bytes_read,
            error,
            input_damaged,
            file_id,
        ),
    )


def device_signature(conn, rxid: str) -> tuple:
    """(files, lines loaded, latest finished_at) of the device's done/partial files: what the
    device's high-water mark in ``devices`` is compared with."""
    return conn.execute(
        "SELECT count(*), coalesce(sum(lines_loaded), 0), max(finished_at) FROM ingested_files"
        " WHERE rxid = %s AND status IN ('done', 'partial')",
        (rxid,),
    ).fetchone()
