"""A firmware regression for the fleet alerts' evaluation (``FleetSpec.regression``,
``FleetSpec.firmwares_per_model``); both off by default, and then nothing here draws a random
number or changes a rate, so every existing fleet stays byte-identical.

- ``firmwares_per_model = N``: each box draws its firmware patch from 0..N-1 instead of
  0..30 and keeps it (no updates at reboots), so a firmware is a cohort of several boxes with
  a history of its own, rather than one box whose firmware moves on every few days.
- ``regression = "FW@DAY"`` (or ``"FW@DAYxF"``): on UTC day DAY of the fleet (0 is the start's
  day), ordinary sessions of boxes on firmware FW (e.g. ``RTV-3.2.1``) have F times (default 4)
  the usual rate of video freezes. Anomalous sessions are unchanged.
"""

from __future__ import annotations

import random
import re
from datetime import timedelta

from .spec import FleetSpec, _start_utc

_RE = re.compile(r"^(?P<fw>[^@\s]+)@(?P<day>\d+)(?:x(?P<factor>\d+(?:\.\d+)?))?$")
#: the incidents a regressed firmware has more of
REGRESSED_INCIDENTS = ("freeze", "freeze_pair")


def parse_regression(text: str) -> tuple[str, int, float]:
    """'RTV-3.2.1@5x4' -> ('RTV-3.2.1', 5, 4.0); a bad text is a ValueError."""
    m = _RE.match(text.strip())
    if not m:
        raise ValueError(f"a regression is FW@DAY or FW@DAYxFACTOR, got {text!r}")
    return m["fw"], int(m["day"]), float(m["factor"] or 4.0)


def regression_window_ms(spec: FleetSpec) -> tuple[str, int, int, float] | None:
    """(firmware, day start ms, day end ms, factor) of the spec's regression, or None."""
    if not spec.regression:
        return None
    fw, day, factor = parse_regression(spec.regression)
    start = _start_utc(spec.start).replace(hour=0, minute=0, second=0, microsecond=0)
    lo = start + timedelta(days=day)
    return fw, int(lo.timestamp() * 1000), int((lo + timedelta(days=1)).timestamp() * 1000), factor


def _fw_patch(r: random.Random, spec: FleetSpec) -> int:
    """A box's firmware patch number (module docstring)."""
    n = spec.firmwares_per_model
    return r.randint(0, 30) if n is None else r.randint(0, max(n, 1) - 1)


def _regressed(planner, incident: str) -> float:
    """The factor on the normal rate of ``incident`` for the session the planner draws now."""
    spec = planner.spec
    if not spec.regression or incident not in REGRESSED_INCIDENTS:
        return 1.0
    fw, lo, hi, factor = regression_window_ms(spec)
    t = getattr(planner, "session_ms", None)
    return factor if planner.dev.fw == fw and t is not None and lo <= t < hi else 1.0


def _fw_updates(spec: FleetSpec) -> bool:
    """Whether a reboot may install a firmware update (not with pinned firmwares)."""
    return spec.firmwares_per_model is None
