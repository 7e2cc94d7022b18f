"""One device's plan: boots, standby, VAR events, kernel lines, quiet windows, rotations.

Wall-clock timestamps of a device are strictly increasing, so no two of its lines are equal
(the ingester's MD5 dedup then only removes the rotation overlap). Kernel lines come at boot
and now and then; the boot burst opens a device's first file, before any wall-clock line.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from .edge_cases import _EdgeCases
from .noise import _BOOT_KERNEL, _PROC_TABLE, _RUN_KERNEL, _Proc
from .playback import _Playback
from .regression import _fw_updates
from .sequence import _SequenceFaults
from .spec import _MIN, FleetSpec, VarEvent
from .system import _SystemFaults


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


class _Planner(_Playback, _SystemFaults, _SequenceFaults, _EdgeCases):
    """Builds one device's VAR events, kernel lines, boots, quiet windows and forced rotations.

    No I/O: the writer turns this plan into lines. Timestamps are strictly increasing, so the
    order (timestamp, seq) is unambiguous even across reboots.
    """

    def __init__(self, dev: _Device, spec: FleetSpec, end_ms: int, anomaly_counter: list[int]):
        self.dev, self.spec, self.end_ms = dev, spec, end_ms
        self.r = random.Random(f"{spec.seed}:plan:{dev.index}")
        self.counter = anomaly_counter  # shared: kinds rotate fleet-wide, all get used
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
    def emit(
        self,
        ts: float,
        etype: str,
        data: dict,
        droppable: bool = False,
        dropped: bool = False,
        anomaly: str | None = None,
    ) -> VarEvent | None:
        ts = max(int(ts), self.last_ts + 1)
        if ts >= self.end_ms:
            return None
        if etype == "ChangeContent":
            self.sid += 1
        self.last_ts, self.seq = ts, self.seq + 1
        boot = self.boots[-1].boot_ms
        ev = VarEvent(
            ts,
            etype,
            data,
            self.seq,
            self.sid,
            ts - boot,
            anomaly=anomaly,
            dropped=dropped or (droppable and self.r.random() < self.drop_p),
        )
        if etype == "HdmiHotplug":
            self.klog(
                ts - self.r.randint(5, 60),
                "hdmitx: %s" % ("plugin" if data.get("connected") else "plugout"),
            )
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
            self.emit(
                t0 + it[0],
                it[1],
                it[2],
                *it[3:],
                anomaly=anomaly if it[1] == "ChangeContent" else None,
            )

    # -- device life
    def boot(self, t: int) -> int:
        r, d = self.r, self.dev
        procs = {}
        for key, uid, uname, pkg, (lo, hi) in _PROC_TABLE:
            pid = r.randint(lo, hi)
            procs[key] = _Proc(
                pid,
                uid,
                uname,
                pkg,
                [pid] + [pid + r.randint(1, 400) for _ in range(r.randint(3, 6))],
            )
        # a reboot in standby often installs an update (not with pinned firmwares: .regression)
        if self.boots and r.random() < 0.5 and _fw_updates(self.spec):
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
        self.emit(
            self.last_ts + r.randint(100, 800),
            "ResolutionChange",
            {"from": "720x480", "to": "1920x1080"},
        )
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
            self.emit(
                self.last_ts + r.randint(800, 2000), "HdcpStatus", {"ok": True, "version": "2.2"}
            )
        self.emit(out, "StandbyExit", {"reason": r.choice(("power_key", "cec_wakeup"))})
        return self.last_ts + r.randint(1500, 4000)

    def run(self) -> _Planner:
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
