"""Fuzz the ingest: mutated real lines over several devices, then count what was stored.

    .venv/bin/python bench/fuzz_ingest.py [--lines 1000000] [--devices 8] [--seed 1] [--keep]

Lines come from the Loghub Android sample (tests/data), VAR events in both dialects and every
header variant the parser knows; each line is mutated with some probability: bytes flipped,
cut short, control bytes, NUL and invalid UTF-8 inserted, VAR data replaced by junk
``key=value`` or JSON values (``NaN``, ``inf``, ``1e400``, 5,000-digit integers, ``\\u0000``,
lone surrogates, nesting 10,000 deep), 20-digit epoch headers. The files are ingested by the
real job (local Ray, ``LOGALYZER_DSN`` or the embedded PostgreSQL, a fresh database).

*Expected* is what the ingest's own reader and parser make of the same files in this process
(the distinct ``line_md5`` per device: lines that are markers are counted, not stored); *stored*
is what PostgreSQL holds. The run fails (exit 1) when they differ, when a file is not ``done``
or ``partial``, or when anything raised.
"""

from __future__ import annotations

import argparse
import gzip
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import fresh_database  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ANDROID = ROOT / "tests" / "data" / "loghub-android" / "Android_2k.log"

HEADERS = [  # one of each variant: threadtime, year, uid, zone, iso, studio, time, epoch, kernel
    "03-17 16:13:38.811  1702  2395 I {tag}: {msg}",
    "2024-03-17 16:13:38.811123  1702  2395 I {tag}: {msg}",
    "03-17 16:13:38.811  system  1702  2395 I {tag}: {msg}",
    "03-17 16:13:38.811+0100  1702  2395 I {tag}: {msg}",
    "2024-03-17T16:13:38.811Z  1702  2395 I {tag}: {msg}",
    "2024-03-17 16:13:38.811 1702-2395/com.example I/{tag}: {msg}",
    "03-17 16:13:38.811 I/{tag}( 1702): {msg}",
    "1710692018.811  1702  2395 I {tag}: {msg}",
    "<6>[ 1234.567890] {tag}: {msg}",
]
VAR_DATA = [
    "PLAYER|play|BlackScreen|state=start dur_ms={n} reason=no_signal",
    "PLAYER|zap|ChangeContent|cid=ch{n} src=live",
    'PLAYER|play|VideoFreeze|{{"state": "end", "dur_ms": {n}, "pos": 12.5}}',
    "[PLAYER] play: FIRST_FRAME ttff_ms={n} res=1080p",
    '[PLAYER] hdmi: HDMI_HOTPLUG {{"port": 1, "connected": false}}',
]
TRIGGERS = [
    "dur_ms=NaN",
    "dur_ms=nan",
    "pos=inf",
    "rate=+INF",
    "dur_ms=Infinity",
    "pos=1e400",
    "dropped=" + "9" * 5000,
    '{"dur_ms": NaN}',
    '{"dur_ms": Infinity, "pos": -Infinity}',
    '{"pos": 1e400, "rate": -1e400}',
    '{"reason": "x\\u0000y"}',
    '{"k\\u0000": 1}',
    '{"reason": "\\ud800"}',
    '{"n": ' + "7" * 5000 + "}",
    '{"a":' * 10_000 + "1" + "}" * 10_000,
]


def source_lines(rng: random.Random) -> list[str]:
    android = ANDROID.read_text(errors="replace").splitlines()
    var = [
        h.format(tag="VAR", msg=d.format(n=rng.randint(0, 9999))) for h in HEADERS for d in VAR_DATA
    ]
    return android + var * 40


