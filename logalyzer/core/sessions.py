"""Playback sessions and their QoE measures from one device's VAR events (pure core).

Why a module of its own: the batch job (:mod:`logalyzer.jobs.sessionize`), the HTTP service and the
tests all cut sessions the same way, so the rules live here, free of Ray and PostgreSQL.
The rules are LOG_FORMAT.md section 4, with the open decisions settled exactly as the
synthetic generator's reference (:func:`logalyzer.core.synth.truth.truth_sessions`) settles them:

- events ordered by (timestamp, seq); a session opened by ``ChangeContent`` ends at the next
  ``ChangeContent`` (end = that event's time, not counted), at ``StandbyEnter`` (counted,
  end = its time), at a silence longer than the gap limit (end = last event before the gap),
  or at the device's last event;
- after a ``StandbyEnter`` or a gap, events up to the next ``ChangeContent`` belong to no
  session; before the first ``ChangeContent`` they form a session (no content id) only when
  they hold a playback event (:data:`PLAYBACK_TYPES`);
- start/end episodes (BlackScreen, VideoFreeze, Buffering): see :func:`measure`.

The cutting loop reads almost line for line like ``truth_sessions``, on purpose: the core must
not import the test generator, and the ground-truth tests compare the two implementations of
the same rules; a rule change must be made in both (the tests say so when one is missed).

Speed, measured on one device with 100k events (bench/sessionize.py prints the core's part):
this single pass over plain tuples takes 0.5-1.1 s (2 busy cores), reading the events takes
about 1 s, of which PostgreSQL's scan, sort and JSON-key extraction is 0.55-0.7 s. Fetching
the raw jsonb and parsing it in Python instead took 0.5 s + 0.7-0.8 s, so the job lets
PostgreSQL extract the few keys the rules need and parses JSON only for the rare events that
go into a session's summary. A numpy/Arrow variant of the cut was not built: the episode
rules are a sequential state machine, and at the synthetic fleet's rate (about 30 VAR events
per device-hour) the core is under 1 % of a device's time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

#: Events that make a window before the first ChangeContent a session (= synth.PLAYBACK_TYPES).
PLAYBACK_TYPES = frozenset(
    {
        "FirstFrame",
        "BlackScreen",
        "VideoFreeze",
        "DisplayDrop",
        "BufferingStart",
        "BufferingEnd",
        "TrickMode",
        "PlaybackError",
    }
)
#: Event types whose details (not only their count) go into a session's summary.
SUMMARY_TYPES = frozenset(
    {
        "HdmiHotplug",
        "TrickMode",
        "StandbyEnter",
        "StandbyExit",
        "PlaybackError",
        "BootInfo",
        "HdcpStatus",
    }
)
DEFAULT_GAP_S = 1800.0


class Event(NamedTuple):
    """One VAR event, already reduced to what the rules read (None = key absent)."""

    ts_ms: int  # UTC epoch milliseconds
    seq: int | None  # per-boot sequence number
    etype: str  # canonical event type (unknown types as given)
    state: str | None = None  # 'start' / 'end' of an episode, lower case
    dur_ms: int | None = None  # None when the key is absent (0 when present but unreadable)
    ttff_ms: int | None = None
    dropped: int | None = None
    connected: str | None = None  # the value as text ('true' / 'false' ...)
    fatal: str | None = None
    cid: str | None = None
    src: str | None = None
    detail: dict | None = None  # the data of SUMMARY_TYPES events (and BootInfo)


@dataclass
class Session:
    """One cut session: its events and why it ended, before measuring."""

    events: list[Event]
    end_ts: int
    reason: str  # change | standby | gap | end
    boot: dict | None = None  # data of the latest BootInfo at or before the first event
    measures: dict = field(default_factory=dict)


def _truthy(v: str | None, default: bool) -> bool:
    if v is None:
        return default
    return str(v).strip().lower() in ("true", "1", "yes")


def session_id(rxid: str, first: Event) -> str:
    """Deterministic id from the RxID and the session's first event (its time in ms, seq and
    type): the MD5 of ``rxid|ts_ms|seq|type`` written as a uuid, so re-analysing the same data
    updates rows instead of adding new ones (and SQL can recompute it with md5()::uuid)."""
    key = f"{rxid}|{first.ts_ms}|{first.seq if first.seq is not None else ''}|{first.etype}"
    h = hashlib.md5(key.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def order(events: Iterable[Event]) -> list[Event]:
    """Events in the contract's order: timestamp, then seq (missing seq last)."""
    return sorted(events, key=lambda e: (e.ts_ms, e.seq is None, e.seq or 0))


