"""How a line looks: timestamp/header in the section-2 variants, VAR messages in a dialect.

One header variant and one VAR dialect per device; event type spellings vary (`BlackScreen`,
`BLACK_SCREEN`, `black-screen`) and a few % of VAR lines carry a JSON object instead of
key=value pairs. VAR lines in the `usec`/`nsec` variants have zero sub-millisecond digits, so
the truth is exact to the millisecond. Local time is written in the spec's zone.
"""

from __future__ import annotations

import json
import random
import re
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import numpy as np

from .spec import VarEvent

if TYPE_CHECKING:
    from .noise import _Proc
    from .timeline import _Planner

_CATFUNC = {
    "ChangeContent": ("PLAYER", "tune"),
    "FirstFrame": ("VIDEO", "onFirstFrame"),
    "BlackScreen": ("VIDEO", "blackDetector"),
    "VideoFreeze": ("VIDEO", "freezeDetector"),
    "DisplayDrop": ("DISPLAY", "vsync"),
    "BufferingStart": ("PLAYER", "onBuffering"),
    "BufferingEnd": ("PLAYER", "onBuffering"),
    "TrickMode": ("PLAYER", "setSpeed"),
    "HdmiHotplug": ("HDMI", "onHotplug"),
    "HdcpStatus": ("HDMI", "hdcpAuth"),
    "StandbyEnter": ("POWER", "onStandby"),
    "StandbyExit": ("POWER", "onWakeup"),
    "PlaybackError": ("PLAYER", "onError"),
    "ResolutionChange": ("DISPLAY", "onModeChange"),
    "BootInfo": ("SYSTEM", "boot"),
}
_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")


# ------------------------------------------------------------------------ time and headers


