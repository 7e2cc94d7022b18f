"""Where a loader's time goes, per line, in one process: read and inflate, parse, sort and encode.

The loader's steps of ``jobs.ingest.load_file`` without the database (no COPY): one synthetic
box's files, each chunk parsed (``core.parser.FileParser``), put in the loader's order and
encoded for binary COPY (``store.pgbinary``); one warm-up pass, one timed pass, then a cProfile
pass whose table (cumulative time) shows the split.

    .venv/bin/python bench/profile_loader.py [--hours 6] [--top 25]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=6.0, help="hours of one box (default 6)")
    ap.add_argument("--top", type=int, default=25, help="rows of the profile (default 25)")
    args = ap.parse_args(argv)

    import pyarrow as pa
    import pyarrow.compute as pc

    from logalyzer.core.files import LineReader, date_from_path, discover
    from logalyzer.core.parser import FileParser
    from logalyzer.core.synth import FleetSpec, generate_fleet
    from logalyzer.store import pgbinary
    from logalyzer.store.lines import COPY_COLUMNS

    rx = "R0000000001"
    order = [("line_key", "ascending"), ("line_md5", "ascending")]
    with tempfile.TemporaryDirectory() as tmp:
        generate_fleet(
            tmp, FleetSpec(devices=1, hours=args.hours, seed=1, noise_lines_per_minute=700)
        )
        files = sorted(p for p in discover([tmp]) if p.name.endswith(".gz"))

        def run() -> int:
            n = 0
            for path in files:
                parser = FileParser(rx, anchor=date_from_path(path))
                for chunk in LineReader(path):
                    t = parser.parse(chunk.lines, chunk.truncated)
                    t = t.take(pc.sort_indices(t, order))
                    t = t.append_column("rxid", pa.repeat(rx, t.num_rows))
                    t = t.append_column("file_id", pa.repeat(1, t.num_rows).cast(pa.int32()))
                    pgbinary.encode(t.select(list(COPY_COLUMNS)), jsonb=frozenset({"data"}))
                    n += t.num_rows
            return n

        run()
        t0 = time.perf_counter()
        n = run()
        took = time.perf_counter() - t0
        print(f"{n:,} lines in {took:.2f} s: {took / n * 1e6:.2f} µs a line\n")
        prof = cProfile.Profile()
        prof.enable()
        run()
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
