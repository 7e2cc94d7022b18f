"""Session content the planner draws: channels, incidents, ABR switches, anomalies.

A mixin of :class:`.timeline._Planner` (it uses the planner's RNG, spec and `emit_items`).
Anomalous sessions (`ANOMALY_KINDS`, the kind rotating fleet-wide so all occur) are drawn
with probability `anomaly_rate` per session, except in the fleet's clean reference window
(`FleetSpec.reference_clean_hours`), where every session is ordinary.
"""

from __future__ import annotations

import random

from .cohorts import cohort_duration, cohort_rate
from .noise import _APPS
from .regression import _regressed
from .spec import _MIN, ANOMALY_KINDS


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
_NORMAL_RATES = {
    "black": 0.25,
    "black_pair": 0.15,
    "freeze": 0.15,
    "freeze_pair": 0.1,
    "drop": 1.2,
    "buffer": 0.8,
    "trick": 3.0,
    "hdmi": 0.05,
    "error": 0.12,
    "hdcp": 0.1,
}
_ERRORS = (
    (1004, "network timeout"),
    (-110, "segment 404"),
    (2001, "decoder stalled"),
    (4003, "DRM license expired"),
    (6006, "audio underrun"),
    (1002, "MEDIA_ERROR_IO"),
)


class _Playback:
    """Random sessions of the planner: normal playback with incidents, or an anomaly."""

    def change(self, src: str | None = None, cid: str | None = None) -> dict:
        r = self.r
        src = src or r.choices(("live", "vod", "app"), (6, 3, 1))[0]
        if cid is None:
            cid = {
                "live": lambda: r.choice(self.channels),
                "vod": lambda: "vod-%06d" % r.randint(0, 999999),
                "app": lambda: r.choice(_APPS[:3]),
            }[src]()
        data = {"cid": cid, "src": src}
        if self.cid is not None:
            data["prev_cid"] = self.cid
        self.cid = cid
        return data

    def first_frame(self, ttff: int) -> dict:
        return {
            "ttff_ms": ttff,
            "res": self.r.choice(("1920x1080", "3840x2160", "1280x720")),
            "codec": self.r.choice(("avc", "hevc", "av1", "mpeg2")),
        }

    def incident(self, name: str, big: bool = False) -> tuple[int, list]:
        """One incident as (length, [(offset, etype, data, droppable)]); `big` = storm size."""
        r = self.r
        if name in ("black", "freeze", "black_pair", "freeze_pair"):
            etype = "BlackScreen" if name.startswith("black") else "VideoFreeze"
            d = r.randint(800, 12000) if big else r.randint(150, 3000)
            extra = (
                {"reason": r.choice(("signal_loss", "decoder_reset", "hdmi_resync"))}
                if etype == "BlackScreen"
                else {"pos": r.randint(0, 3_600_000)}
            )
            if not name.endswith("pair"):
                return d, [(d, etype, {"dur_ms": d, **extra}, False)]
            end = {"state": "end"}
            if r.random() < 0.7:
                end["dur_ms"] = d - r.randint(0, 40)
            return d, [(0, etype, {"state": "start", **extra}, False), (d, etype, end, False)]
        if name == "drop":
            dropped = r.randint(25, 600) if big else r.randint(1, 8)
            return 10, [
                (
                    0,
                    "DisplayDrop",
                    {"dropped": dropped, "window_ms": r.choice((1000, 5000, 10000))},
                    True,
                )
            ]
        if name == "buffer":
            d = r.randint(2000, 20000) if big else r.randint(250, 3500)
            end = {"dur_ms": d - r.randint(0, 30)} if r.random() < 0.8 else {}
            return d, [(0, "BufferingStart", {}, False), (d, "BufferingEnd", end, False)]
        if name == "trick":
            mode = r.choice(("PAUSE", "FF", "REW", "SEEK"))
            pos = r.randint(0, 5_400_000)
            if mode == "SEEK":
                return 10, [(0, "TrickMode", {"mode": "SEEK", "rate": 1, "pos": pos}, True)]
            d = r.randint(5000, 180000) if mode == "PAUSE" else r.randint(3000, 30000)
            rate = 0 if mode == "PAUSE" else r.choice((2, 4, 8, 16, 32))
            rate = -rate if mode == "REW" else rate
            return d, [
                (0, "TrickMode", {"mode": mode, "rate": rate, "pos": pos}, True),
                (d, "TrickMode", {"mode": "PLAY", "rate": 1, "pos": pos + d}, True),
            ]
        if name == "hdmi":
            d = r.randint(1500, 8000)
            return d + 2500, [
                (0, "HdmiHotplug", {"port": 1, "connected": False}, False),
                (d, "HdmiHotplug", {"port": 1, "connected": True}, False),
                (d + r.randint(800, 2400), "HdcpStatus", {"ok": True, "version": "2.2"}, False),
            ]
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
            rate *= _regressed(self, name) * cohort_rate(self, name)
            incs += [self.incident(name) for _ in range(_poisson(self.r, rate * hours))]
        return self.place(lo, dur - 500, incs) + self.abr(lo, dur)

    def ordinary_items(self, ttff: int, src: str) -> tuple[int, list]:
        """Duration and events (offsets from the ChangeContent) of one normal session: a zap of
        a few seconds, or minutes to an hour of playback with its incidents."""
        r = self.r
        dur = r.choice(
            (
                r.randint(1500, 12000),
                r.randint(_MIN, 15 * _MIN),
                r.randint(_MIN, 15 * _MIN),
                r.randint(15 * _MIN, 55 * _MIN),
            )
        )
        if dur > 12000:  # zaps stay zaps; viewing lasts as the box's cohorts say (.cohorts)
            dur = int(dur * cohort_duration(self))
        items = []
        if dur > ttff + 150 or r.random() < 0.2:
            ttff = min(ttff, dur - 100)
            items.append((ttff, "FirstFrame", self.first_frame(ttff)))
        if dur > 20000:
            items += self.normal_items(dur, src, ttff + 300)
        return dur, items

    def in_clean_reference(self, t: int) -> bool:
        """Whether a session starting at ``t`` is in the fleet's clean reference window
        (``FleetSpec.reference_clean_hours``): there, every session is ordinary."""
        until = self.spec.reference_until()
        return until is not None and t < until.timestamp() * 1000

    def random_session(self, t: int) -> int:
        r = self.r
        self.session_ms = t  # for a regression that holds on some days (.regression)
        cc = self.change()
        ttff = r.randint(350, 2200)
        # always drawn, so a fleet without a clean reference window stays byte-identical
        anomalous = r.random() < self.spec.anomaly_rate and not self.in_clean_reference(t)
        kind = self.system_fault() if anomalous else None
        sequence = self.sequence_fault(t) if anomalous and kind is None else None
        if kind is not None:
            dur, items = self.system_items(kind, t, ttff)
        elif sequence is not None:
            kind = sequence
            dur, items = self.sequence_items(kind, ttff, cc["src"])
        elif anomalous:
            kind = ANOMALY_KINDS[(self.counter[0] + self.spec.seed) % len(ANOMALY_KINDS)]
            self.counter[0] += 1
            dur, items = self.anomaly_items(kind, ttff, cc["src"])
        else:
            kind = None
            dur, items = self.ordinary_items(ttff, cc["src"])
        self.emit_items(t, [(0, "ChangeContent", cc)] + items, anomaly=kind)
        t += dur
        if dur > 20000 and r.random() < 0.04:
            t = self.standby(
                t,
                r.randint(3 * _MIN, 120 * _MIN),
                r.choice(("power_key", "sleep_timer", "hdmi_cec")),
            )
        return t

    def anomaly_items(self, kind: str, ttff: int, src: str) -> tuple[int, list]:
        """Duration and events (offsets from the ChangeContent) of one anomalous session."""
        r, ff = self.r, [(ttff, "FirstFrame", self.first_frame(ttff))]
        lo = ttff + 300
        if kind == "freeze_storm":
            dur = r.randint(8 * _MIN, 20 * _MIN)
            incs = [
                self.incident(r.choice(("freeze", "freeze_pair")), True)
                for _ in range(r.randint(10, 25))
            ]
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
            ff = [
                (80, "BlackScreen", {"state": "start", "reason": "no_signal"}),
                (end, "BlackScreen", {"state": "end", "dur_ms": end - 80}),
                (ttff, "FirstFrame", self.first_frame(ttff)),
            ]
            return dur, ff + self.normal_items(dur, src, ttff + 300)
        elif kind == "hdmi_flapping":
            dur = r.randint(3 * _MIN, 10 * _MIN)
            its, t = [], 0
            for _ in range(r.randint(5, 12)):
                up = t + r.randint(500, 4000)
                its += [
                    (t, "HdmiHotplug", {"port": 1, "connected": False}, False),
                    (up, "HdmiHotplug", {"port": 1, "connected": True}, False),
                    (up + 300, "HdcpStatus", {"ok": r.random() > 0.4, "version": "2.2"}, False),
                ]
                t = up + r.randint(1000, 15000)
            incs = [(t, its)]
        elif kind == "hdcp_failure":
            dur = r.randint(2 * _MIN, 6 * _MIN)
            incs = []
            for _ in range(r.randint(3, 6)):
                d = r.randint(5000, 30000)
                incs.append(
                    (
                        d + 1000,
                        [
                            (0, "HdcpStatus", {"ok": False, "version": "2.2"}, False),
                            (100, "BlackScreen", {"state": "start", "reason": "hdcp"}, False),
                            (d, "BlackScreen", {"state": "end", "dur_ms": d - 100}, False),
                            (d + 500, "HdcpStatus", {"ok": True, "version": "2.2"}, False),
                        ],
                    )
                )
        elif kind == "error_loop":
            code, msg = r.choice(_ERRORS)
            items, t = list(ff), lo
            for _ in range(r.randint(4, 10)):
                t += r.randint(3000, 15000)
                items += [
                    (t, "BufferingStart", {}),
                    (t + 900, "BufferingEnd", {"dur_ms": 900}),
                    (t + 1000, "PlaybackError", {"code": code, "fatal": False, "msg": msg}),
                ]
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
            items += [
                (t - 5, "BufferingEnd", {}),
                (t, "PlaybackError", {"code": code, "fatal": True, "msg": msg}),
            ]
            return t + r.randint(2000, 10000), items
        else:
            raise ValueError(kind)
        dur = max(dur, lo + sum(n for n, _ in incs) + 30000)  # the storm must fit
        return dur, ff + self.place(lo, dur - 500, incs) + self.abr(lo, dur)
