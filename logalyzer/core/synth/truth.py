"""The exact answer: sessions and their measures, and the ground-truth JSON.

Session rules (`truth_sessions` is the reference implementation of LOG_FORMAT.md section 4;
the ground truth is computed from the VAR events actually written, after dropped lines):
- events are ordered by (timestamp, seq). A session opened by `ChangeContent` ends
  * at a silence of more than `gap_s` seconds: end_ts = its last event before the gap;
  * at the next `ChangeContent`: end_ts = that event's time (it starts the next session and is
    not counted in the ended one), so a quiet hour of watching lasts an hour;
  * at `StandbyEnter`: the StandbyEnter IS counted in that session (event_count and
    standby_count), end_ts = its time;
  * at the device's last event: end_ts = that event's time.
- events after a `StandbyEnter` up to the next ChangeContent (StandbyExit, a reboot's BootInfo,
  HDMI events of the TV) belong to no session; so do events after a gap-closed session up to
  the next ChangeContent (the generator never writes such events: after its silent gap the
  player re-tunes with a ChangeContent).
- before a device's first ChangeContent the events, cut by the same gap/StandbyEnter rules,
  form a session (content_id and source null) only if they hold a playback event
  (`PLAYBACK_TYPES`); that session starts at the window's first event (usually the BootInfo).
- BlackScreen/VideoFreeze: a line without `state=start|end` is one episode of `dur_ms`
  (0 if absent). `state=start` opens an episode (a second start while one is open is ignored),
  `state=end` closes it with its `dur_ms` if present else end - start (an end with no open start
  counts, with its dur_ms or 0). BufferingStart/BufferingEnd are the same, rebuffer_ms from the
  end's dur_ms. A start still open when the session ends closes at end_ts.
- ttff_ms: `ttff_ms` of the session's first FirstFrame; video_start_failure: the session began
  with a ChangeContent, has no FirstFrame and a fatal PlaybackError.
- seq_gaps: sum over consecutive events of the session of (seq jump - 1) where jump > 1.
- model/fw/app: the latest BootInfo at or before the session's first event.

Ground truth (`ground_truth.json`): `spec`; `devices` (rxid, model/fw/app of the last boot,
header_variant, var_dialect, files relative to OUT, lines, plus index, spelling, kernel_style,
dumpstate, boots, var_events); `sessions` (the section-4 measures above plus session_index,
anomalous, anomaly_kind, edge_cases); `totals`: files, lines (every line of every file:
markers included, overlap counted once per file), var_events (distinct VAR lines written),
bytes_uncompressed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .cohorts import device_cohorts
from .spec import PLAYBACK_TYPES, VarEvent, iso_ms

if TYPE_CHECKING:
    from .render import _Header
    from .spec import FleetSpec
    from .timeline import _Device, _Planner
    from .writer import _DeviceWriter


def _as_int(v, default: int = 0) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def _as_bool(v) -> bool:
    return v if isinstance(v, bool) else str(v).strip().lower() in ("true", "1", "yes")


def truth_sessions(
    events: Iterable[VarEvent], gap_s: float = 1800, rxid: str | None = None
) -> list[dict]:
    """Sessions and their measures from one device's VAR events: the reference
    implementation of LOG_FORMAT.md section 4 that tests compare the session analyser with.

    Dropped events are skipped (the analyser never sees them). The decisions the spec leaves
    open are listed in this module's docstring. Each session dict holds the truth fields
    except the anomaly label and the file-based edge cases, which `generate_fleet` adds.
    """
    evs = sorted((e for e in events if not e.dropped), key=lambda e: (e.ts_ms, e.seq))
    gap_ms = gap_s * 1000
    out: list[dict] = []
    cur: list[VarEvent] | None = None
    cur_boot: dict | None = None
    boot: dict | None = None
    seen_change = in_standby = False
    prev_ts = None

    def close(end_ts: int, reason: str) -> None:
        s = _measure(cur, end_ts, reason, cur_boot)
        if s is not None:
            s["rxid"] = rxid
            s["session_index"] = len(out)
            out.append(s)

    for e in evs:
        if cur is not None and e.ts_ms - prev_ts > gap_ms:
            close(cur[-1].ts_ms, "gap")
            cur = None
        prev_ts = e.ts_ms
        if e.etype == "BootInfo":
            boot = e.data
        if e.etype == "ChangeContent":
            if cur is not None:
                close(e.ts_ms, "change")
            cur, cur_boot, seen_change, in_standby = [e], boot, True, False
            continue
        if cur is None:
            if seen_change or in_standby:
                continue  # after a standby or a gap: no session until the next ChangeContent
            cur, cur_boot = [e], boot
        else:
            cur.append(e)
        if e.etype == "StandbyEnter":
            close(e.ts_ms, "standby")
            cur, in_standby = None, True
    if cur is not None:
        close(cur[-1].ts_ms, "end")
    return out


def _measure(evs: list[VarEvent], end_ts: int, reason: str, boot: dict | None) -> dict | None:
    """Per-session measures (LOG_FORMAT.md section 4 table) of one cut session."""
    first = evs[0]
    content = first.etype == "ChangeContent"
    if not content and not any(e.etype in PLAYBACK_TYPES for e in evs):
        return None
    cnt = dict.fromkeys(("BlackScreen", "VideoFreeze", "Buffering"), 0)
    dur = dict.fromkeys(cnt, 0)
    open_at: dict[str, int] = {}
    m = dict(
        ttff_ms=None,
        display_drop_count=0,
        dropped_frames=0,
        trick_mode_count=0,
        hdmi_event_count=0,
        hdmi_disconnects=0,
        standby_count=0,
        error_count=0,
        fatal_error=False,
        seq_gaps=0,
    )
    has_ff = False
    for k, e in enumerate(evs):
        t, d = e.etype, e.data
        if k and e.seq - evs[k - 1].seq > 1:
            m["seq_gaps"] += e.seq - evs[k - 1].seq - 1
        if t == "FirstFrame":
            if not has_ff:
                m["ttff_ms"] = _as_int(d["ttff_ms"]) if "ttff_ms" in d else e.ts_ms - first.ts_ms
            has_ff = True
        elif t in ("BlackScreen", "VideoFreeze", "BufferingStart", "BufferingEnd"):
            kind = "Buffering" if t.startswith("Buffering") else t
            state = {"BufferingStart": "start", "BufferingEnd": "end"}.get(
                t, str(d.get("state", "")).lower()
            )
            if state == "start":
                open_at.setdefault(kind, e.ts_ms)
                continue
            started = open_at.pop(kind, None) if state == "end" else None
            cnt[kind] += 1
            if "dur_ms" in d:
                dur[kind] += _as_int(d["dur_ms"])
            elif started is not None:
                dur[kind] += e.ts_ms - started
        elif t == "DisplayDrop":
            m["display_drop_count"] += 1
            m["dropped_frames"] += _as_int(d.get("dropped"))
        elif t == "TrickMode":
            m["trick_mode_count"] += 1
        elif t == "HdmiHotplug":
            m["hdmi_event_count"] += 1
            m["hdmi_disconnects"] += not _as_bool(d.get("connected", True))
        elif t == "StandbyEnter":
            m["standby_count"] += 1
        elif t == "PlaybackError":
            m["error_count"] += 1
            m["fatal_error"] |= _as_bool(d.get("fatal", False))
    for kind, started in open_at.items():
        cnt[kind] += 1
        dur[kind] += end_ts - started
    edges = ([] if content else ["pre_first_change"]) + (["unclosed_episode"] if open_at else [])
    edges += ["seq_gap"] if m["seq_gaps"] else []
    edges += {"gap": ["silent_gap"], "standby": ["standby_mid_playback"], "end": ["log_end"]}.get(
        reason, []
    )
    boot = boot or {}
    return {
        "rxid": None,
        "session_index": 0,
        "content_id": first.data.get("cid") if content else None,
        "source": first.data.get("src") if content else None,
        "start_ts": iso_ms(first.ts_ms),
        "end_ts": iso_ms(end_ts),
        "duration_s": round((end_ts - first.ts_ms) / 1000, 3),
        "ttff_ms": m["ttff_ms"],
        "black_screen_count": cnt["BlackScreen"],
        "black_screen_ms": dur["BlackScreen"],
        "video_freeze_count": cnt["VideoFreeze"],
        "video_freeze_ms": dur["VideoFreeze"],
        "display_drop_count": m["display_drop_count"],
        "dropped_frames": m["dropped_frames"],
        "buffering_count": cnt["Buffering"],
        "rebuffer_ms": dur["Buffering"],
        "trick_mode_count": m["trick_mode_count"],
        "hdmi_event_count": m["hdmi_event_count"],
        "hdmi_disconnects": m["hdmi_disconnects"],
        "standby_count": m["standby_count"],
        "error_count": m["error_count"],
        "fatal_error": m["fatal_error"],
        "video_start_failure": content and not has_ff and m["fatal_error"],
        "seq_gaps": m["seq_gaps"],
        "event_count": len(evs),
        "model": boot.get("model"),
        "fw": boot.get("fw"),
        "app": boot.get("app"),
        "anomalous": False,
        "anomaly_kind": None,
        "edge_cases": edges,
        "_first": first,
        "_last": evs[-1],
        "_end_ms": end_ts,
    }


def _annotate(sessions: list[dict], header: _Header) -> None:
    """Add what needs more than the events: anomaly label, file span, local new year."""
    for s in sessions:
        first, last, end_ms = s.pop("_first"), s.pop("_last"), s.pop("_end_ms")
        s["anomalous"] = first.anomaly is not None
        s["anomaly_kind"] = first.anomaly
        if (
            first.file_index is not None
            and last.file_index is not None
            and last.file_index > first.file_index
        ):
            s["edge_cases"].append("spans_files")
        if header.local_dt(first.ts_ms).year != header.local_dt(end_ms).year:
            s["edge_cases"].append("new_year")


def _device_row(out: Path, dev: _Device, plan: _Planner, writer: _DeviceWriter) -> dict:
    """One device's entry of the truth's `devices`."""
    written = sum(not e.dropped for e in plan.events)
    last_boot = plan.boots[-1]
    return {
        "rxid": dev.rxid,
        "model": last_boot.model,
        "fw": last_boot.fw,
        "app": last_boot.app,
        "header_variant": dev.variant,
        "var_dialect": dev.dialect,
        "files": [p.relative_to(out).as_posix() for p in writer.files],
        "lines": writer.lines,
        "index": dev.index,
        "spelling": dev.spelling,
        "kernel_style": dev.kernel_style,
        "dumpstate": dev.dumpstate,
        "boots": len(plan.boots),
        "var_events": written,
    } | ({"cohorts": sorted(device_cohorts(plan.spec, dev.index))} if plan.spec.cohorts else {})


def _write_truth(
    out: Path,
    spec: FleetSpec,
    dev_rows: list[dict],
    sessions: list[dict],
    files: int,
    lines: int,
    var_events: int,
    bytes_uncompressed: int,
) -> Path:
    """Write OUT/ground_truth.json; returns its path."""
    truth = {
        "spec": spec.to_json(),
        "devices": dev_rows,
        "sessions": sessions,
        "totals": {
            "files": files,
            "lines": lines,
            "var_events": var_events,
            "bytes_uncompressed": bytes_uncompressed,
        },
    }
    truth_path = out / "ground_truth.json"
    truth_path.write_text(json.dumps(truth, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return truth_path
