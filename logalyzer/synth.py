"""Deterministic synthetic fleet: logcat files of Android-TV boxes, plus the exact answer.

Why: every later stage (parser, ingester, sessions, detectors, dashboards, benchmarks) needs
realistic input whose right answer is known. `generate_fleet(OUT, FleetSpec(...))` writes

    OUT/<RXID>/logcat_<YYYYMMDDTHHMMSS>.log.gz    (local time of the file's first line)
    OUT/ground_truth.json

and the same spec always gives byte-identical files and truth (seeded RNGs only, gzip header
mtime = the file's start, no file name in the gzip header).

What the files look like (LOG_FORMAT.md is the contract):
- one header variant (section 2, rows 1-9) and one VAR dialect (section 3) per device; event
  type spellings vary (`BlackScreen`, `BLACK_SCREEN`, `black-screen`), a few % of VAR lines
  carry a JSON object instead of key=value pairs. VAR lines in the `usec`/`nsec` variants have
  zero sub-millisecond digits, so the truth is exact to the millisecond.
- every file starts with its markers (`== dumpstate: ...` and `------ SYSTEM LOG ...` for some
  devices, then `--------- beginning of main`); file k+1 then repeats the last `overlap_lines`
  content lines of file k (markers are never part of the overlap) and continues.
- kernel lines (`[  123.456789] ...`, `<6>[ ...`, `[ ... @0] ...`) at boot and now and then;
  the boot burst opens a device's first file, before any wall-clock line.
- wall-clock timestamps of a device are strictly increasing, so no two of its lines are equal
  (the ingester's MD5 dedup then only removes the rotation overlap).
- local time is written in `spec.tz`; in a zone with a DST fall-back the repeated local hour is
  ambiguous for year-less/offset-less variants (the truth holds the real UTC instants).

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

Edge cases, placed on fixed devices of any fleet of >= 3 devices x >= 2 hours (labels in each
truth session's `edge_cases` are computed from the written data, so they also mark natural
occurrences): device 0: playback before the first ChangeContent (`pre_first_change`), a
VideoFreeze `state=start` that never ends (`unclosed_episode`), three dropped VAR lines
(`seq_gap`); device 1: standby in the middle of a VOD session (`standby_mid_playback`), a
session cut by a forced file rotation (`spans_files`); device 2: the player goes silent for 40
minutes, then re-tunes (`silent_gap`). Also `log_end` (cut by the end of the log) and `new_year`
(local year changes inside the session, e.g. with start=2023-12-31 22:00 UTC and hours >= 3).
Every event type of section 3 occurs on devices 0-2. Anomalous sessions (`ANOMALY_KINDS`, the
kind rotating fleet-wide so all occur) are drawn with probability `anomaly_rate` per session.

Ground truth (`ground_truth.json`): `spec`; `devices` (rxid, model/fw/app of the last boot,
header_variant, var_dialect, files relative to OUT, lines, plus index, spelling, kernel_style,
dumpstate, boots, var_events); `sessions` (the section-4 measures above plus session_index,
anomalous, anomaly_kind, edge_cases); `totals`: files, lines (every line of every file:
markers included, overlap counted once per file), var_events (distinct VAR lines written),
bytes_uncompressed.
"""

from __future__ import annotations

import json
import os
import random
import re
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Iterator
from zoneinfo import ZoneInfo

import numpy as np

try:
    from isal import igzip as _gzip
except ImportError:  # pragma: no cover - isal is a dependency, gzip keeps us working without it
    import gzip as _gzip

UTC = timezone.utc

HEADER_VARIANTS = ("threadtime", "year", "usec", "nsec", "zone", "uid", "epoch", "time",
                   "studio", "iso")
VAR_DIALECTS = ("current", "legacy")
EVENT_TYPES = ("ChangeContent", "FirstFrame", "BlackScreen", "VideoFreeze", "DisplayDrop",
               "BufferingStart", "BufferingEnd", "TrickMode", "HdmiHotplug", "HdcpStatus",
               "StandbyEnter", "StandbyExit", "PlaybackError", "ResolutionChange", "BootInfo")
PLAYBACK_TYPES = frozenset({"FirstFrame", "BlackScreen", "VideoFreeze", "DisplayDrop",
                            "BufferingStart", "BufferingEnd", "TrickMode", "PlaybackError"})
ANOMALY_KINDS = ("freeze_storm", "black_after_change", "hdmi_flapping", "drop_storm",
                 "error_loop", "video_start_failure", "rebuffer_storm", "hdcp_failure")
EDGE_CASES = ("pre_first_change", "unclosed_episode", "seq_gap", "standby_mid_playback",
              "spans_files", "silent_gap", "log_end", "new_year")
MARKER_MAIN = "--------- beginning of main"

_MIN = 60_000
_CATFUNC = {
    "ChangeContent": ("PLAYER", "tune"), "FirstFrame": ("VIDEO", "onFirstFrame"),
    "BlackScreen": ("VIDEO", "blackDetector"), "VideoFreeze": ("VIDEO", "freezeDetector"),
    "DisplayDrop": ("DISPLAY", "vsync"), "BufferingStart": ("PLAYER", "onBuffering"),
    "BufferingEnd": ("PLAYER", "onBuffering"), "TrickMode": ("PLAYER", "setSpeed"),
    "HdmiHotplug": ("HDMI", "onHotplug"), "HdcpStatus": ("HDMI", "hdcpAuth"),
    "StandbyEnter": ("POWER", "onStandby"), "StandbyExit": ("POWER", "onWakeup"),
    "PlaybackError": ("PLAYER", "onError"), "ResolutionChange": ("DISPLAY", "onModeChange"),
    "BootInfo": ("SYSTEM", "boot"),
}
_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")


# ---------------------------------------------------------------------------- public types

@dataclass
class FleetSpec:
    """What to generate; every field has a default so the CLI can pass only what it was given."""
    devices: int = 5
    hours: float = 4.0
    seed: int = 0
    anomaly_rate: float = 0.1          # fraction of sessions made anomalous
    start: datetime = datetime(2024, 3, 17, 8, 0, tzinfo=UTC)  # fleet start, UTC
    tz: str = "UTC"                    # zone the boxes write local time in (zoneinfo name)
    noise_lines_per_minute: int = 600  # non-VAR lines per device-minute (controls size; above
                                       # 60000 two noise lines may share a millisecond)
    rotate_mb: float = 8.0             # rotate a device's file after about this many MB (1e6)
    overlap_lines: int = 50            # each rotated file repeats the last N lines of the previous

    def to_json(self) -> dict:
        d = asdict(self)
        d["start"] = _start_utc(self.start).isoformat()
        return d


@dataclass
class FleetResult:
    out_dir: Path
    files: list[Path]
    bytes_uncompressed: int
    lines: int                         # overlapped lines counted once per file they appear in
    truth_path: Path                   # OUT/ground_truth.json


@dataclass(slots=True)
class VarEvent:
    """One VAR event as the firmware emitted it; `dropped` ones consumed a seq but were lost."""
    ts_ms: int                         # UTC epoch milliseconds
    etype: str                         # canonical event type
    data: dict                         # event keys (without sid/seq/mono)
    seq: int = 0
    sid: int = 0
    mono: int = 0
    dropped: bool = False
    anomaly: str | None = None         # set on the ChangeContent of an anomalous session
    file_index: int | None = None      # file it first appeared in (set by the writer)