def cut(events: list[Event], gap_s: float = DEFAULT_GAP_S) -> list[Session]:
    """Cut ordered events into sessions (pre-first-change windows without playback dropped)."""
    gap_ms = gap_s * 1000
    out: list[Session] = []
    cur: list[Event] | None = None
    cur_boot = boot = None
    seen_change = in_standby = False
    prev_ts = 0

    def close(end_ts: int, reason: str) -> None:
        first = cur[0]
        if first.etype != "ChangeContent" and not any(e.etype in PLAYBACK_TYPES for e in cur):
            return
        out.append(Session(cur, end_ts, reason, cur_boot))

    for e in events:
        t = e.etype
        if cur is not None and e.ts_ms - prev_ts > gap_ms:
            close(cur[-1].ts_ms, "gap")
            cur = None
        prev_ts = e.ts_ms
        if t == "BootInfo":
            boot = e.detail or {}
        if t == "ChangeContent":
            if cur is not None:
                close(e.ts_ms, "change")
            cur, cur_boot, seen_change, in_standby = [e], boot, True, False
            continue
        if cur is None:
            if seen_change or in_standby:
                continue
            cur, cur_boot = [e], boot
        else:
            cur.append(e)
        if t == "StandbyEnter":
            close(e.ts_ms, "standby")
            cur, in_standby = None, True
    if cur is not None:
        close(cur[-1].ts_ms, "end")
    return out


def _iso(ts_ms: int) -> str:
    """UTC ISO-8601 with milliseconds and 'Z' (the summary's and the truth's format)."""
    sec, ms = divmod(int(ts_ms), 1000)
    return f"{datetime.fromtimestamp(sec, UTC).isoformat()[:19]}.{ms:03d}Z"