def mutate(line: str, rng: random.Random) -> bytes:
    b = bytearray(line.encode("utf-8", "surrogatepass"))
    kind = rng.randrange(10)
    if kind == 0 and b:  # byte flips
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif kind == 1:  # cut short
        b = b[: rng.randrange(len(b) + 1)]
    elif kind == 2:  # control bytes, NUL, invalid UTF-8
        pos = rng.randrange(len(b) + 1)
        b[pos:pos] = rng.choice([b"\x00", b"\x01\x02", b"\x1b[31m", b"\xff\xfe", b"\xc3", b"\r"])
    elif kind in (3, 4):  # a VAR line whose data is a trigger
        h = rng.choice(HEADERS[:8])
        data = rng.choice(TRIGGERS)
        b = bytearray(h.format(tag="VAR", msg=f"PLAYER|play|BlackScreen|{data}").encode())
    elif kind == 5:  # an impossible header: a 20-digit epoch, a pid of 14 digits
        b = bytearray(
            rng.choice(
                [
                    "12345678901234567890.5  1 1 I X: m",
                    "03-17 16:13:38.811  99999999999999 1 I X: m",
                ]
            ).encode()
        )
    return bytes(b)


def write_fleet(out: Path, lines: int, devices: int, seed: int) -> list[Path]:
    rng = random.Random(seed)
    src = source_lines(rng)
    per_file = max(1_000, lines // (devices * 4))  # four files per device
    files, written, k = [], 0, 0
    while written < lines:
        n = min(per_file, lines - written)
        rx = f"R{1_000_000_000 + k % devices:010d}"
        path = out / rx / f"logcat_{k:04d}.log.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        body = b"\n".join(mutate(rng.choice(src), rng) for _ in range(n)) + b"\n"
        path.write_bytes(gzip.compress(body, compresslevel=1))
        files.append(path)
        written, k = written + n, k + 1
    return files


def expected_md5s(files: list[Path]) -> dict[str, set[bytes]]:
    """Distinct line ids per device, as the ingest's reader and parser see the files."""
    from logalyzer.core.files import LineReader, rxid_from_path
    from logalyzer.core.parser import FileParser

    out: dict[str, set[bytes]] = {}
    for path in files:
        rx = rxid_from_path(str(path))
        parser = FileParser(rx, tz="UTC")
        for chunk in LineReader(path):
            table = parser.parse(chunk.lines, chunk.truncated)
            out.setdefault(rx, set()).update(table["line_md5"].to_pylist())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--lines", type=int, default=1_000_000, help="lines to write (default 1e6)")
    ap.add_argument("--devices", type=int, default=8, help="devices to spread them over")
    ap.add_argument("--seed", type=int, default=1, help="random seed of the mutations")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "fuzz-fleet", help="fleet folder")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = ap.parse_args(argv)

    import psycopg

    from logalyzer.jobs.ingest import ingest
    from logalyzer.settings import Settings

    t0 = time.perf_counter()
    files = write_fleet(args.out, args.lines, args.devices, args.seed)
    print(
        f"wrote {args.lines:,} lines in {len(files)} files over {args.devices} devices "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    crashes: list[str] = []
    try:
        want = expected_md5s(files)
    except Exception as exc:  # noqa: BLE001 - a crash is a finding, reported below
        crashes.append(f"parse: {type(exc).__name__}: {exc}")
        want = {}
    distinct = sum(len(v) for v in want.values())
    with fresh_database(Settings(), keep=args.keep) as (settings, db):
        try:
            summary = ingest(settings, db, [args.out], progress=False)
        except Exception as exc:  # noqa: BLE001
            crashes.append(f"ingest: {type(exc).__name__}: {exc}")
            summary = None
        with psycopg.connect(db.dsn) as conn:
            stored = conn.execute("SELECT count(*) FROM log_lines").fetchone()[0]
            by_status = dict(conn.execute("SELECT status, count(*) FROM ingested_files GROUP BY 1"))
            degraded, failed = conn.execute(
                "SELECT coalesce(sum(lines_degraded), 0), coalesce(sum(lines_failed), 0)"
                " FROM ingested_files"
            ).fetchone()
    print(
        f"distinct lines {distinct:,}; stored {stored:,}; degraded {degraded:,}; "
        f"not stored {failed:,}"
    )
    print("files by status: " + ", ".join(f"{s} {n}" for s, n in sorted(by_status.items())))
    if summary is not None:
        for f in summary.files:
            if f.status not in ("done", "partial"):
                crashes.append(f"{f.path}: {f.status}: {f.error}")
    print(f"crashes: {len(crashes)}")
    for c in crashes[:20]:
        print(f"  {c}")
    ok = not crashes and stored == distinct and set(by_status) <= {"done", "partial"}
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