# ------------------------------------------------------------------------ time and headers

def _start_utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def iso_ms(ts_ms: int) -> str:
    """UTC ISO-8601 with milliseconds and 'Z', the truth's timestamp format."""
    s, ms = divmod(int(ts_ms), 1000)
    return datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % ms


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
            return ([self._pre(s, o) for s, o in zip(range(s0, s0 + count), offs)], None,
                    [self.post(o) for o in offs])
        if self.variant == "epoch":
            return ["%18d." % s for s in range(s0, s0 + count)], "", None
        hms, pre = _hms_table(), []
        day, sod = divmod(s0 + off0, 86400)
        while len(pre) < count:
            take = min(count - len(pre), 86400 - sod)
            dp = _day_prefix(day, self.style)
            pre.extend([dp + x for x in hms[sod:sod + take]])
            day, sod = day + 1, 0
        return pre, self.post(off0), None

    def stamp(self, ts_ms: int, frac: str = "") -> str:
        sec, ms = divmod(ts_ms, 1000)
        off = self.offset(sec)
        return self._pre(sec, off) + _MS3[ms] + frac + self.post(off)

    def body(self, proc: "_Proc", tid: int, level: str, tag: str, msg: str) -> str:
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


# ----------------------------------------------------------------------- processes and noise

@dataclass
class _Proc:
    pid: int
    uid: int
    uid_name: str | None               # shown in `-v uid` when the name has <= 5 characters
    pkg: str
    tids: list[int]


# key, uid, uid name, package shown by Android Studio ('?' for native daemons), pid range
_PROC_TABLE = (
    ("system", 1000, None, "system_process", (380, 900)),
    ("surface", 1000, None, "?", (200, 379)),
    ("media", 1013, "media", "media.codec", (240, 379)),
    ("audio", 1041, "audio", "?", (230, 379)),
    ("player", 10128, None, "com.example.stb", (1500, 4500)),
    ("launcher", 10056, None, "com.google.android.tvlauncher", (1500, 4500)),
    ("wifi", 1010, "wifi", "?", (600, 1200)),
    ("root", 0, "root", "?", (150, 230)),
)

_APPS = ("com.google.android.youtube.tv", "com.netflix.ninja", "com.amazon.amazonvideo.livingroom",
         "com.google.android.tvlauncher", "com.android.vending", "com.google.android.gms")
_TITLES = ("Tagesschau – 20 Uhr", "Fußball: Bundesliga", "Café del Mar", "News at Ten",
           "Le Journal", "Planète+")


def _noise_templates() -> list[tuple[str, str, str, int, Callable[[random.Random], str]]]:
    """(process, level, tag, weight, message maker): everyday logcat chatter of a TV box."""
    c = random.Random.choice
    i = random.Random.randint
    return [
        ("system", "I", "ActivityManager", 3, lambda r: "Start proc %d:%s/u0a%d for service "
         "%s/.Sync" % (i(r, 2000, 9000), c(r, _APPS), i(r, 40, 150), c(r, _APPS))),
        ("system", "W", "ActivityManager", 2, lambda r: "getRunningAppProcesses: caller %d does "
         "not hold REAL_GET_TASKS; limiting output" % i(r, 10050, 10200)),
        ("system", "I", "ActivityManager", 1, lambda r: "Killing %d:%s/u0a%d (adj %d): empty #%d"
         % (i(r, 2000, 9000), c(r, _APPS), i(r, 40, 150), c(r, (906, 915, 925)), i(r, 17, 33))),
        ("system", "D", "WindowManager", 3, lambda r: "relayoutWindow: Window{%07x u0 %s/.Main} "
         "viewVisibility=%d" % (i(r, 0, 0xFFFFFFF), c(r, _APPS), c(r, (0, 4, 8)))),
        ("system", "I", "WindowManager", 1, lambda r: "Destroying surface Surface(name=SurfaceView"
         " - com.example.stb/.PlayerActivity) called by com.android.server.wm.WindowStateAnimator"
         ".destroySurface:%d <bottom of call stack> " % i(r, 900, 2100)),
        ("system", "D", "PowerManagerService", 3, lambda r: 'acquire lock=%d, flags=0x1, tag="%s",'
         " name=%s, ws=null, uid=%d, pid=%d" % (i(r, 10**7, 10**9), c(r, ("View Lock", "*alarm*",
         "AudioMix")), c(r, _APPS), i(r, 1000, 10200), i(r, 300, 9000))),
        ("system", "I", "InputDispatcher", 2, lambda r: "Delivering key to com.example.stb: "
         "action=%s, keyCode=%d" % (c(r, ("DOWN", "UP")), c(r, (19, 20, 21, 22, 23, 166, 167, 4)))),
        ("system", "D", "HdmiControlService", 1, lambda r: "---> <Report Power Status> src: 0, dst:"
         " 4, params: 0%d" % i(r, 0, 1)),
        ("system", "I", "TvInputManagerService", 1, lambda r: "tune: inputId=com.example.stb/.Tif "
         "channelUri=content://android.media.tv/channel/%d" % i(r, 1, 400)),
        ("system", "D", "ConnectivityService", 1, lambda r: "NetworkAgentInfo [ETHERNET () - %d] "
         "validation passed" % i(r, 100, 120)),
        ("system", "I", "chatty", 2, lambda r: "uid=1000(system) Binder:%d_%X expire %d lines"
         % (i(r, 380, 900), i(r, 1, 15), i(r, 1, 40))),
        ("system", "D", "TvProvider", 1, lambda r: 'program update: title="%s" start=%d'
         % (c(r, _TITLES), i(r, 1_700_000_000, 1_800_000_000))),
        ("surface", "D", "SurfaceFlinger", 2, lambda r: "duplicate layer name: changing SurfaceView"
         " - com.example.stb/.PlayerActivity to SurfaceView#%d" % i(r, 1, 9)),
        ("surface", "W", "BufferQueueProducer", 1, lambda r: "[SurfaceView#%d] dequeueBuffer: "
         "BufferQueue has been abandoned" % i(r, 0, 9)),
        ("media", "D", "AmlogicVideoDecoderAwesome2", 4, lambda r: "decode frame pts=%d size=%d"
         % (i(r, 0, 10**9), i(r, 300, 90000))),
        ("media", "I", "C2VdecComponent", 2, lambda r: "onOutputBufferDone: bitstream id %d, "
         "timestamp %d" % (i(r, 0, 99999), i(r, 0, 10**9))),
        ("audio", "D", "AudioFlinger", 2, lambda r: "mixer(0x%x) throttle end: throttle time(%d)"
         % (i(r, 0xE0000000, 0xEFFFFFFF), i(r, 1, 40))),
        ("audio", "I", "audio_hw_primary", 2, lambda r: "out_write: out_stream(0x%x) "
         "frames=%d latency=%d" % (i(r, 0xE0000000, 0xEFFFFFFF), c(r, (256, 512, 1024)),
                                   i(r, 20, 90))),
        ("player", "D", "ExoPlayerImpl", 2, lambda r: "Init %x [ExoPlayerLib/2.%d.%d] [sabrina, "
         "Chromecast, Google, %d]" % (i(r, 0, 0xFFFFFFF), i(r, 12, 19), i(r, 0, 3), i(r, 28, 33))),
        ("player", "W", "AudioTrack", 3, lambda r: "getTimestamp_l(%d): device stall time "
         "corrected using current time %d" % (i(r, 1, 300), i(r, 10**11, 10**12))),
        ("player", "I", "MediaCodec", 3, lambda r: "[%s] setState: %s" % (c(r, ("c2.amlogic.avc."
         "decoder", "c2.amlogic.hevc.decoder", "OMX.amlogic.mpeg2.decoder.awesome")),
         c(r, ("CONFIGURED", "STARTING", "STARTED", "FLUSHING", "FLUSHED")))),
        ("player", "D", "OkHttp", 4, lambda r: "--> GET https://cdn%d.example.net/live/ch%03d/"
         "seg_%d.ts (%d-byte body)" % (i(r, 1, 9), i(r, 1, 400), i(r, 10**5, 10**6), i(r, 0, 900))),
        ("player", "I", "PlayerStats", 2, lambda r: "bitrate=%d buffer_ms=%d dropped=%d"
         % (i(r, 800_000, 16_000_000), i(r, 500, 30000), i(r, 0, 3))),
        ("player", "D", "VARMON", 1, lambda r: "var queue depth=%d flushed=%d" % (i(r, 0, 50),
         i(r, 0, 400))),
        ("player", "I", "Choreographer", 1, lambda r: "Skipped %d frames!  The application may be "
         "doing too much work on its main thread." % i(r, 30, 120)),
        ("launcher", "D", "ViewRootImpl", 1, lambda r: "ViewPostIme pointer %d" % i(r, 0, 1)),
        ("wifi", "I", "wpa_supplicant", 2, lambda r: "wlan0: CTRL-EVENT-SIGNAL-CHANGE above=1 "
         "signal=-%d noise=-%d txrate=%d" % (i(r, 30, 80), i(r, 85, 99), i(r, 6000, 866000))),
        ("root", "I", "netd", 1, lambda r: "setMtu(eth0, %d): ok" % c(r, (1500, 1492))),
    ]


