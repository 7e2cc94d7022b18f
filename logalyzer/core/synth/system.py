"""System-side faults behind playback trouble: ANR bursts, OOM kills, HDCP kernel errors.

A mixin of :class:`.timeline._Planner`, opt-in: only when ``FleetSpec.system_faults > 0``
does an anomalous session get a system-side cause (with that probability, the kind rotating
per device over `SYSTEM_FAULT_KINDS`), so every fleet of the default spec stays byte-identical.
Such a session is labelled with the fault's kind in ``ground_truth.json`` and carries:

- ``anr_burst``: the player's main thread stalls: 3-6 short video freezes, each followed
  5 s later by 2-4 ``ActivityManager: ANR in com.example.stb ...`` lines and their reason.
- ``oom_kill``: the low-memory killer kills the player 3-6 times: kernel ``lowmemorykiller:
  Killing 'com.example.stb' ...`` (the same template as the everyday background kills, at a far
  higher rate), ``ActivityManager: Process com.example.stb ... has died``, and each time a
  non-fatal playback error and a rebuffering.
- ``hdcp_kernel``: the HDMI transmitter's HDCP authentication keeps failing: 3-6 short black
  screens, each with 2-4 kernel ``hdmitx: hdcp22: auth fail`` lines and a re-authentication.

The playback side of each is deliberately mild (a handful of incidents, within the range of a
bad but ordinary session): the system lines are what gives them away.
"""

from __future__ import annotations

from .spec import _MIN, SYSTEM_FAULT_KINDS

PLAYER = "com.example.stb"


class _SystemFaults:
    """System-side anomalous sessions of the planner (see the module)."""

    def system_fault(self) -> str | None:
        """The system kind for an anomalous session, or None (no draw at all when off)."""
        p = getattr(self.spec, "system_faults", 0.0) or 0.0
        if p <= 0 or self.r.random() >= p:
            return None
        n = getattr(self, "_system_n", 0)
        self._system_n = n + 1
        return SYSTEM_FAULT_KINDS[(n + self.dev.index) % len(SYSTEM_FAULT_KINDS)]

    def syslog(self, ts: int, proc: str, level: str, tag: str, msg: str) -> None:
        """A logcat line of process ``proc`` (a `_PROC_TABLE` key) at ``ts``."""
        if not hasattr(self, "system_lines"):
            self.system_lines = []
        self.system_lines.append((int(ts), proc, level, tag, msg))

    def system_items(self, kind: str, t0: int, ttff: int) -> tuple[int, list]:
        """Duration and VAR items (offsets from ``t0``) of one session with a system fault;
        its system and kernel lines are logged as a side effect."""
        r = self.r
        items = [(ttff, "FirstFrame", self.first_frame(ttff))]
        dur = r.randint(8 * _MIN, 20 * _MIN)
        n = r.randint(3, 6)
        gap = (dur - ttff - 60_000) // n
        for k in range(n):
            at = ttff + 30_000 + k * gap + r.randint(0, max(1, gap - 30_000))
            if kind == "anr_burst":
                d = r.randint(2000, 6000)
                items.append((at, "VideoFreeze", {"dur_ms": d, "pos": r.randint(0, 3_600_000)}))
                for j in range(r.randint(2, 4)):
                    ts = t0 + at + 5000 + j * r.randint(200, 3000)
                    self.syslog(
                        ts,
                        "system",
                        "E",
                        "ActivityManager",
                        f"ANR in {PLAYER} ({PLAYER}/.PlayerActivity)",
                    )
                    self.syslog(
                        ts + 1,
                        "system",
                        "E",
                        "ActivityManager",
                        "Reason: Input dispatching timed out (Waiting to send non-key event)",
                    )
            elif kind == "oom_kill":
                pid = r.randint(1500, 4500)
                self.klog(t0 + at, f"lowmemorykiller: Killing '{PLAYER}' ({pid}), adj 0,")
                self.syslog(
                    t0 + at + 40,
                    "system",
                    "I",
                    "ActivityManager",
                    f"Process {PLAYER} (pid {pid}) has died: fore TOP",
                )
                d = r.randint(1500, 5000)
                items += [
                    (at + 60, "PlaybackError", {"code": 100, "fatal": False, "msg": "server died"}),
                    (at + 80, "BufferingStart", {}),
                    (at + 80 + d, "BufferingEnd", {"dur_ms": d}),
                ]
            elif kind == "hdcp_kernel":
                d = r.randint(800, 3000)
                for j in range(r.randint(2, 4)):
                    err = r.choice((-5, -110, -121))
                    self.klog(t0 + at + j * 150, f"hdmitx: hdcp22: auth fail, ret {err}")
                self.klog(t0 + at + d, "hdmitx: hdcp22: reauth start")
                items += [
                    (at + 20, "BlackScreen", {"state": "start", "reason": "hdcp"}),
                    (at + 20 + d, "BlackScreen", {"state": "end", "dur_ms": d}),
                ]
            else:
                raise ValueError(kind)
        return dur, items + self.abr(ttff + 300, dur)
