"""Raw logcat lines → VAR events → sessions, in memory (pure core: no Ray, no PostgreSQL).

The HTTP service scores sessions sent as raw log lines. Their measures and event keys must be
computed by the same code as the batch jobs, or a session would score differently when sent
raw than when read from the ``sessions`` table. So the lines go through the batch path's own
pieces: :func:`logalyzer.core.files.text_lines` (the file reader's cleaning), the ingest's
:class:`~logalyzer.core.parser.FileParser` (headers, time, VAR parsing), then
:func:`logalyzer.core.sessions.cut` / :func:`~logalyzer.core.sessions.measure` and
:func:`logalyzer.core.features.event_keys`, exactly as ``sessionize`` calls them.

The one piece that had to be written twice is the step between: the batch job lets PostgreSQL
turn each stored line's ``data`` jsonb into an :class:`~logalyzer.core.sessions.Event`
(``sessionize.events_query``); :func:`event_from_data` is its line-for-line Python mirror:

- integer keys (``seq``, ``dur_ms``, ``ttff_ms``, ``dropped``): a JSON number is truncated to
  an integer, a string of 1-18 digits (optional minus) is read, anything else present is 0
  (``seq``: None); absent is None;
- text keys (``state`` lower-cased, ``connected``, ``fatal``, ``cid``, ``src``) as ``->>``
  gives them: strings as they are, booleans ``true``/``false``, numbers as written;
- ``detail``: for the summary types only, the data without ``seq``, ``sid`` and ``mono``;
- events ordered by (time in microseconds, seq, missing seq last), as ``ORDER BY ts, seq``;
- identical lines count once (the ingest stores each (RxID, line) once).

``tests/test_score.py`` checks the mirror against the real ingest + sessionize path.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from logalyzer.core.features import event_keys
from logalyzer.core.files import text_lines
from logalyzer.core.parser import FileParser
from logalyzer.core.sessions import DEFAULT_GAP_S, SUMMARY_TYPES, Event, cut, measure

_DIGITS = re.compile(r"-?[0-9]{1,18}")
_BIGINT = 2**63
_HIDDEN = ("seq", "sid", "mono")


def _int(v, present: int | None) -> int | None:
    """``sessionize._int_key``: the jsonb value as bigint (``present`` when unreadable)."""
    if isinstance(v, bool) or v is None or isinstance(v, (dict, list)):
        return present
    if isinstance(v, (int, float)):
        if isinstance(v, float) and not math.isfinite(v):
            return present
        t = math.trunc(v)
        return t if -_BIGINT <= t < _BIGINT else present
    if isinstance(v, str) and _DIGITS.fullmatch(v):
        return int(v)
    return present


def _text(v) -> str | None:
    """``data->>key``: a JSON value as PostgreSQL's ``->>`` writes it."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def event_from_data(ts_ms: int, event_type: str, data: dict | None) -> Event:
    """One stored VAR line (time, canonical type, parsed data) as the sessions core reads it."""
    d = data or {}
    g = d.get
    state = _text(g("state"))
    return Event(
        ts_ms,
        _int(g("seq"), None) if "seq" in d else None,
        event_type,
        state.lower() if state is not None else None,
        _int(g("dur_ms"), 0) if "dur_ms" in d else None,
        _int(g("ttff_ms"), 0) if "ttff_ms" in d else None,
        _int(g("dropped"), 0) if "dropped" in d else None,
        _text(g("connected")),
        _text(g("fatal")),
        _text(g("cid")),
        _text(g("src")),
        ({k: v for k, v in d.items() if k not in _HIDDEN} if data is not None else None)
        if event_type in SUMMARY_TYPES
        else None,
    )


def _ms(us: int) -> int:
    """``(extract(epoch FROM ts) * 1000)::bigint``: rounds half away from zero."""
    return (us + 500) // 1000 if us >= 0 else -((-us + 500) // 1000)


def events_from_lines(
    lines: str | Iterable[str], rxid: str, tz: str = "UTC", anchor: datetime | None = None
) -> list[Event]:
    """The VAR events of raw logcat lines (one text, or one string per line), in order.

    ``anchor`` dates headers without a year, as a file's date does in the ingest (default:
    now); ``tz`` is the zone of headers without an offset.
    """
    text = lines if isinstance(lines, str) else "\n".join(lines)
    parser = FileParser(rxid, tz=tz, anchor=anchor)
    seen: set[bytes] = set()
    rows: list[tuple] = []
    for chunk in text_lines(text):
        table = parser.parse(chunk.lines, chunk.truncated)
        keep = pc.and_(pc.is_valid(table["event_type"]), pc.is_valid(table["ts"]))
        table = table.filter(keep).select(["line_md5", "ts", "event_type", "data"])
        if not table.num_rows:
            continue
        us = table["ts"].cast(pa.int64()).to_pylist()
        for md5, t, etype, data in zip(
            table["line_md5"].to_pylist(),
            us,
            table["event_type"].to_pylist(),
            table["data"].to_pylist(),
        ):
            if md5 in seen:
                continue
            seen.add(md5)
            e = event_from_data(_ms(t), etype, json.loads(data) if data is not None else None)
            rows.append((t, e.seq is None, e.seq or 0, len(rows), e))
    rows.sort(key=lambda r: r[:4])
    return [r[-1] for r in rows]


def sessions_from_lines(
    lines: str | Iterable[str],
    rxid: str,
    tz: str = "UTC",
    anchor: datetime | None = None,
    gap_s: float = DEFAULT_GAP_S,
) -> list[tuple[dict, list[str]]]:
    """Each session in the lines: its ``sessions`` row (measures) and its event keys, computed
    as ``sessionize.analyse_device`` computes them. ``system_unusual_lines`` is 0: whether a
    system template is unusually frequent needs the box's and its cohort's history, which
    only the templates step has."""
    events = events_from_lines(lines, rxid, tz, anchor)
    return [
        ({**measure(s, rxid), "system_unusual_lines": 0}, event_keys(s.events))
        for s in cut(events, gap_s)
    ]
