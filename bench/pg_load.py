"""Issue 12's database side: what PostgreSQL alone spends loading a row shape, no client at all.

One box's lines (the project's generator, parsed by the project's parser) are written once as
server-side binary COPY files, one file per ingest chunk of 35,000 lines laid out as the ingest
lays them out (each chunk sorted by the table's key). Each candidate shape is then loaded from
those files by the server itself (``COPY t FROM '/path' (FORMAT binary)``, one transaction a
chunk), into a fresh table, alternating shapes over ``--rounds``; the medians of wall time, the
backend's CPU (``/proc/<pid>/stat``: the server must run on this machine) and WAL bytes are
printed as rows/s and as a ratio to the one-column reference (the raw lines as text).

    LOGALYZER_DSN=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/pg_load.py

Shapes (every one but ``text1`` and ``lean_noidx`` also carries the BRIN index on ``ts`` that
sql/0012 adds):

- ``text1``: the reference, one text column holding the raw line.
- ``today``: the 19-column ``log_lines`` row, unique btree on ``line_md5`` (a random key).
- ``today_noidx``: the same row without the unique index (the floor for this row).
- ``keyed``: the same row, idempotency on a unique btree ``(line_key, line_md5)``: the key grows
  with the line's own clock, so each chunk's index entries land next to each other.
- ``window``: sql/0017's shape: no unique index on keyed lines, two partial BRIN indexes on
  ``line_key`` (clocks, uptimes), a partial unique index for keyless lines; before each
  chunk's COPY the loader's lookup (the digests in the chunk's key ranges), after it the BRIN
  summarisation.
  Its columns ``lookup``, ``copy``, ``summarize`` split the wall time.
- ``slim_window``, ``slim_keyed``: the same without the four VAR columns (they go to a side
  table for the few VAR lines; that table's load is timed too, in the same transaction).
- ``ranges``: sql/0018's shape, today's: no index on keyed lines at all; before each chunk's
  COPY the loader's own lookup of the digests recorded for the chunk's key ranges
  (``store.lines._stored_md5s``), after it its record of the digests stored
  (``store.lines.record_ranges``, into the real ``line_ranges``); ``ranges_sum`` also
  summarises the BRIN ranges on ``ts`` the chunk filled, as the loader does.
- ``lean``, ``lean_noidx``, ``lean_key``: the leanest row a line could have, ``(rxid, line_key,
  ts, file_id, line_no, raw line)``, with the BRIN on ``ts``, without it, and with a BRIN on
  ``line_key`` too (the raw line stands in: header, tag and message joined).
- ``blocks``, ``blocks_ext``, ``blocks_lz4``: a row per :data:`BLOCK` lines, each column of
  the line row an array (the digests one ``bytea``), its key and time range as plain columns
  with the BRIN on its first time; TOAST's default compression (pglz), none (``STORAGE
  EXTERNAL``), lz4. The server writes their files from the ``window`` files.

The rows: ``line_key`` is the parser's own (``logalyzer.core.parser``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import fresh_database  # noqa: E402

CHUNK = 35_000
VAR = ("category", "function", "event_type", "data")

_ROW = """
    rxid text NOT NULL, line_md5 uuid NOT NULL, file_id integer, line_no bigint,
    ts timestamptz, ts_inferred boolean NOT NULL DEFAULT false, uptime_s double precision,
    pid integer, tid integer, uid text, level text, tag text, message text NOT NULL,
    status text NOT NULL, truncated boolean NOT NULL DEFAULT false"""
_VAR_COLS = ", category text, function text, event_type text, data jsonb"

_LEAN = (
    "CREATE TABLE {t} (rxid text NOT NULL, line_key bigint, ts timestamptz,"
    " file_id integer, line_no integer, line text NOT NULL)"
)
NO_TS_INDEX = frozenset({"text1", "lean_noidx"})
#: Lines a row of the ``blocks*`` shapes: each column of the line row as an array.
BLOCK = 1000
_ARRAYS = (
    "line_key bigint[], line_no bigint[], ts timestamptz[], ts_inferred boolean[],"
    " uptime_s double precision[], pid integer[], tid integer[], uid text[], level text[],"
    " tag text[], message text[], status text[], truncated boolean[]"
)
_BLOCKS = (
    "CREATE TABLE {t} (rxid text NOT NULL, key_lo bigint, key_hi bigint, ts_lo timestamptz,"
    f" ts_hi timestamptz, lines integer NOT NULL, file_id integer, md5s bytea, {_ARRAYS})"
)
_ARRAY_COLS = [c.split()[0] for c in _ARRAYS.split(",")]

SHAPES = {
    "text1": ["CREATE TABLE {t} (line text)"],
    "today": [
        f"CREATE TABLE {{t}} ({_ROW}{_VAR_COLS})",
        "CREATE UNIQUE INDEX ON {t} (line_md5)",
    ],
    "today_noidx": [f"CREATE TABLE {{t}} ({_ROW}{_VAR_COLS})"],
    "keyed": [
        f"CREATE TABLE {{t}} (line_key bigint NOT NULL, {_ROW}{_VAR_COLS})",
        "CREATE UNIQUE INDEX ON {t} (line_key, line_md5)",
    ],
    "window": [
        f"CREATE TABLE {{t}} (line_key bigint, {_ROW}{_VAR_COLS})",
        "CREATE INDEX {t}_clock ON {t} USING brin (line_key) WHERE line_key >= 0",
        "CREATE INDEX {t}_uptime ON {t} USING brin (line_key) WHERE line_key < 0",
        "CREATE UNIQUE INDEX ON {t} (line_md5) WHERE line_key IS NULL",
    ],
    "slim_window": [
        f"CREATE TABLE {{t}} (line_key bigint, {_ROW})",
        "CREATE INDEX {t}_clock ON {t} USING brin (line_key) WHERE line_key >= 0",
        "CREATE INDEX {t}_uptime ON {t} USING brin (line_key) WHERE line_key < 0",
        "CREATE UNIQUE INDEX ON {t} (line_md5) WHERE line_key IS NULL",
        "CREATE TABLE {t}_var (line_key bigint, line_md5 uuid NOT NULL,"
        " category text, function text, event_type text, data jsonb)",
    ],
    "lean": [_LEAN],
    "lean_noidx": [_LEAN],
    "lean_key": [_LEAN, "CREATE INDEX {t}_key ON {t} USING brin (line_key)"],
    "ranges": [
        f"CREATE TABLE {{t}} (line_key bigint, {_ROW}{_VAR_COLS})",
        "CREATE UNIQUE INDEX ON {t} (line_md5) WHERE line_key IS NULL",
    ],
    "ranges_sum": [
        f"CREATE TABLE {{t}} (line_key bigint, {_ROW}{_VAR_COLS})",
        "CREATE UNIQUE INDEX ON {t} (line_md5) WHERE line_key IS NULL",
    ],
    "blocks": [_BLOCKS],
    "blocks_ext": [_BLOCKS]
    + [f"ALTER TABLE {{t}} ALTER {c} SET STORAGE EXTERNAL" for c in _ARRAY_COLS + ["md5s"]],
    "blocks_lz4": [_BLOCKS]
    + [f"ALTER TABLE {{t}} ALTER {c} SET COMPRESSION lz4" for c in _ARRAY_COLS],
    "slim_keyed": [
        f"CREATE TABLE {{t}} (line_key bigint NOT NULL, {_ROW})",
        "CREATE UNIQUE INDEX ON {t} (line_key, line_md5)",
        "CREATE TABLE {t}_var (line_key bigint NOT NULL, line_md5 uuid NOT NULL,"
        " category text, function text, event_type text, data jsonb,"
        " PRIMARY KEY (line_key, line_md5))",
    ],
}


def box_lines(hours: float, noise: int, seed: int) -> tuple[list[pa.Table], list[pa.Array]]:
    """Parsed chunks and raw-line chunks of one synthetic box, in file order."""
    from logalyzer.core.files import LineReader, date_from_path, discover
    from logalyzer.core.parser import FileParser
    from logalyzer.core.synth import FleetSpec, generate_fleet

    tables, raws = [], []
    with tempfile.TemporaryDirectory() as tmp:
        generate_fleet(
            tmp, FleetSpec(devices=1, hours=hours, seed=seed, noise_lines_per_minute=noise)
        )
        files = [p for p in discover([tmp]) if p.name.endswith(".gz")]
        for path in sorted(files):
            parser = FileParser("R0000000001", anchor=date_from_path(path))
            for chunk in LineReader(path):
                tables.append(parser.parse(chunk.lines, chunk.truncated))
                raws.append(chunk.lines)
    return tables, raws


def write_files(folder: Path, tables: list[pa.Table], raws: list[pa.Array]) -> dict:
    """Binary COPY files per shape and chunk, re-cut into chunks of CHUNK rows."""
    from logalyzer.store import pgbinary
    from logalyzer.store.lines import key_ranges

    whole = pa.concat_tables(tables).combine_chunks()
    # the overlap of rotated files: keep each line's first copy, as the ingest stores it
    md5 = np.frombuffer(whole["line_md5"].chunk(0).buffers()[1], "V16", count=whole.num_rows)
    first = np.sort(np.unique(md5, return_index=True)[1])
    whole = whole.take(pa.array(first))
    raw = pa.chunked_array(raws).combine_chunks()
    n = whole.num_rows
    whole = whole.append_column("rxid", pa.repeat("R0000000001", n))
    whole = whole.append_column("file_id", pa.repeat(1, n).cast(pa.int32()))
    row = ["rxid", "line_md5", "file_id", "line_no", "ts", "ts_inferred", "uptime_s", "pid"]
    row += ["tid", "uid", "level", "tag", "message", "status", "truncated"]
    files: dict[str, list[list[Path]]] = {s: [] for s in SHAPES}
    bounds, chunks = [], []
    for c, start in enumerate(range(0, n, CHUNK)):
        part = whole.slice(start, CHUNK)
        by_md5 = part.take(pc.sort_indices(part["line_md5"]))
        by_key = part.take(
            pc.sort_indices(part, [("line_key", "ascending"), ("line_md5", "ascending")])
        )
        is_var = pc.is_valid(by_key["category"])
        bounds.append(key_ranges(part["line_key"]))
        head = pa.repeat("12-03 10:00:00.123  1234  1234 I ", part.num_rows)
        lean = by_key.select(["rxid", "line_key", "ts", "file_id", "line_no"])
        lean = lean.set_column(4, "line_no", lean["line_no"].cast(pa.int32()))
        line = pc.binary_join_element_wise(
            head, by_key["tag"].fill_null(""), by_key["message"], ": "
        )
        lean = lean.append_column("line", line)
        chunks.append(by_key)
        out = {
            "lean": [lean],
            "lean_noidx": [lean],
            "lean_key": [lean],
            "ranges": [by_key.select(["line_key", *row, *VAR])],
            "ranges_sum": [by_key.select(["line_key", *row, *VAR])],
            "text1": [pa.table({"line": raw.slice(start, CHUNK)})],
            "today": [by_md5.select(row + list(VAR))],
            "today_noidx": [by_md5.select(row + list(VAR))],
            "keyed": [
                by_key.select(["line_key", *row, *VAR]).set_column(
                    0, "line_key", pc.fill_null(by_key["line_key"], 0)
                )
            ],
            "window": [by_key.select(["line_key", *row, *VAR])],
            "slim_window": [
                by_key.select(["line_key", *row]),
                by_key.filter(is_var).select(["line_key", "line_md5", *VAR]),
            ],
            "slim_keyed": [
                by_key.select(["line_key", *row]).set_column(
                    0, "line_key", pc.fill_null(by_key["line_key"], 0)
                ),
                by_key.filter(is_var).select(["line_key", "line_md5", *VAR]),
            ],
        }
        for shape, parts in out.items():
            paths = []
            for k, t in enumerate(parts):
                p = folder / f"{shape}-{c:04d}-{k}.bin"
                p.write_bytes(pgbinary.encode(t, jsonb=frozenset({"data"})))
                os.chmod(p, 0o644)
                paths.append(p)
            files[shape].append(paths)
    return {
        "bounds": bounds,
        "chunks": chunks,
        "rows": n,
        "raw_rows": len(raw),
        "var_rows": int(pc.sum(pc.is_valid(whole["category"])).as_py()),
        "files": files,
    }


def block_files(dsn: str, folder: Path, window: list[list[Path]]) -> list[list[Path]]:
    """The ``blocks`` shapes' COPY files: each chunk's rows (the ``window`` files) as rows of
    :data:`BLOCK` lines, one array a column, written by the server itself."""
    import psycopg

    aggs = ", ".join(f"array_agg({c} ORDER BY line_key, line_md5)" for c in _ARRAY_COLS)
    out = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TEMP TABLE src (line_key bigint, {_ROW}{_VAR_COLS})")
        for c, paths in enumerate(window):
            conn.execute("TRUNCATE src")
            conn.execute(f"COPY src FROM '{paths[0]}' (FORMAT binary)")
            path = folder / f"blocks-{c:04d}-0.bin"
            conn.execute(
                "COPY (SELECT rxid, min(line_key), max(line_key), min(ts), max(ts),"
                " count(*)::integer, min(file_id),"
                " string_agg(uuid_send(line_md5), ''::bytea ORDER BY line_key, line_md5),"
                f" {aggs} FROM (SELECT *, (row_number() OVER (ORDER BY line_key, line_md5) - 1)"
                f" / {BLOCK} AS b FROM src) s GROUP BY rxid, b ORDER BY b)"
                f" TO '{path}' (FORMAT binary)"
            )
            out.append([path])
    return out


def backend_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_once(
    dsn: str, shape: str, chunks: list[list[Path]], bounds: list, tables: list, n: int
) -> dict:
    import psycopg

    from logalyzer.store.lines import _stored_md5s, record_ranges

    with psycopg.connect(dsn, autocommit=True) as conn:
        t = f"load_{shape}"
        conn.execute(f"DROP TABLE IF EXISTS {t}, {t}_var")
        for stmt in SHAPES[shape]:
            conn.execute(stmt.format(t=t))
        if shape not in NO_TS_INDEX:
            ts = "ts_lo" if shape.startswith("blocks") else "ts"  # a block's first time
            conn.execute(f"CREATE INDEX ON {t} USING brin ({ts}) WITH (autosummarize = on)")
        conn.execute("CHECKPOINT")
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        lsn0 = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        cpu0, t0 = backend_cpu_s(pid), time.perf_counter()
        parts = {"lookup": 0.0, "copy": 0.0, "summarize": 0.0}
        conn.execute("SET enable_seqscan = off")  # a fresh table has no statistics yet
        for paths, ranges, table in zip(chunks, bounds, tables):
            with conn.transaction():
                if shape.startswith("ranges"):  # the loader's own lookup (sql/0018)
                    a = time.perf_counter()
                    _stored_md5s(conn, t, table)
                    parts["lookup"] += time.perf_counter() - a
                if "window" in shape:  # what the loader would ask before its COPY
                    a = time.perf_counter()
                    for side in (">=", "<"):
                        mine = [r for r in ranges if (r[0] >= 0) == (side == ">=")]
                        if mine:
                            where = " OR ".join(f"line_key BETWEEN {a} AND {b}" for a, b in mine)
                            conn.execute(
                                f"SELECT line_md5 FROM {t} WHERE line_key {side} 0 AND ({where})"
                            ).fetchall()
                    parts["lookup"] += time.perf_counter() - a
                a = time.perf_counter()
                for k, p in enumerate(paths):
                    target = t if k == 0 else f"{t}_var"
                    conn.execute(f"COPY {target} FROM '{p}' (FORMAT binary)")
                parts["copy"] += time.perf_counter() - a
                a = time.perf_counter()
                if "window" in shape:  # the next lookup must not read these pages unsummarised
                    conn.execute(f"SELECT brin_summarize_new_values('{t}_clock')")
                    conn.execute(f"SELECT brin_summarize_new_values('{t}_uptime')")
                if shape.startswith("ranges"):  # and its record of the digests stored
                    record_ranges(conn, t, table)
                if shape == "ranges_sum":  # and the summaries of the BRIN ranges it filled
                    conn.execute(f"SELECT brin_summarize_new_values('{t}_ts_idx')")
                parts["summarize"] += time.perf_counter() - a
        wall, cpu = time.perf_counter() - t0, backend_cpu_s(pid) - cpu0
        wal = conn.execute("SELECT pg_current_wal_lsn() - %s::pg_lsn", (lsn0,)).fetchone()[0]
        count = "sum(lines)" if shape.startswith("blocks") else "count(*)"
        got = conn.execute(f"SELECT {count} FROM {t}").fetchone()[0]
        size = conn.execute(f"SELECT pg_total_relation_size('{t}')").fetchone()[0]
        conn.execute("DELETE FROM line_ranges WHERE part = %s::regclass", (t,))
        conn.execute(f"DROP TABLE {t}")
        conn.execute(f"DROP TABLE IF EXISTS {t}_var")
    if got != n:
        raise SystemExit(f"{shape}: {got:,} rows loaded of {n:,}")
    return {"wall_s": wall, "cpu_s": cpu, "wal_b": float(wal), "size_b": size, **parts}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=24.0, help="hours of one box (default 24)")
    ap.add_argument("--noise", type=int, default=700, help="noise lines a minute (default 700)")
    ap.add_argument("--rounds", type=int, default=3, help="loads of each shape (default 3)")
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated shapes")
    args = ap.parse_args(argv)
    shapes = args.shapes.split(",")
    if "text1" not in shapes:
        shapes.insert(0, "text1")

    from logalyzer.settings import Settings

    t0 = time.perf_counter()
    tables, raws = box_lines(args.hours, args.noise, seed=1)
    with (
        tempfile.TemporaryDirectory(prefix="pgload-") as tmp,
        fresh_database(Settings()) as (
            _settings,
            db,
        ),
    ):
        os.chmod(tmp, 0o755)
        prepared = write_files(Path(tmp), tables, raws)
        if any(s.startswith("blocks") for s in shapes):
            os.chmod(tmp, 0o777)  # the server writes them
            blocks = block_files(db.dsn, Path(tmp), prepared["files"]["window"])
            for s in ("blocks", "blocks_ext", "blocks_lz4"):
                prepared["files"][s] = blocks
        n = prepared["rows"]
        took = time.perf_counter() - t0
        print(
            f"{n:,} lines of one box ({prepared['var_rows']:,} VAR), "
            f"{len(prepared['files']['text1'])} chunks, prepared in {took:.0f} s"
        )
        runs: dict[str, list[dict]] = {s: [] for s in shapes}
        for _ in range(args.rounds):
            for s in shapes:
                rows = prepared["raw_rows"] if s == "text1" else n
                runs[s].append(
                    load_once(
                        db.dsn,
                        s,
                        prepared["files"][s],
                        prepared["bounds"],
                        prepared["chunks"],
                        rows,
                    )
                )
    med = {s: {k: statistics.median(r[k] for r in runs[s]) for k in runs[s][0]} for s in shapes}
    ref = med["text1"]
    print(
        f"\n{'shape':<12} {'rows/s':>9} {'x text1':>8} {'CPU us/row':>11} {'x text1':>8}"
        f" {'WAL B/row':>10} {'MB':>7}   (medians of {args.rounds}; walls "
    )
    for s in shapes:
        m = med[s]
        walls = ", ".join(f"{r['wall_s']:.1f}" for r in runs[s])
        if "window" in s or s.startswith("ranges"):
            walls += f"; lookup {m['lookup']:.2f}, summarize {m['summarize']:.2f}"
        print(
            f"{s:<12} {n / m['wall_s']:>9,.0f} {ref['wall_s'] / m['wall_s']:>8.2f}"
            f" {m['cpu_s'] / n * 1e6:>11.2f} {ref['cpu_s'] / m['cpu_s']:>8.2f}"
            f" {m['wal_b'] / n:>10.0f} {m['size_b'] / 1e6:>7.0f}   ({walls} s)"
        )
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