def measure(s: Session, rxid: str) -> dict:
    """The section-4 measures of one session, as a row of the ``sessions`` table.

    Episodes: a line without ``state`` is one episode of its ``dur_ms`` (0 if absent);
    ``state=start`` opens one (a second start while open is ignored); ``state=end`` closes it
    with its ``dur_ms``, else end - start (an end without a start still counts, dur_ms or 0);
    a start still open at the session's end closes at ``end_ts``. rebuffer_ratio =
    rebuffer_ms / (rebuffer_ms + play time), play time = session time not spent rebuffering,
    so it is rebuffer_ms / duration (capped at 1), None for a zero-length session.
    """
    evs, end_ts = s.events, s.end_ts
    first = evs[0]
    content = first.etype == "ChangeContent"
    cnt = {"BlackScreen": 0, "VideoFreeze": 0, "Buffering": 0}
    dur = {"BlackScreen": 0, "VideoFreeze": 0, "Buffering": 0}
    open_at: dict[str, int] = {}
    types: dict[str, int] = {}
    hdmi, trick, standby, errors, other = [], [], [], [], []
    ttff = None
    has_ff = fatal = False
    drops = dropped = tricks = hdmi_n = hdmi_off = stby = err_n = gaps = 0
    prev_seq = None
    for e in evs:
        t = e.etype
        types[t] = types.get(t, 0) + 1
        if prev_seq is not None and e.seq is not None and e.seq - prev_seq > 1:
            gaps += e.seq - prev_seq - 1
        prev_seq = e.seq if e.seq is not None else prev_seq
        if t == "FirstFrame":
            if not has_ff:
                ttff = e.ttff_ms if e.ttff_ms is not None else e.ts_ms - first.ts_ms
            has_ff = True
        elif t in ("BlackScreen", "VideoFreeze", "BufferingStart", "BufferingEnd"):
            if t == "BufferingStart":
                kind, state = "Buffering", "start"
            elif t == "BufferingEnd":
                kind, state = "Buffering", "end"
            else:
                kind, state = t, e.state
            if state == "start":
                open_at.setdefault(kind, e.ts_ms)
                continue
            started = open_at.pop(kind, None) if state == "end" else None
            cnt[kind] += 1
            if e.dur_ms is not None:
                dur[kind] += e.dur_ms
            elif started is not None:
                dur[kind] += e.ts_ms - started
        elif t == "DisplayDrop":
            drops += 1
            dropped += e.dropped or 0
        elif t == "TrickMode":
            tricks += 1
            trick.append({"ts": _iso(e.ts_ms), **(e.detail or {})})
        elif t == "HdmiHotplug":
            hdmi_n += 1
            on = _truthy(e.connected, True)
            hdmi_off += not on
            hdmi.append({"ts": _iso(e.ts_ms), **(e.detail or {})})
        elif t == "StandbyEnter":
            stby += 1
            standby.append({"ts": _iso(e.ts_ms), "event": t, **(e.detail or {})})
        elif t == "PlaybackError":
            err_n += 1
            f = _truthy(e.fatal, False)
            fatal |= f
            errors.append({"ts": _iso(e.ts_ms), **(e.detail or {})})
        elif t in ("HdcpStatus", "StandbyExit", "BootInfo") and e.detail is not None:
            other.append({"ts": _iso(e.ts_ms), "event": t, **e.detail})
    for kind, started in open_at.items():
        cnt[kind] += 1
        dur[kind] += end_ts - started
    dur_ms = end_ts - first.ts_ms
    rebuf = dur["Buffering"]
    # = qoe_rebuffer_ratio(rebuffer_ms, qoe_rebuffer_base_ms(duration_s, rebuffer_ms)), the
    # definition in sql/0009_qoe_formulas.sql; computed here because the core needs no database
    # (tests/test_sessionize.py holds the two to each other)
    ratio = None if dur_ms <= 0 and rebuf <= 0 else min(rebuf / max(dur_ms, rebuf), 1.0)
    boot = s.boot or {}
    return {
        "rxid": rxid,
        "session_id": session_id(rxid, first),
        "content_id": first.cid if content else None,
        "source": first.src if content else None,
        "start_ts": first.ts_ms,
        "end_ts": end_ts,
        "duration_s": round(dur_ms / 1000, 3),
        "ttff_ms": ttff,
        "black_screen_count": cnt["BlackScreen"],
        "black_screen_ms": dur["BlackScreen"],
        "video_freeze_count": cnt["VideoFreeze"],
        "video_freeze_ms": dur["VideoFreeze"],
        "display_drop_count": drops,
        "dropped_frames": dropped,
        "buffering_count": cnt["Buffering"],
        "rebuffer_ms": rebuf,
        "rebuffer_ratio": ratio,
        "trick_mode_count": tricks,
        "hdmi_event_count": hdmi_n,
        "hdmi_disconnects": hdmi_off,
        "standby_count": stby,
        "error_count": err_n,
        "fatal_error": fatal,
        "video_start_failure": content and not has_ff and fatal,
        "seq_gaps": gaps,
        "event_count": len(evs),
        "model": boot.get("model"),
        "fw": boot.get("fw"),
        "app": boot.get("app"),
        "summary": {
            "end_reason": s.reason,
            "counts": types,
            "hdmi": hdmi,
            "trick_modes": trick,
            "standby": standby,
            "errors": errors,
            "other": other,
            "open_episodes": sorted(open_at),
        },
    }


def sessionize(
    rxid: str, events: Iterable[Event], gap_s: float = DEFAULT_GAP_S, ordered: bool = False
) -> list[dict]:
    """All session rows of one device (``ordered=True`` when the events already are)."""
    evs = events if ordered else order(events)
    return [measure(s, rxid) for s in cut(evs, gap_s)]
