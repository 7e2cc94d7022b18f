"""The fleet: its devices (ids, header variants, dialects, quirks) and `generate_fleet`."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from .noise import _chunks
from .regression import _fw_patch
from .render import _Header, _render_specials
from .spec import HEADER_VARIANTS, VAR_DIALECTS, FleetResult, FleetSpec, _start_utc
from .timeline import _Device, _Planner
from .truth import _annotate, _device_row, _write_truth, truth_sessions
from .writer import _DeviceWriter

_MODELS = (
    ("DIW387", "RTV-3.2.%d", "5.18.%d"),
    ("UIW4020", "RTV-4.0.%d", "6.2.%d"),
    ("SEI800 Pro", "SEI-11.4.%d", "6.1.%d"),
    ("DCIW303", "RTV-2.9.%d", "5.4.%d"),
)


def _devices(spec: FleetSpec, start_ms: int) -> list[_Device]:
    """The fleet's devices: ids, header variants (all 10 in any 10), dialects, quirks."""
    r = random.Random(f"{spec.seed}:fleet")
    others = [v for v in HEADER_VARIANTS if v != "threadtime"]
    devices, ids, block = [], set(), []
    for i in range(spec.devices):
        if i % 18 == 0:  # blocks of 18: threadtime first, the 9 others, then 8 more threadtime
            r.shuffle(others)
            block = ["threadtime"] + others + ["threadtime"] * 8
        rxid = "R%010d" % r.randrange(10**10)
        while rxid in ids:
            rxid = "R%010d" % r.randrange(10**10)
        ids.add(rxid)
        dialect = ("current", "legacy")[i] if i < 2 else r.choices(VAR_DIALECTS, (6, 4))[0]
        spelling = "upper" if dialect == "legacy" else r.choices(("camel", "kebab"), (85, 15))[0]
        model, fw, app = r.choice(_MODELS)
        devices.append(
            _Device(
                index=i,
                rxid=rxid,
                variant=block[i % 18],
                dialect=dialect,
                spelling=spelling,
                kernel_style=r.choice(("plain", "level", "amlogic")),
                dumpstate=i == 2 or r.random() < 0.25,
                model=model,
                fw=fw % _fw_patch(r, spec),
                app=app % r.randint(0, 20),
                start_ms=start_ms + (0 if i == 0 else r.randint(0, 120) * 1000),
            )
        )
    return devices


def firmware_boxes(spec: FleetSpec) -> dict[str, int]:
    """Boxes per firmware at the fleet's start (what a regression can name)."""
    start_ms = int(_start_utc(spec.start).timestamp() * 1000)
    out: dict[str, int] = {}
    for dev in _devices(spec, start_ms):
        out[dev.fw] = out.get(dev.fw, 0) + 1
    return dict(sorted(out.items()))


def generate_fleet(
    out_dir: str | Path, spec: FleetSpec, progress: Callable[[int], None] | None = None
) -> FleetResult:
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
        row = _device_row(out, dev, plan, writer)
        dev_rows.append(row)
        files += writer.files
        total_lines += writer.lines
        total_bytes += writer.bytes
        var_events += row["var_events"]
    truth_path = _write_truth(
        out, spec, dev_rows, sessions, len(files), total_lines, var_events, total_bytes
    )
    return FleetResult(out, files, total_bytes, total_lines, truth_path)