def _noise_pool(procs: dict[str, _Proc], header: _Header, r: random.Random,
                size: int = 2048) -> list[str]:
    """Prebuilt line bodies for one boot; noise lines pick from them at random."""
    templates = _noise_templates()
    weights = [t[3] for t in templates]
    pool = []
    for proc_key, level, tag, _, make in r.choices(templates, weights=weights, k=size):
        proc = procs[proc_key]
        pool.append(header.body(proc, r.choice(proc.tids), level, tag, make(r)))
    return pool


_BOOT_KERNEL = (
    "Booting Linux on physical CPU 0x0", "Linux version 5.4.210-g1d3c (build@stb) #1 SMP PREEMPT",
    "meson_cpufreq: cpu0 freq table initialized", "hdmitx: attach hdmitx",
    "hdmitx: hpd: 1", "hdmitx: EDID parsed: 3840x2160p60hz", "vout: vinfo: 1080p60hz",
    "init: init first stage started!", "ext4: mounted filesystem with ordered data mode",
    "healthd: battery none", "eth0: Link is Up - 1Gbps/Full - flow control rx/tx",
)
_RUN_KERNEL = (
    "hdmitx: system: update rx hdr", "codec_mm: tvp alloc %d pages", "vdec: vdec_release %d",
    "amvdec_h264: decoder buffer level %d", "lowmemorykiller: Killing 'com.android.vending' (%d),"
    " adj 906,", "aml_dvb: ts%d: demux start", "avsync: tsync pcr recover %d",
)


# ---------------------------------------------------------------------------- the timeline

@dataclass
class _Boot:
    boot_ms: int
    procs: dict[str, _Proc]
    model: str
    fw: str
    app: str


@dataclass
class _Device:
    index: int
    rxid: str
    variant: str
    dialect: str
    spelling: str
    kernel_style: str
    dumpstate: bool
    model: str
    fw: str
    app: str
    start_ms: int


def _poisson(r: random.Random, lam: float) -> int:
    """Small-lambda Poisson draw (Knuth); enough for incident counts per session."""
    if lam <= 0:
        return 0
    limit, k, p = pow(2.718281828459045, -lam), 0, r.random()
    while p > limit:
        k += 1
        p *= r.random()
    return k


# incidents per hour of normal playback; "trick" only for vod/app
_NORMAL_RATES = {"black": 0.25, "black_pair": 0.15, "freeze": 0.15, "freeze_pair": 0.1,
                 "drop": 1.2, "buffer": 0.8, "trick": 3.0, "hdmi": 0.05, "error": 0.12,
                 "hdcp": 0.1}
_ERRORS = ((1004, "network timeout"), (-110, "segment 404"), (2001, "decoder stalled"),
           (4003, "DRM license expired"), (6006, "audio underrun"), (1002, "MEDIA_ERROR_IO"))


