"""What a box says besides VAR: processes, everyday chatter, kernel texts, the noise stream.

`_chunks` yields a device's noise lines merged with its special (VAR and kernel) lines, window
by window, in time order; noise timestamps are strictly increasing, so no two lines are equal.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from .render import _MS3
from .spec import _MIN

if TYPE_CHECKING:
    from .render import _Header
    from .spec import FleetSpec
    from .timeline import _Planner


# ----------------------------------------------------------------------- processes and noise


@dataclass
class _Proc:
    pid: int
    uid: int
    uid_name: str | None  # shown in `-v uid` when the name has <= 5 characters
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

_APPS = (
    "com.google.android.youtube.tv",
    "com.netflix.ninja",
    "com.amazon.amazonvideo.livingroom",
    "com.google.android.tvlauncher",
    "com.android.vending",
    "com.google.android.gms",
)
_TITLES = (
    "Tagesschau – 20 Uhr",
    "Fußball: Bundesliga",
    "Café del Mar",
    "News at Ten",
    "Le Journal",
    "Planète+",
)


def _noise_templates() -> list[tuple[str, str, str, int, Callable[[random.Random], str]]]:
    """(process, level, tag, weight, message maker): everyday logcat chatter of a TV box."""
    c = random.Random.choice
    i = random.Random.randint
    return [
        (
            "system",
            "I",
            "ActivityManager",
            3,
            lambda r: (
                "Start proc %d:%s/u0a%d for service "
                "%s/.Sync" % (i(r, 2000, 9000), c(r, _APPS), i(r, 40, 150), c(r, _APPS))
            ),
        ),
        (
            "system",
            "W",
            "ActivityManager",
            2,
            lambda r: (
                "getRunningAppProcesses: caller %d does "
                "not hold REAL_GET_TASKS; limiting output" % i(r, 10050, 10200)
            ),
        ),
        (
            "system",
            "I",
            "ActivityManager",
            1,
            lambda r: (
                "Killing %d:%s/u0a%d (adj %d): empty #%d"
                % (
                    i(r, 2000, 9000),
                    c(r, _APPS),
                    i(r, 40, 150),
                    c(r, (906, 915, 925)),
                    i(r, 17, 33),
                )
            ),
        ),
        (
            "system",
            "D",
            "WindowManager",
            3,
            lambda r: (
                "relayoutWindow: Window{%07x u0 %s/.Main} "
                "viewVisibility=%d" % (i(r, 0, 0xFFFFFFF), c(r, _APPS), c(r, (0, 4, 8)))
            ),
        ),
        (
            "system",
            "I",
            "WindowManager",
            1,
            lambda r: (
                "Destroying surface Surface(name=SurfaceView"
                " - com.example.stb/.PlayerActivity) called by "
                "com.android.server.wm.WindowStateAnimator"
                ".destroySurface:%d <bottom of call stack> " % i(r, 900, 2100)
            ),
        ),
        (
            "system",
            "D",
            "PowerManagerService",
            3,
            lambda r: (
                'acquire lock=%d, flags=0x1, tag="%s",'
                " name=%s, ws=null, uid=%d, pid=%d"
                % (
                    i(r, 10**7, 10**9),
                    c(r, ("View Lock", "*alarm*", "AudioMix")),
                    c(r, _APPS),
                    i(r, 1000, 10200),
                    i(r, 300, 9000),
                )
            ),
        ),
        (
            "system",
            "I",
            "InputDispatcher",
            2,
            lambda r: (
                "Delivering key to com.example.stb: "
                "action=%s, keyCode=%d"
                % (c(r, ("DOWN", "UP")), c(r, (19, 20, 21, 22, 23, 166, 167, 4)))
            ),
        ),
        (
            "system",
            "D",
            "HdmiControlService",
            1,
            lambda r: "---> <Report Power Status> src: 0, dst: 4, params: 0%d" % i(r, 0, 1),
        ),
        (
            "system",
            "I",
            "TvInputManagerService",
            1,
            lambda r: (
                "tune: inputId=com.example.stb/.Tif "
                "channelUri=content://android.media.tv/channel/%d" % i(r, 1, 400)
            ),
        ),
        (
            "system",
            "D",
            "ConnectivityService",
            1,
            lambda r: "NetworkAgentInfo [ETHERNET () - %d] validation passed" % i(r, 100, 120),
        ),
        (
            "system",
            "I",
            "chatty",
            2,
            lambda r: (
                "uid=1000(system) Binder:%d_%X expire %d lines"
                % (i(r, 380, 900), i(r, 1, 15), i(r, 1, 40))
            ),
        ),
        (
            "system",
            "D",
            "TvProvider",
            1,
            lambda r: (
                'program update: title="%s" start=%d'
                % (c(r, _TITLES), i(r, 1_700_000_000, 1_800_000_000))
            ),
        ),
        (
            "surface",
            "D",
            "SurfaceFlinger",
            2,
            lambda r: (
                "duplicate layer name: changing SurfaceView"
                " - com.example.stb/.PlayerActivity to SurfaceView#%d" % i(r, 1, 9)
            ),
        ),
        (
            "surface",
            "W",
            "BufferQueueProducer",
            1,
            lambda r: "[SurfaceView#%d] dequeueBuffer: BufferQueue has been abandoned" % i(r, 0, 9),
        ),
        (
            "media",
            "D",
            "AmlogicVideoDecoderAwesome2",
            4,
            lambda r: "decode frame pts=%d size=%d" % (i(r, 0, 10**9), i(r, 300, 90000)),
        ),
        (
            "media",
            "I",
            "C2VdecComponent",
            2,
            lambda r: (
                "onOutputBufferDone: bitstream id %d, "
                "timestamp %d" % (i(r, 0, 99999), i(r, 0, 10**9))
            ),
        ),
        (
            "audio",
            "D",
            "AudioFlinger",
            2,
            lambda r: (
                "mixer(0x%x) throttle end: throttle time(%d)"
                % (i(r, 0xE0000000, 0xEFFFFFFF), i(r, 1, 40))
            ),
        ),
        (
            "audio",
            "I",
            "audio_hw_primary",
            2,
            lambda r: (
                "out_write: out_stream(0x%x) "
                "frames=%d latency=%d"
                % (i(r, 0xE0000000, 0xEFFFFFFF), c(r, (256, 512, 1024)), i(r, 20, 90))
            ),
        ),
        (
            "player",
            "D",
            "ExoPlayerImpl",
            2,
            lambda r: (
                "Init %x [ExoPlayerLib/2.%d.%d] [sabrina, "
                "Chromecast, Google, %d]"
                % (i(r, 0, 0xFFFFFFF), i(r, 12, 19), i(r, 0, 3), i(r, 28, 33))
            ),
        ),
        (
            "player",
            "W",
            "AudioTrack",
            3,
            lambda r: (
                "getTimestamp_l(%d): device stall time "
                "corrected using current time %d" % (i(r, 1, 300), i(r, 10**11, 10**12))
            ),
        ),
        (
            "player",
            "I",
            "MediaCodec",
            3,
            lambda r: (
                "[%s] setState: %s"
                % (
                    c(
                        r,
                        (
                            "c2.amlogic.avc.decoder",
                            "c2.amlogic.hevc.decoder",
                            "OMX.amlogic.mpeg2.decoder.awesome",
                        ),
                    ),
                    c(r, ("CONFIGURED", "STARTING", "STARTED", "FLUSHING", "FLUSHED")),
                )
            ),
        ),
        (
            "player",
            "D",
            "OkHttp",
            4,
            lambda r: (
                "--> GET https://cdn%d.example.net/live/ch%03d/"
                "seg_%d.ts (%d-byte body)"
                % (i(r, 1, 9), i(r, 1, 400), i(r, 10**5, 10**6), i(r, 0, 900))
            ),
        ),
        (
            "player",
            "I",
            "PlayerStats",
            2,
            lambda r: (
                "bitrate=%d buffer_ms=%d dropped=%d"
                % (i(r, 800_000, 16_000_000), i(r, 500, 30000), i(r, 0, 3))
            ),
        ),
        (
            "player",
            "D",
            "VARMON",
            1,
            lambda r: "var queue depth=%d flushed=%d" % (i(r, 0, 50), i(r, 0, 400)),
        ),
        (
            "player",
            "I",
            "Choreographer",
            1,
            lambda r: (
                "Skipped %d frames!  The application may be "
                "doing too much work on its main thread." % i(r, 30, 120)
            ),
        ),
        ("launcher", "D", "ViewRootImpl", 1, lambda r: "ViewPostIme pointer %d" % i(r, 0, 1)),
        (
            "wifi",
            "I",
            "wpa_supplicant",
            2,
            lambda r: (
                "wlan0: CTRL-EVENT-SIGNAL-CHANGE above=1 "
                "signal=-%d noise=-%d txrate=%d" % (i(r, 30, 80), i(r, 85, 99), i(r, 6000, 866000))
            ),
        ),
        ("root", "I", "netd", 1, lambda r: "setMtu(eth0, %d): ok" % c(r, (1500, 1492))),
    ]


def _noise_pool(
    procs: dict[str, _Proc], header: _Header, r: random.Random, size: int = 2048
) -> list[str]:
    """Prebuilt line bodies for one boot; noise lines pick from them at random."""
    templates = _noise_templates()
    weights = [t[3] for t in templates]
    pool = []
    for proc_key, level, tag, _, make in r.choices(templates, weights=weights, k=size):
        proc = procs[proc_key]
        pool.append(header.body(proc, r.choice(proc.tids), level, tag, make(r)))
    return pool


_BOOT_KERNEL = (
    "Booting Linux on physical CPU 0x0",
    "Linux version 5.4.210-g1d3c (build@stb) #1 SMP PREEMPT",
    "meson_cpufreq: cpu0 freq table initialized",
    "hdmitx: attach hdmitx",
    "hdmitx: hpd: 1",
    "hdmitx: EDID parsed: 3840x2160p60hz",
    "vout: vinfo: 1080p60hz",
    "init: init first stage started!",
    "ext4: mounted filesystem with ordered data mode",
    "healthd: battery none",
    "eth0: Link is Up - 1Gbps/Full - flow control rx/tx",
)
_RUN_KERNEL = (
    "hdmitx: system: update rx hdr",
    "codec_mm: tvp alloc %d pages",
    "vdec: vdec_release %d",
    "amvdec_h264: decoder buffer level %d",
    "lowmemorykiller: Killing 'com.android.vending' (%d), adj 906,",
    "aml_dvb: ts%d: demux start",
    "avsync: tsync pcr recover %d",
)


# ------------------------------------------------------------------------- the noise stream


def _chunks(
    plan: _Planner, header: _Header, spec: FleetSpec, specials: list, end_ms: int
) -> Iterator[tuple[list[str], np.ndarray, list[int], list]]:
    """Noise lines merged with the special lines, window by window, in time order."""
    npm = max(0, int(spec.noise_lines_per_minute))
    chunk_ms = min(10, max(1, -(-4096 // max(npm, 1)))) * _MIN
    rng = np.random.default_rng([spec.seed, plan.dev.index, 7])
    quiet = [(plan.dev.start_ms, plan.boots[0].boot_ms + 6000)] + plan.quiet
    frac_pool = None
    if header.frac:
        frac_pool = ["%0*d" % (header.frac, x) for x in rng.integers(0, 10**header.frac, 4096)]
    sp_ts = np.fromiter((s[0] for s in specials), np.int64, len(specials))
    edges = sorted({b.boot_ms for b in plan.boots} | {plan.dev.start_ms})
    for bi, b0 in enumerate(edges):
        b1 = edges[bi + 1] if bi + 1 < len(edges) else end_ms
        boot = max((bt for bt in plan.boots if bt.boot_ms <= b0), key=lambda x: x.boot_ms)
        pool = _noise_pool(
            boot.procs, header, random.Random(f"{spec.seed}:pool:{plan.dev.index}:{bi}")
        )
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
            lines = [
                pre[s] + _MS3[m] + frac_pool[f] + pool[b] for s, m, f, b in zip(si, ms, fi, bi)
            ]
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
