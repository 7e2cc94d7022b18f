"""``logalyzer grep``: search the stored lines, the way an operator greps a box's logs, with
the file and line number each line came from (the search itself: :mod:`logalyzer.store.search`)."""

from __future__ import annotations

import json
import os
import sys
import time

import click

from logalyzer.cli.common import CONTEXT, friendly, load_settings, open_db, parse_rxids
from logalyzer.core.search import (
    ContextMerger,
    LineFilter,
    format_line,
    line_record,
    parse_time,
)
from logalyzer.store.search import attach_paths, check_pattern, context_blocks, devices, stream_hits

TIME_FORMS = "ISO 8601: 2024-03-18, 2024-03-18T07:00:00Z, 2024-03-18T08:00+01:00; no zone = UTC"


@click.command(context_settings=CONTEXT)
@click.argument("pattern")
@click.option(
    "--rxid",
    "rxids",
    multiple=True,
    metavar="R",
    help="Only this box (R + 10 digits); repeat it or comma-separate for several. "
    "Default: every box.",
)
@click.option("--since", metavar="TS", help=f"Lines at or after TS ({TIME_FORMS}).")
@click.option("--until", metavar="TS", help="Lines before TS (the same forms as --since).")
@click.option(
    "--tag",
    "tags",
    multiple=True,
    metavar="T",
    help="Only lines with this tag (exact); repeatable.",
)
@click.option(
    "--level",
    "levels",
    multiple=True,
    metavar="L",
    help="Only lines of this level, one of V D I W E F A S; repeat it or comma-separate (E,F).",
)
@click.option("--regex", is_flag=True, help="PATTERN is a PostgreSQL regular expression.")
@click.option("-i", "--ignore-case", is_flag=True, help="Match PATTERN regardless of case.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Stop after N matching lines.",
)
@click.option(
    "-C",
    "--context",
    type=click.IntRange(0, 1000),
    default=0,
    metavar="N",
    show_default=True,
    help="Also show N lines before and after each match, from the same box.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per line (context lines: match false)."
)
@friendly
def grep(
    pattern: str,
    rxids: tuple[str, ...],
    since: str | None,
    until: str | None,
    tags: tuple[str, ...],
    levels: tuple[str, ...],
    regex: bool,
    ignore_case: bool,
    limit: int | None,
    context: int,
    as_json: bool,
) -> None:
    """Search the stored lines for PATTERN: the matching lines in time order, box by box, each
    with the file and line number it came from.

    \b
    PATTERN is plain text matched inside the message (the whole line when it could not be
    parsed), case-sensitive unless -i; '' matches every line. With --regex it is a PostgreSQL
    regular expression. Lines without any time (a file with no wall-clock line, e.g. a dmesg
    dump) are searched only without --since/--until, after the box's other lines.

    \b
    Output: R0000000001 2024-03-18T07:37:56.123Z logcat.log.gz:1234 I/Tag: message
    (a context line has '-' after the file instead of ':'; '--' separates groups).
    A summary goes to stderr.
    """
    flt = LineFilter(
        pattern=pattern,
        regex=regex,
        ignore_case=ignore_case,
        since=parse_time(since) if since else None,
        until=parse_time(until) if until else None,
        tags=tuple(tags),
        levels=tuple(lv.strip().upper() for arg in levels for lv in arg.split(",") if lv.strip()),
    )
    wanted = parse_rxids(",".join(rxids)) if rxids else None
    db = open_db(load_settings())
    started = time.perf_counter()
    with db.connect(autocommit=True) as conn:
        check_pattern(conn, flt)
        boxes = devices(conn, wanted)
        hits, seen = _print_hits(conn, flt, boxes, limit, context, as_json)
    click.echo(
        f"{hits:,} matching line(s) from {len(seen):,} of {len(boxes):,} box(es) "
        f"in {time.perf_counter() - started:,.2f} s",
        err=True,
    )


def _print_hits(conn, flt, boxes, limit, context, as_json) -> tuple[int, set[str]]:
    """Print the hits (and their context) batch by batch; return (hits, boxes with hits)."""
    merger = ContextMerger(context)
    paths: dict[int, str] = {}
    hits, seen = 0, set()
    try:
        for batch in stream_hits(conn, flt, boxes, limit):
            blocks = list(context_blocks(conn, flt, batch, context, merger))
            attach_paths(conn, [ln for _, _, lines in blocks for ln in lines], paths)
            for separator, hit, lines in blocks:
                if separator and not as_json:
                    click.echo("--")
                for ln in lines:
                    click.echo(
                        json.dumps(line_record(ln), ensure_ascii=False)
                        if as_json
                        else format_line(ln)
                    )
                hits += 1
                seen.add(hit.rxid)
        sys.stdout.flush()
    except BrokenPipeError:  # `logalyzer grep ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    return hits, seen
