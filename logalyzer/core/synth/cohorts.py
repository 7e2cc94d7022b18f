"""Cohorts of boxes whose *ordinary* playback differs (``FleetSpec.cohorts``): the held-out
fleet shapes of the detectors' evaluation (issue 15), off by default.

An operator's fleet is not one population. A firmware may drop frames all the time without
anyone calling it a fault; a model may be used for long evenings of viewing; some boxes sit on
a poor network. A detector that learnt "the fleet's normal" from a uniform fleet must not flag
such boxes' ordinary sessions. ``cohorts = "drops:0.25,noisy:0.1"`` puts each box, with the
given probability, in each named cohort (a box may be in several):

- ``drops``: ordinary playback has 10 times the usual rate of display drops (a firmware whose
  sessions drop frames as a matter of course);
- ``noisy``: ordinary playback has 4 times the rate of every incident (black screens, freezes,
  drops, buffering, errors, HDMI: a box on a poor network or an ageing panel);
- ``long``: ordinary sessions last 3 times as long (a model bought for evenings of viewing);
- ``short``: ordinary sessions last a quarter as long (a box used for zapping).

``long:1`` or ``short:1`` makes the whole fleet's sessions long or short. Anomalous sessions
are drawn as before, except that ``black_after_change`` (ordinary playback after its black
start) plays as its box's cohorts say. Membership has its own random stream, and with the
option off nothing here draws a number or changes a rate, so every fleet stays byte-identical.
"""

from __future__ import annotations

import random

from .spec import FleetSpec

#: cohort -> (factor on incident rates {incident | "*": factor}, factor on ordinary durations)
COHORTS: dict[str, tuple[dict[str, float], float]] = {
    "drops": ({"drop": 10.0}, 1.0),
    "noisy": ({"*": 4.0}, 1.0),
    "long": ({}, 3.0),
    "short": ({}, 0.25),
}


def parse_cohorts(text: str | None) -> dict[str, float]:
    """'drops:0.25,noisy:0.1' -> {'drops': 0.25, 'noisy': 0.1}; a bad text is a ValueError."""
    out: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, _, share = part.strip().partition(":")
        if name not in COHORTS:
            raise ValueError(f"unknown cohort {name!r}; known: {', '.join(COHORTS)}")
        try:
            p = float(share) if share else 1.0
        except ValueError:
            raise ValueError(f"the share of cohort {name!r} is not a number: {share!r}") from None
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"the share of cohort {name!r} must be in [0, 1], got {p}")
        out[name] = p
    return out


def device_cohorts(spec: FleetSpec, index: int) -> frozenset[str]:
    """The cohorts of the fleet's box number ``index`` (its own random stream per box)."""
    shares = parse_cohorts(spec.cohorts)
    if not shares:
        return frozenset()
    r = random.Random(f"{spec.seed}:cohorts:{index}")
    return frozenset(name for name, p in shares.items() if r.random() < p)


def _members(planner) -> frozenset[str]:
    got = getattr(planner, "_cohorts", None)
    if got is None:
        got = planner._cohorts = device_cohorts(planner.spec, planner.dev.index)
    return got


def cohort_rate(planner, incident: str) -> float:
    """The factor on the normal rate of ``incident`` for the planner's box (1 outside cohorts)."""
    f = 1.0
    for name in _members(planner):
        rates = COHORTS[name][0]
        f *= rates.get(incident, rates.get("*", 1.0))
    return f


def cohort_duration(planner) -> float:
    """The factor on the planner's box's ordinary session durations (1 outside cohorts)."""
    f = 1.0
    for name in _members(planner):
        f *= COHORTS[name][1]
    return f