class _Planner:
    """Builds one device's VAR events, kernel lines, boots, quiet windows and forced rotations.

    No I/O: the writer turns this plan into lines. Timestamps are strictly increasing, so the
    order (timestamp, seq) is unambiguous even across reboots.
    """

    def __init__(self, dev: _Device, spec: FleetSpec, end_ms: int, anomaly_counter: list[int]):
        self.dev, self.spec, self.end_ms = dev, spec, end_ms
        self.r = random.Random(f"{spec.seed}:plan:{dev.index}")
        self.counter = anomaly_counter       # shared: kinds rotate fleet-wide, all get used
        self.events: list[VarEvent] = []
        self.kernel: list[tuple[int, str]] = []
        self.boots: list[_Boot] = []
        self.quiet: list[tuple[int, int]] = []
        self.forced: list[int] = []
        self.last_ts = 0
        self.seq = self.sid = 0
        self.cid: str | None = None
        self.channels = ["ch%03d" % c for c in self.r.sample(range(1, 400), 12)]
        self.drop_p = 0.003

    # -- primitives
    def emit(self, ts: float, etype: str, data: dict, droppable: bool = False,
             dropped: bool = False, anomaly: str | None = None) -> VarEvent | None:
        ts = max(int(ts), self.last_ts + 1)
        if ts >= self.end_ms:
            return None
        if etype == "ChangeContent":
            self.sid += 1
        self.last_ts, self.seq = ts, self.seq + 1
        boot = self.boots[-1].boot_ms
        ev = VarEvent(ts, etype, data, self.seq, self.sid, ts - boot, anomaly=anomaly,
                      dropped=dropped or (droppable and self.r.random() < self.drop_p))
        if etype == "HdmiHotplug":
            self.klog(ts - self.r.randint(5, 60), "hdmitx: %s" %
                      ("plugin" if data.get("connected") else "plugout"))
        self.events.append(ev)
        return ev

    def klog(self, ts: int, msg: str, boot_ms: int | None = None) -> None:
        """A kernel line: it carries uptime (since `boot_ms`, default the latest boot)."""
        boot_ms = self.boots[-1].boot_ms if boot_ms is None else boot_ms
        up_us = max(0, ts - boot_ms) * 1000 + self.r.randint(0, 999)
        sec, us = divmod(up_us, 1_000_000)
        style = self.dev.kernel_style
        if style == "amlogic":
            text = "[%5d.%06d@%d] %s" % (sec, us, self.r.randint(0, 3), msg)
        else:
            text = "%s[%5d.%06d] %s" % ("<6>" if style == "level" else "", sec, us, msg)
        self.kernel.append((ts, text))

    def emit_items(self, t0: int, items: list, anomaly: str | None = None) -> None:
        """Emit (offset, etype, data[, droppable[, dropped]]) items in offset order."""
        for it in sorted(items, key=lambda x: x[0]):
            self.emit(t0 + it[0], it[1], it[2], *it[3:],
                      anomaly=anomaly if it[1] == "ChangeContent" else None)

    # -- device life
    def boot(self, t: int) -> int:
        r, d = self.r, self.dev
        procs = {}
        for key, uid, uname, pkg, (lo, hi) in _PROC_TABLE:
            pid = r.randint(lo, hi)
            procs[key] = _Proc(pid, uid, uname, pkg, [pid] + [pid + r.randint(1, 400)
                                                               for _ in range(r.randint(3, 6))])
        if self.boots and r.random() < 0.5:  # a reboot in standby often installs an update
            d.fw = re.sub(r"(\d+)$", lambda m: str(int(m.group(1)) + 1), d.fw)
        self.boots.append(_Boot(t, procs, d.model, d.fw, d.app))
        self.seq = self.sid = 0
        up = 0
        for msg in _BOOT_KERNEL:
            up += r.randint(30, 400)
            self.klog(t + up, msg)
        t1 = t + r.randint(8000, 14000)
        self.emit(t1, "BootInfo", {"model": d.model, "fw": d.fw, "app": d.app})
        self.emit(t1 + r.randint(200, 900), "HdmiHotplug", {"port": 1, "connected": True})
        self.emit(self.last_ts + r.randint(500, 2500), "HdcpStatus", {"ok": True, "version": "2.2"})
        self.emit(self.last_ts + r.randint(100, 800), "ResolutionChange",
                  {"from": "720x480", "to": "1920x1080"})
        return self.last_ts + r.randint(3000, 15000)

    def standby(self, t: int, dur: int, reason: str = "power_key") -> int:
        """StandbyEnter at t, maybe a reboot, StandbyExit; returns the next ChangeContent time."""
        r = self.r
        self.emit(t, "StandbyEnter", {"reason": reason})
        reboot = dur > 12 * _MIN and r.random() < 0.35
        if not reboot:
            self.emit(t + r.randint(15000, 60000), "HdmiHotplug", {"port": 1, "connected": False})
        else:
            down = t + r.randint(2 * _MIN, 6 * _MIN)
            up = down + r.randint(20000, 45000)
            self.quiet.append((down, up + 6000))
            self.klog(down - 50, "reboot: Restarting system with command 'ota_update'")
            self.boot(up)
        out = t + dur
        if not reboot:
            self.emit(out - r.randint(3000, 8000), "HdmiHotplug", {"port": 1, "connected": True})
            self.emit(self.last_ts + r.randint(800, 2000), "HdcpStatus",
                      {"ok": True, "version": "2.2"})
        self.emit(out, "StandbyExit", {"reason": r.choice(("power_key", "cec_wakeup"))})
        return self.last_ts + r.randint(1500, 4000)

    def run(self) -> "_Planner":
        r, idx = self.r, self.dev.index
        t = self.boot(self.dev.start_ms)
        scripted = []
        if idx == 0:
            t = self.pre_first_playback(t)
            scripted = [self.s_unclosed, self.s_seq_gap]
        elif idx == 1:
            scripted = [self.s_standby_mid, self.s_spans_files]
        elif idx == 2:
            scripted = [self.s_silent_gap, self.s_coverage]
        for step in scripted:
            t = step(t)
        while t < self.end_ms:
            t = self.random_session(t)
        for k in range(int((self.end_ms - self.dev.start_ms) / (3 * _MIN))):  # run-time chatter
            ts = self.dev.start_ms + 20000 + k * 3 * _MIN + r.randint(0, 2 * _MIN)
            if not any(a <= ts < b for a, b in self.quiet) and ts < self.end_ms:
                b = max(bt.boot_ms for bt in self.boots if bt.boot_ms <= ts)
                msg = r.choice(_RUN_KERNEL)
                self.klog(ts, msg % r.randint(1, 4000) if "%d" in msg else msg, b)
        return self

    # -- sessions
    def change(self, src: str | None = None, cid: str | None = None) -> dict:
        r = self.r
        src = src or r.choices(("live", "vod", "app"), (6, 3, 1))[0]
        if cid is None:
            cid = {"live": lambda: r.choice(self.channels),
                   "vod": lambda: "vod-%06d" % r.randint(0, 999999),
                   "app": lambda: r.choice(_APPS[:3])}[src]()
        data = {"cid": cid, "src": src}
        if self.cid is not None:
            data["prev_cid"] = self.cid
        self.cid = cid
        return data

    def first_frame(self, ttff: int) -> dict:
        return {"ttff_ms": ttff, "res": self.r.choice(("1920x1080", "3840x2160", "1280x720")),
                "codec": self.r.choice(("avc", "hevc", "av1", "mpeg2"))}

    def incident(self, name: str, big: bool = False) -> tuple[int, list]:
        """One incident as (length, [(offset, etype, data, droppable)]); `big` = storm size."""
        r = self.r
        if name in ("black", "freeze", "black_pair", "freeze_pair"):
            etype = "BlackScreen" if name.startswith("black") else "VideoFreeze"
            d = r.randint(800, 12000) if big else r.randint(150, 3000)
            extra = ({"reason": r.choice(("signal_loss", "decoder_reset", "hdmi_resync"))}
                     if etype == "BlackScreen" else {"pos": r.randint(0, 3_600_000)})
            if not name.endswith("pair"):
                return d, [(d, etype, {"dur_ms": d, **extra}, False)]
            end = {"state": "end"}
            if r.random() < 0.7:
                end["dur_ms"] = d - r.randint(0, 40)
            return d, [(0, etype, {"state": "start", **extra}, False), (d, etype, end, False)]
        if name == "drop":
            dropped = r.randint(25, 600) if big else r.randint(1, 8)
            return 10, [(0, "DisplayDrop", {"dropped": dropped, "window_ms":
                         r.choice((1000, 5000, 10000))}, True)]
        if name == "buffer":
            d = r.randint(2000, 20000) if big else r.randint(250, 3500)
            end = {"dur_ms": d - r.randint(0, 30)} if r.random() < 0.8 else {}
            return d, [(0, "BufferingStart", {}, False),
                       (d, "BufferingEnd", end, False)]
        if name == "trick":
            mode = r.choice(("PAUSE", "FF", "REW", "SEEK"))
            pos = r.randint(0, 5_400_000)
            if mode == "SEEK":
                return 10, [(0, "TrickMode", {"mode": "SEEK", "rate": 1, "pos": pos}, True)]
            d = r.randint(5000, 180000) if mode == "PAUSE" else r.randint(3000, 30000)
            rate = 0 if mode == "PAUSE" else r.choice((2, 4, 8, 16, 32))
            rate = -rate if mode == "REW" else rate
            return d, [(0, "TrickMode", {"mode": mode, "rate": rate, "pos": pos}, True),
                       (d, "TrickMode", {"mode": "PLAY", "rate": 1, "pos": pos + d}, True)]
        if name == "hdmi":
            d = r.randint(1500, 8000)
            return d + 2500, [(0, "HdmiHotplug", {"port": 1, "connected": False}, False),
                              (d, "HdmiHotplug", {"port": 1, "connected": True}, False),
                              (d + r.randint(800, 2400), "HdcpStatus", {"ok": True,
                               "version": "2.2"}, False)]
        if name == "error":
            code, msg = r.choice(_ERRORS)
            return 10, [(0, "PlaybackError", {"code": code, "fatal": False, "msg": msg}, False)]
        if name == "hdcp":
            return 10, [(0, "HdcpStatus", {"ok": True, "version": r.choice(("1.4", "2.2"))}, True)]
        raise ValueError(name)

    def place(self, lo: int, hi: int, incidents: list[tuple[int, list]]) -> list:
        """Lay incidents in [lo, hi) in a random order without overlap; drop what doesn't fit."""
        r = self.r
        r.shuffle(incidents)
        while incidents and sum(n for n, _ in incidents) > hi - lo:
            incidents.pop()
        free = hi - lo - sum(n for n, _ in incidents)
        cuts = sorted(r.randint(0, max(0, free)) for _ in incidents)
        items, pos, prev = [], lo, 0
        for cut, (length, its) in zip(cuts, incidents):
            pos += cut - prev
            prev = cut
            items += [(pos + off, *rest) for off, *rest in its]
            pos += length
        return items

    def abr(self, lo: int, hi: int) -> list:
        """Adaptive-bitrate switches every 4-18 min: realistic, and no silent half hour."""
        items, t, res = [], lo, ("1280x720", "1920x1080", "3840x2160")
        while True:
            t += self.r.randint(4 * _MIN, 18 * _MIN)
            if t >= hi - 1000:
                break
            a, b = self.r.sample(res, 2)
            items.append((t, "ResolutionChange", {"from": a, "to": b}, True))
        return items

    def normal_items(self, dur: int, src: str, lo: int) -> list:
        hours = dur / 3_600_000
        incs = []
        for name, rate in _NORMAL_RATES.items():
            if name == "trick" and src == "live":
                continue
            incs += [self.incident(name) for _ in range(_poisson(self.r, rate * hours))]
        return self.place(lo, dur - 500, incs) + self.abr(lo, dur)

    def random_session(self, t: int) -> int:
        r = self.r
        cc = self.change()
        ttff = r.randint(350, 2200)
        anomalous = r.random() < self.spec.anomaly_rate
        if anomalous:
            kind = ANOMALY_KINDS[(self.counter[0] + self.spec.seed) % len(ANOMALY_KINDS)]
            self.counter[0] += 1
            dur, items = self.anomaly_items(kind, ttff, cc["src"])
        else:
            kind = None
            dur = r.choice((r.randint(1500, 12000), r.randint(_MIN, 15 * _MIN),
                            r.randint(_MIN, 15 * _MIN), r.randint(15 * _MIN, 55 * _MIN)))
            items = []
            if dur > ttff + 150 or r.random() < 0.2:
                ttff = min(ttff, dur - 100)
                items.append((ttff, "FirstFrame", self.first_frame(ttff)))
            if dur > 20000:
                items += self.normal_items(dur, cc["src"], ttff + 300)
        self.emit_items(t, [(0, "ChangeContent", cc)] + items, anomaly=kind)
        t += dur
        if dur > 20000 and r.random() < 0.04:
            t = self.standby(t, r.randint(3 * _MIN, 120 * _MIN),
                             r.choice(("power_key", "sleep_timer", "hdmi_cec")))
        return t

    def anomaly_items(self, kind: str, ttff: int, src: str) -> tuple[int, list]:
        """Duration and events (offsets from the ChangeContent) of one anomalous session."""
        r, ff = self.r, [(ttff, "FirstFrame", self.first_frame(ttff))]
        lo = ttff + 300
        if kind == "freeze_storm":
            dur = r.randint(8 * _MIN, 20 * _MIN)
            incs = [self.incident(r.choice(("freeze", "freeze_pair")), True)
                    for _ in range(r.randint(10, 25))]
        elif kind == "drop_storm":
            dur = r.randint(5 * _MIN, 15 * _MIN)
            incs = [self.incident("drop", True) for _ in range(r.randint(15, 40))]
        elif kind == "rebuffer_storm":
            dur = r.randint(10 * _MIN, 25 * _MIN)
            incs = [self.incident("buffer", True) for _ in range(r.randint(8, 20))]
        elif kind == "black_after_change":
            end = r.randint(15000, 60000)
            ttff = end + r.randint(200, 800)
            dur = ttff + r.randint(_MIN, 8 * _MIN)
            ff = [(80, "BlackScreen", {"state": "start", "reason": "no_signal"}),
                  (end, "BlackScreen", {"state": "end", "dur_ms": end - 80}),
                  (ttff, "FirstFrame", self.first_frame(ttff))]
            return dur, ff + self.normal_items(dur, src, ttff + 300)
        elif kind == "hdmi_flapping":
            dur = r.randint(3 * _MIN, 10 * _MIN)
            its, t = [], 0
            for _ in range(r.randint(5, 12)):
                up = t + r.randint(500, 4000)
                its += [(t, "HdmiHotplug", {"port": 1, "connected": False}, False),
                        (up, "HdmiHotplug", {"port": 1, "connected": True}, False),
                        (up + 300, "HdcpStatus", {"ok": r.random() > 0.4, "version": "2.2"}, False)]
                t = up + r.randint(1000, 15000)
            incs = [(t, its)]
        elif kind == "hdcp_failure":
            dur = r.randint(2 * _MIN, 6 * _MIN)
            incs = []
            for _ in range(r.randint(3, 6)):
                d = r.randint(5000, 30000)
                incs.append((d + 1000, [
                    (0, "HdcpStatus", {"ok": False, "version": "2.2"}, False),
                    (100, "BlackScreen", {"state": "start", "reason": "hdcp"}, False),
                    (d, "BlackScreen", {"state": "end", "dur_ms": d - 100}, False),
                    (d + 500, "HdcpStatus", {"ok": True, "version": "2.2"}, False)]))
        elif kind == "error_loop":
            code, msg = r.choice(_ERRORS)
            items, t = list(ff), lo
            for _ in range(r.randint(4, 10)):
                t += r.randint(3000, 15000)
                items += [(t, "BufferingStart", {}),
                          (t + 900, "BufferingEnd", {"dur_ms": 900}),
                          (t + 1000, "PlaybackError", {"code": code, "fatal": False, "msg": msg})]
            t += r.randint(3000, 10000)
            items.append((t, "PlaybackError", {"code": code, "fatal": True, "msg": msg}))
            return t + r.randint(3000, 20000), items
        elif kind == "video_start_failure":
            code, msg = r.choice(_ERRORS)
            items, t = [(300, "BufferingStart", {})], 300
            for _ in range(r.randint(0, 2)):
                t += r.randint(1000, 4000)
                items.append((t, "PlaybackError", {"code": code, "fatal": False, "msg": msg}))
            t += r.randint(2000, 10000)
            items += [(t - 5, "BufferingEnd", {}),
                      (t, "PlaybackError", {"code": code, "fatal": True, "msg": msg})]
            return t + r.randint(2000, 10000), items
        else:
            raise ValueError(kind)
        dur = max(dur, lo + sum(n for n, _ in incs) + 30000)  # the storm must fit
        return dur, ff + self.place(lo, dur - 500, incs) + self.abr(lo, dur)

    # -- scripted edge cases (fixed devices, first sessions, so 2 hours always hold them)
    def pre_first_playback(self, t: int) -> int:
        """Device 0: the player resumes the last channel at boot without a ChangeContent."""
        self.emit_items(t, [(0, "FirstFrame", self.first_frame(1650)),
                            (15000, "BufferingStart", {}),
                            (16400, "BufferingEnd", {"dur_ms": 1390}),
                            (40000, "DisplayDrop", {"dropped": 3, "window_ms": 1000})])
        return t + 70000

    def s_unclosed(self, t: int) -> int:
        self.emit_items(t, [(0, "ChangeContent", self.change("live")),
                            (900, "FirstFrame", self.first_frame(900)),
                            (30000, "BlackScreen", {"dur_ms": 640, "reason": "decoder_reset"}),
                            (95000, "VideoFreeze", {"state": "start", "pos": 95000})])
        return t + 140000

    def s_seq_gap(self, t: int) -> int:
        dd = {"dropped": 2, "window_ms": 5000}
        self.emit_items(t, [(0, "ChangeContent", self.change("vod")),
                            (1200, "FirstFrame", self.first_frame(1200)),
                            (60000, "TrickMode", {"mode": "PAUSE", "rate": 0, "pos": 58000}),
                            (90000, "TrickMode", {"mode": "PLAY", "rate": 1, "pos": 58000}),
                            (120000, "DisplayDrop", dict(dd)),
                            (150000, "DisplayDrop", dict(dd), False, True),
                            (180000, "DisplayDrop", dict(dd), False, True),
                            (210000, "DisplayDrop", dict(dd)),
                            (240000, "TrickMode", {"mode": "FF", "rate": 8, "pos": 178000},
                             False, True),
                            (250000, "TrickMode", {"mode": "PLAY", "rate": 1, "pos": 258000})])
        return t + 6 * _MIN

    def s_standby_mid(self, t: int) -> int:
        cc = self.change("vod")
        self.emit_items(t, [(0, "ChangeContent", cc),
                            (1400, "FirstFrame", self.first_frame(1400)),
                            (60000, "TrickMode", {"mode": "FF", "rate": 8, "pos": 60000}),
                            (75000, "TrickMode", {"mode": "PLAY", "rate": 1, "pos": 180000}),
                            (150000, "BlackScreen", {"state": "start", "reason": "signal_loss"}),
                            (153000, "BlackScreen", {"state": "end", "dur_ms": 2990})])
        t = self.standby(t + 6 * _MIN, 8 * _MIN)
        return self.resume(t, cc["cid"], "vod")

    def resume(self, t: int, cid: str, src: str) -> int:
        """The box comes back to the same content: a short clean session."""
        self.emit_items(t, [(0, "ChangeContent", self.change(src, cid)),
                            (800, "FirstFrame", self.first_frame(800))])
        return t + 3 * _MIN

    def s_spans_files(self, t: int) -> int:
        self.forced.append(t + 12 * _MIN)
        self.emit_items(t, [(0, "ChangeContent", self.change("live")),
                            (700, "FirstFrame", self.first_frame(700)),
                            (5 * _MIN, "VideoFreeze", {"state": "start", "pos": 1000}),
                            (5 * _MIN + 2500, "VideoFreeze", {"state": "end", "dur_ms": 2480}),
                            (7 * _MIN, "ResolutionChange", {"from": "1920x1080", "to": "1280x720"}),
                            (9 * _MIN, "HdcpStatus", {"ok": True, "version": "2.2"}),
                            (15 * _MIN, "ResolutionChange", {"from": "1280x720",
                                                             "to": "1920x1080"}),
                            (18 * _MIN, "DisplayDrop", {"dropped": 4, "window_ms": 1000})])
        return t + 24 * _MIN

    def s_silent_gap(self, t: int) -> int:
        cc = self.change("live")
        self.emit_items(t, [(0, "ChangeContent", cc),
                            (1100, "FirstFrame", self.first_frame(1100)),
                            (2 * _MIN, "BufferingStart", {}),
                            (2 * _MIN + 2100, "BufferingEnd", {"dur_ms": 2100}),
                            (5 * _MIN, "DisplayDrop", {"dropped": 6, "window_ms": 1000})])
        return self.resume(t + 45 * _MIN, cc["cid"], "live")  # 40 silent minutes, re-tune

    def s_coverage(self, t: int) -> int:
        self.emit_items(t, [(0, "ChangeContent", self.change("live")),
                            (950, "FirstFrame", self.first_frame(950)),
                            (2 * _MIN, "PlaybackError", {"code": 6006, "fatal": False,
                                                         "msg": "audio underrun"})]
                        + [(4 * _MIN + off, *rest) for off, *rest in self.incident("hdmi")[1]]
                        + [(6 * _MIN, "ResolutionChange", {"from": "1920x1080",
                                                           "to": "3840x2160"})])
        return t + 8 * _MIN


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
    data = (json.dumps(fields, separators=(",", ":"), ensure_ascii=False) if as_json
            else " ".join("%s=%s" % (k, _kv(v)) for k, v in fields.items()))
    name = spell(ev.etype, spelling)
    if dialect == "legacy":
        return "[%s] %s: %s %s" % (cat, func, name, data)
    return "%s|%s|%s|%s" % (cat, func, name, data)