@lru_cache(maxsize=1)
def _hms_table() -> tuple[str, ...]:
    """'HH:MM:SS.' for every second of a day: turns per-line strftime into a list lookup."""
    return tuple("%02d:%02d:%02d." % (s // 3600, s // 60 % 60, s % 60) for s in range(86400))


@lru_cache(maxsize=4096)
def _day_prefix(day: int, style: str) -> str:
    d = date(1970, 1, 1) + timedelta(days=day)
    if style == "md":
        return "%02d-%02d " % (d.month, d.day)
    return "%04d-%02d-%02d%s" % (d.year, d.month, d.day, "T" if style == "iso" else " ")


_MS3 = tuple("%03d" % i for i in range(1000))
_DAY_STYLE = {"year": "ymd", "studio": "ymd", "iso": "iso", "epoch": ""}


class _Header:
    """Formats the timestamp and header of one line in one of the section-2 variants.

    A line is `pre[second] + ms + frac + post + body`; `pre`/`post` depend only on the second,
    `body` (pid, tid, level, tag, message) is prebuilt for noise, so a noise line costs a few
    string concatenations.
    """

    def __init__(self, variant: str, tz: str):
        self.variant = variant
        self.zone = ZoneInfo(tz)
        self.frac = {"usec": 3, "nsec": 6}.get(variant, 0)
        self.style = _DAY_STYLE.get(variant, "md")
        self._fixed = tz.upper() in ("UTC", "ETC/UTC", "GMT", "Z")

    def offset(self, sec: int) -> int:
        if self._fixed:
            return 0
        return int(datetime.fromtimestamp(sec, self.zone).utcoffset().total_seconds())

    def post(self, off: int) -> str:
        if self.variant not in ("zone", "iso"):
            return ""
        sign, a = ("+", off) if off >= 0 else ("-", -off)
        if self.variant == "zone":
            return " %s%02d%02d" % (sign, a // 3600, a // 60 % 60)
        return "Z" if off == 0 else "%s%02d:%02d" % (sign, a // 3600, a // 60 % 60)

    def _pre(self, sec: int, off: int) -> str:
        if self.variant == "epoch":
            return "%18d." % sec
        day, sod = divmod(sec + off, 86400)
        return _day_prefix(day, self.style) + _hms_table()[sod]

    def seconds(self, s0: int, count: int) -> tuple[list[str], str | None, list[str] | None]:
        """pre strings for seconds s0..s0+count-1, plus a constant post (or one per second)."""
        off0, off1 = self.offset(s0), self.offset(s0 + count - 1)
        if off0 != off1:  # a DST change inside this chunk: the slow, exact path
            offs = [self.offset(s) for s in range(s0, s0 + count)]
            return (
                [self._pre(s, o) for s, o in zip(range(s0, s0 + count), offs)],
                None,
                [self.post(o) for o in offs],
            )
        if self.variant == "epoch":
            return ["%18d." % s for s in range(s0, s0 + count)], "", None
        hms, pre = _hms_table(), []
        day, sod = divmod(s0 + off0, 86400)
        while len(pre) < count:
            take = min(count - len(pre), 86400 - sod)
            dp = _day_prefix(day, self.style)
            pre.extend([dp + x for x in hms[sod : sod + take]])
            day, sod = day + 1, 0
        return pre, self.post(off0), None

    def stamp(self, ts_ms: int, frac: str = "") -> str:
        sec, ms = divmod(ts_ms, 1000)
        off = self.offset(sec)
        return self._pre(sec, off) + _MS3[ms] + frac + self.post(off)

    def body(self, proc: _Proc, tid: int, level: str, tag: str, msg: str) -> str:
        v, pid = self.variant, proc.pid
        if v == "time":
            return " %s/%-8s(%5d): %s" % (level, tag, pid, msg)
        if v == "studio":
            return " %d-%d/%s %s/%s: %s" % (pid, tid, proc.pkg, level, tag, msg)
        if v == "iso":
            return " %d %d %s %s: %s" % (pid, tid, level, tag, msg)
        if v == "uid":
            uid = "%6s" % proc.uid_name if proc.uid_name else "%5d" % proc.uid
            return " %s %5d %5d %s %-8s: %s" % (uid, pid, tid, level, tag, msg)
        return " %5d %5d %s %-8s: %s" % (pid, tid, level, tag, msg)

    def local_dt(self, ts_ms: int) -> datetime:
        return datetime.fromtimestamp(ts_ms / 1000, self.zone)


# -------------------------------------------------------------------------- VAR rendering


def _kv(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    s = str(v)
    if s == "" or any(ch in s for ch in ' "='):
        return '"' + s.replace('"', '\\"') + '"'
    return s


def spell(etype: str, style: str) -> str:
    """Event type in one of the spellings seen in the field: camel, UPPER_SNAKE, kebab."""
    if style == "camel":
        return etype
    snake = _SNAKE.sub("_", etype)
    return snake.upper() if style == "upper" else snake.lower().replace("_", "-")


def var_message(ev: VarEvent, dialect: str, spelling: str, as_json: bool) -> str:
    """The message of a VAR line in one dialect (LOG_FORMAT.md section 3)."""
    cat, func = _CATFUNC[ev.etype]
    fields = {**ev.data, "sid": ev.sid, "seq": ev.seq, "mono": ev.mono}
    data = (
        json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
        if as_json
        else " ".join("%s=%s" % (k, _kv(v)) for k, v in fields.items())
    )
    name = spell(ev.etype, spelling)
    if dialect == "legacy":
        return "[%s] %s: %s %s" % (cat, func, name, data)
    return "%s|%s|%s|%s" % (cat, func, name, data)


def _var_level(ev: VarEvent) -> str:
    if ev.etype == "PlaybackError":
        return "E" if ev.data.get("fatal") else "W"
    return "W" if ev.etype in ("BlackScreen", "VideoFreeze", "DisplayDrop") else "I"


def _render_specials(
    plan: _Planner, header: _Header, seed: int
) -> list[tuple[int, str, VarEvent | None]]:
    """VAR and kernel lines of one device as (ts, text, event), in time order."""
    dev = plan.dev
    r = random.Random(f"{seed}:render:{dev.index}")
    styles = ("camel", "upper", "kebab")
    frac = "0" * header.frac
    boots = [b.boot_ms for b in plan.boots]
    out = []
    for ev in plan.events:
        if ev.dropped:
            continue
        boot = plan.boots[np.searchsorted(boots, ev.ts_ms, "right") - 1]
        proc = boot.procs["player"]
        style = dev.spelling if r.random() > 0.06 else r.choice(styles)
        msg = var_message(ev, dev.dialect, style, r.random() < 0.03)
        out.append(
            (
                ev.ts_ms,
                header.stamp(ev.ts_ms, frac)
                + header.body(proc, r.choice(proc.tids), _var_level(ev), "VAR", msg),
                ev,
            )
        )
    out += [(ts, text, None) for ts, text in plan.kernel if ts < plan.end_ms]
    out += _render_system(plan, header, seed, boots)
    out.sort(key=lambda x: x[0])
    return out


def _render_system(plan: _Planner, header: _Header, seed: int, boots: list[int]) -> list:
    """The system faults' logcat lines (:mod:`.system`); none unless the spec asks for them."""
    lines = getattr(plan, "system_lines", None)
    if not lines:
        return []
    r = random.Random(f"{seed}:system:{plan.dev.index}")
    frac = "0" * header.frac
    out = []
    for ts, key, level, tag, msg in lines:
        if ts >= plan.end_ms:
            continue
        proc = plan.boots[np.searchsorted(boots, ts, "right") - 1].procs[key]
        text = header.stamp(ts, frac) + header.body(proc, r.choice(proc.tids), level, tag, msg)
        out.append((ts, text, None))
    return out