def _var_level(ev: VarEvent) -> str:
    if ev.etype == "PlaybackError":
        return "E" if ev.data.get("fatal") else "W"
    return "W" if ev.etype in ("BlackScreen", "VideoFreeze", "DisplayDrop") else "I"


def _render_specials(plan: _Planner, header: _Header,
                     seed: int) -> list[tuple[int, str, VarEvent | None]]:
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
        out.append((ev.ts_ms, header.stamp(ev.ts_ms, frac) +
                    header.body(proc, r.choice(proc.tids), _var_level(ev), "VAR", msg), ev))
    out += [(ts, text, None) for ts, text in plan.kernel if ts < plan.end_ms]
    out.sort(key=lambda x: x[0])
    return out


# ---------------------------------------------------------------------------------- writer

class _DeviceWriter:
    """Streams one device's lines into rotated gzip files with the overlap between them."""

    def __init__(self, out_dir: Path, rxid: str, header: _Header, dev: _Device,
                 spec: FleetSpec, forced: list[int], progress):
        self.dir = out_dir / rxid
        self.dir.mkdir(parents=True, exist_ok=True)
        self.header, self.dev, self.progress = header, dev, progress
        self.limit = max(1, int(spec.rotate_mb * 1_000_000))
        self.overlap = max(0, int(spec.overlap_lines))
        self.min_new = self.overlap + 1
        self.forced = sorted(forced)
        self.files: list[Path] = []
        self.lines = self.bytes = 0
        self._gz = self._raw = None
        self._cur_bytes = self._cur_new = 0
        self._last_ts = 0
        self._tail: list[str] = []
        self._tail_ts: list[int] = []

    def _markers(self, first_ts: int) -> list[str]:
        out = []
        if self.dev.dumpstate:
            when = self.header.local_dt(first_ts).strftime("%Y-%m-%d %H:%M:%S")
            out.append("== dumpstate: " + when)
            out.append("------ SYSTEM LOG (logcat -v %s -d *:v) ------" % self.dev.variant)
        return out + [MARKER_MAIN]

    def _open(self, first_ts: int) -> None:
        first_ts = self._tail_ts[0] if self._tail else first_ts
        t = first_ts
        while True:
            name = "logcat_%s.log.gz" % self.header.local_dt(t).strftime("%Y%m%dT%H%M%S")
            if all(p.name != name for p in self.files):
                break
            t += 1000
        path = self.dir / name
        self._raw = open(path, "wb")
        self._gz = _gzip.GzipFile(filename="", mode="wb", compresslevel=1, fileobj=self._raw,
                                  mtime=first_ts // 1000)
        self.files.append(path)
        self._cur_bytes = self._cur_new = 0
        head = self._markers(first_ts) + self._tail
        self._write(head)

    def _write(self, lines: list[str], data: bytes | None = None) -> None:
        if not lines:
            return
        if data is None:
            data = ("\n".join(lines) + "\n").encode("utf-8")
        self._gz.write(data)
        n = len(data)
        self._cur_bytes += n
        self.bytes += n
        self.lines += len(lines)
        if self.progress:
            self.progress(n)

    def _close(self) -> None:
        if self._gz is not None:
            self._gz.close()
            self._raw.close()
            os.utime(self.files[-1], (self._last_ts / 1000, self._last_ts / 1000))
            self._gz = self._raw = None

    def feed(self, lines: list[str], ts: np.ndarray, sp_pos: list[int],
             sp_ev: list[VarEvent | None]) -> None:
        """Write one chunk (time-ordered); rotate on size or at a forced time inside it."""
        i, n = 0, len(lines)
        while i < n:
            if self._gz is None:
                self._open(int(ts[i]))
            j, rotate, forced_hit = n, False, False
            while self.forced and self.forced[0] <= ts[n - 1]:
                k = int(np.searchsorted(ts, self.forced[0], "left"))
                if k > i:  # rotate right before the first line at/after the forced time
                    j, rotate, forced_hit = k, True, True
                    break
                self.forced.pop(0)  # due now: rotate unless this file holds only its overlap
                if self._cur_new:
                    j, rotate = i, True
                    break
            data = ("\n".join(lines[i:j]) + "\n").encode("utf-8") if j > i else b""
            budget = self.limit - self._cur_bytes
            if len(data) > budget:
                sizes = np.fromiter((len(x.encode("utf-8")) + 1 for x in lines[i:j]), np.int64,
                                    j - i)
                fit = int(np.searchsorted(np.cumsum(sizes), budget, "right"))
                fit = max(fit, self.min_new - self._cur_new, 0)
                if fit < j - i:
                    j, rotate, forced_hit = i + fit, True, False
                    data = ("\n".join(lines[i:j]) + "\n").encode("utf-8") if j > i else b""
            if forced_hit:
                self.forced.pop(0)
            if j > i:
                self._write(lines[i:j], data)
                self._cur_new += j - i
                self._last_ts = int(ts[j - 1])
                self._update_tail(lines, ts, i, j)
                fidx = len(self.files) - 1
                for p, ev in zip(sp_pos, sp_ev):
                    if i <= p < j and ev is not None and ev.file_index is None:
                        ev.file_index = fidx
            if rotate:
                self._close()
            i = j

    def _update_tail(self, lines, ts, i, j) -> None:
        n = self.overlap
        if n == 0:
            return
        if j - i >= n:
            self._tail, self._tail_ts = lines[j - n:j], ts[j - n:j].tolist()
        else:
            self._tail = (self._tail + lines[i:j])[-n:]
            self._tail_ts = (self._tail_ts + ts[i:j].tolist())[-n:]

    def close(self) -> None:
        self._close()


def _chunks(plan: _Planner, header: _Header, spec: FleetSpec, specials: list,
            end_ms: int) -> Iterator[tuple[list[str], np.ndarray, list[int], list]]:
    """Noise lines merged with the special lines, window by window, in time order."""
    npm = max(0, int(spec.noise_lines_per_minute))
    chunk_ms = min(10, max(1, -(-4096 // max(npm, 1)))) * _MIN
    rng = np.random.default_rng([spec.seed, plan.dev.index, 7])
    quiet = [(plan.dev.start_ms, plan.boots[0].boot_ms + 6000)] + plan.quiet
    frac_pool = None
    if header.frac:
        frac_pool = ["%0*d" % (header.frac, x) for x in rng.integers(0, 10 ** header.frac, 4096)]
    sp_ts = np.fromiter((s[0] for s in specials), np.int64, len(specials))
    edges = sorted({b.boot_ms for b in plan.boots} | {plan.dev.start_ms})
    for bi, b0 in enumerate(edges):
        b1 = edges[bi + 1] if bi + 1 < len(edges) else end_ms
        boot = max((bt for bt in plan.boots if bt.boot_ms <= b0), key=lambda x: x.boot_ms)
        pool = _noise_pool(boot.procs, header,
                           random.Random(f"{spec.seed}:pool:{plan.dev.index}:{bi}"))
        for w0 in range(b0, b1, chunk_ms):
            w1 = min(w0 + chunk_ms, b1)
            yield _chunk(w0, w1, npm, rng, header, pool, frac_pool, quiet, specials, sp_ts)


def _chunk(w0, w1, npm, rng, header, pool, frac_pool, quiet, specials, sp_ts):
    width = w1 - w0
    n = int(round(npm * width / _MIN))
    if n <= width:  # strictly increasing milliseconds: no two noise lines are ever equal
        offs = np.sort(rng.integers(0, width - n + 1, n)) + np.arange(n)
    else:
        offs = np.sort(rng.integers(0, width, n))
    ts = w0 + offs
    for a, b in quiet:
        if a < w1 and b > w0:
            ts = ts[(ts < a) | (ts >= b)]
    lines: list[str] = []
    if len(ts):
        secs = ts // 1000
        s0 = int(secs[0])
        pre, post, posts = header.seconds(s0, int(secs[-1]) - s0 + 1)
        si = (secs - s0).tolist()
        ms = (ts % 1000).tolist()
        bi = rng.integers(0, len(pool), len(ts)).tolist()
        if frac_pool is not None:
            fi = rng.integers(0, len(frac_pool), len(ts)).tolist()
            lines = [pre[s] + _MS3[m] + frac_pool[f] + pool[b]
                     for s, m, f, b in zip(si, ms, fi, bi)]
        elif posts is None:
            msp = _ms_post(post)
            lines = [pre[s] + msp[m] + pool[b] for s, m, b in zip(si, ms, bi)]
        else:
            lines = [pre[s] + _MS3[m] + posts[s] + pool[b] for s, m, b in zip(si, ms, bi)]
    lo, hi = np.searchsorted(sp_ts, [w0, w1], "left")
    if hi > lo:
        pos = np.searchsorted(ts, sp_ts[lo:hi], "right")
        for k in range(hi - 1, lo - 1, -1):  # from the back: equal positions keep their order
            lines.insert(int(pos[k - lo]), specials[k][1])
        ts = np.insert(ts, pos, sp_ts[lo:hi])
        sp_pos = (pos + np.arange(hi - lo)).tolist()
        sp_ev = [specials[k][2] for k in range(lo, hi)]
    else:
        sp_pos, sp_ev = [], []
    return lines, ts, sp_pos, sp_ev


@lru_cache(maxsize=16)
def _ms_post(post: str) -> tuple[str, ...]:
    return tuple(m + post for m in _MS3)


# ----------------------------------------------------------------------------------- truth

def _as_int(v, default: int = 0) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def _as_bool(v) -> bool:
    return v if isinstance(v, bool) else str(v).strip().lower() in ("true", "1", "yes")


def truth_sessions(events: Iterable[VarEvent], gap_s: float = 1800,
                   rxid: str | None = None) -> list[dict]:
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
    m = dict(ttff_ms=None, display_drop_count=0, dropped_frames=0, trick_mode_count=0,
             hdmi_event_count=0, hdmi_disconnects=0, standby_count=0, error_count=0,
             fatal_error=False, seq_gaps=0)
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
                t, str(d.get("state", "")).lower())
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
    edges += {"gap": ["silent_gap"], "standby": ["standby_mid_playback"],
              "end": ["log_end"]}.get(reason, [])
    boot = boot or {}
    return {
        "rxid": None, "session_index": 0,
        "content_id": first.data.get("cid") if content else None,
        "source": first.data.get("src") if content else None,
        "start_ts": iso_ms(first.ts_ms), "end_ts": iso_ms(end_ts),
        "duration_s": round((end_ts - first.ts_ms) / 1000, 3),
        "ttff_ms": m["ttff_ms"],
        "black_screen_count": cnt["BlackScreen"], "black_screen_ms": dur["BlackScreen"],
        "video_freeze_count": cnt["VideoFreeze"], "video_freeze_ms": dur["VideoFreeze"],
        "display_drop_count": m["display_drop_count"], "dropped_frames": m["dropped_frames"],
        "buffering_count": cnt["Buffering"], "rebuffer_ms": dur["Buffering"],
        "trick_mode_count": m["trick_mode_count"], "hdmi_event_count": m["hdmi_event_count"],
        "hdmi_disconnects": m["hdmi_disconnects"], "standby_count": m["standby_count"],
        "error_count": m["error_count"], "fatal_error": m["fatal_error"],
        "video_start_failure": content and not has_ff and m["fatal_error"],
        "seq_gaps": m["seq_gaps"], "event_count": len(evs),
        "model": boot.get("model"), "fw": boot.get("fw"), "app": boot.get("app"),
        "anomalous": False, "anomaly_kind": None, "edge_cases": edges,
        "_first": first, "_last": evs[-1], "_end_ms": end_ts,
    }


def _annotate(sessions: list[dict], header: _Header) -> None:
    """Add what needs more than the events: anomaly label, file span, local new year."""
    for s in sessions:
        first, last, end_ms = s.pop("_first"), s.pop("_last"), s.pop("_end_ms")
        s["anomalous"] = first.anomaly is not None
        s["anomaly_kind"] = first.anomaly
        if (first.file_index is not None and last.file_index is not None
                and last.file_index > first.file_index):
            s["edge_cases"].append("spans_files")
        if header.local_dt(first.ts_ms).year != header.local_dt(end_ms).year:
            s["edge_cases"].append("new_year")


# ------------------------------------------------------------------------------ the fleet

_MODELS = (("DIW387", "RTV-3.2.%d", "5.18.%d"), ("UIW4020", "RTV-4.0.%d", "6.2.%d"),
           ("SEI800 Pro", "SEI-11.4.%d", "6.1.%d"), ("DCIW303", "RTV-2.9.%d", "5.4.%d"))


def _devices(spec: FleetSpec, start_ms: int) -> list[_Device]:
    """The fleet's devices: ids, header variants (all 10 in any 10), dialects, quirks."""
    r = random.Random(f"{spec.seed}:fleet")
    others = [v for v in HEADER_VARIANTS if v != "threadtime"]
    devices, ids, block = [], set(), []
    for i in range(spec.devices):
        if i % 18 == 0:  # blocks of 18: threadtime first, the 9 others, then 8 more threadtime
            r.shuffle(others)
            block = ["threadtime"] + others + ["threadtime"] * 8
        rxid = "R%010d" % r.randrange(10 ** 10)
        while rxid in ids:
            rxid = "R%010d" % r.randrange(10 ** 10)
        ids.add(rxid)
        dialect = ("current", "legacy")[i] if i < 2 else r.choices(VAR_DIALECTS, (6, 4))[0]
        spelling = "upper" if dialect == "legacy" else r.choices(("camel", "kebab"), (85, 15))[0]
        model, fw, app = r.choice(_MODELS)
        devices.append(_Device(
            index=i, rxid=rxid, variant=block[i % 18], dialect=dialect, spelling=spelling,
            kernel_style=r.choice(("plain", "level", "amlogic")),
            dumpstate=i == 2 or r.random() < 0.25, model=model, fw=fw % r.randint(0, 30),
            app=app % r.randint(0, 20),
            start_ms=start_ms + (0 if i == 0 else r.randint(0, 120) * 1000)))
    return devices


def generate_fleet(out_dir: str | Path, spec: FleetSpec,
                   progress: Callable[[int], None] | None = None) -> FleetResult:
    """Write the fleet's logs and OUT/ground_truth.json; deterministic for a spec.

    Devices are written one after the other, each streamed chunk by chunk (memory stays flat).
    `progress(n)` gets the uncompressed bytes of every write.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start_ms = int(_start_utc(spec.start).timestamp() * 1000)
    end_ms = start_ms + int(spec.hours * 3_600_000)
    counter = [0]
    dev_rows, sessions, files = [], [], []
    total_lines = total_bytes = var_events = 0
    for dev in _devices(spec, start_ms):
        header = _Header(dev.variant, spec.tz)
        plan = _Planner(dev, spec, end_ms, counter).run()
        specials = _render_specials(plan, header, spec.seed)
        writer = _DeviceWriter(out, dev.rxid, header, dev, spec, plan.forced, progress)
        for lines, ts, sp_pos, sp_ev in _chunks(plan, header, spec, specials, end_ms):
            writer.feed(lines, ts, sp_pos, sp_ev)
        writer.close()
        dev_sessions = truth_sessions(plan.events, rxid=dev.rxid)
        _annotate(dev_sessions, header)
        sessions += dev_sessions
        written = sum(not e.dropped for e in plan.events)
        last_boot = plan.boots[-1]
        dev_rows.append({
            "rxid": dev.rxid, "model": last_boot.model, "fw": last_boot.fw, "app": last_boot.app,
            "header_variant": dev.variant, "var_dialect": dev.dialect,
            "files": [p.relative_to(out).as_posix() for p in writer.files],
            "lines": writer.lines, "index": dev.index, "spelling": dev.spelling,
            "kernel_style": dev.kernel_style, "dumpstate": dev.dumpstate,
            "boots": len(plan.boots), "var_events": written})
        files += writer.files
        total_lines += writer.lines
        total_bytes += writer.bytes
        var_events += written
    truth = {"spec": spec.to_json(), "devices": dev_rows, "sessions": sessions,
             "totals": {"files": len(files), "lines": total_lines, "var_events": var_events,
                        "bytes_uncompressed": total_bytes}}
    truth_path = out / "ground_truth.json"
    truth_path.write_text(json.dumps(truth, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return FleetResult(out, files, total_bytes, total_lines, truth_path)
