"""What the detectors see of a session (pure core): event keys and feature vectors.

Two views of one session, one per detector:

- **event keys** (the LSTM's alphabet): each VAR event's canonical type with the one attribute
  that changes its meaning folded in, e.g. ``HdmiHotplug:connected=false`` or
  ``BlackScreen:start``. Content ids, times, durations and positions are left out on purpose:
  they differ in every session and would make every sequence look new.
- **features** (the autoencoder's input): the ``sessions`` table's measures as a fixed vector,
  counts on a log scale (a storm of 40 drops is not 40 times as strange as one) and rates per
  viewing hour, with the hour floored at ten minutes so a two-second zap with one drop does
  not read as 1,800 drops an hour. Whether a session had a content id is left out: a session
  before the box's first ChangeContent is a logging artefact, not a playback problem.

The same functions run in the batch jobs and in the HTTP service, so a session scores the
same wherever it is scored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from logalyzer.core.sessions import Event

#: The two detectors, named by the view each reads: ``lstm`` the event keys, ``ae`` the features.
#: The one list of detector kinds: settings, CLI options, HTTP models and SQL rows follow it.
KINDS = ("lstm", "ae")
#: The naive yardstick (:mod:`logalyzer.core.baseline`): trained, stored and scored like the two,
#: reported beside them by every evaluation, but no part of the combined verdict and not served.
BASELINE = "baseline"
ALL_KINDS = (*KINDS, BASELINE)

#: Event types whose key carries one attribute, and which one.
_FOLDED = {
    "HdmiHotplug": "connected",
    "HdcpStatus": "ok",
    "PlaybackError": "fatal",
    "TrickMode": "mode",
}
_EPISODES = {"BlackScreen", "VideoFreeze"}
_TRUE = {"true", "1", "yes"}


def _attr(e: Event, name: str):
    if name == "connected":
        return e.connected
    if name == "fatal":
        return e.fatal
    return (e.detail or {}).get(name)


def event_key(e: Event) -> str:
    """One event's key: ``Type``, ``Type:start|end`` for episodes, ``Type:attr=value``."""
    t = e.etype
    if t in _EPISODES:
        return f"{t}:{e.state}" if e.state in ("start", "end") else t
    name = _FOLDED.get(t)
    if name is None:
        return t
    v = _attr(e, name)
    if name == "mode":
        return f"{t}:mode={str(v).upper()}" if v is not None else t
    if v is None:
        return t
    return f"{t}:{name}={'true' if str(v).strip().lower() in _TRUE else 'false'}"


def event_keys(events: Iterable[Event]) -> list[str]:
    return [event_key(e) for e in events]


# --------------------------------------------------------------------------- features


def _log(n) -> float:
    return math.log1p(max(float(n or 0), 0.0))


def _share(ms, duration_s) -> float:
    d = max(float(duration_s or 0) * 1000.0, 1.0)
    return min(float(ms or 0) / d, 1.0)


def _per_hour(n, duration_s) -> float:
    return _log(float(n or 0) / max(float(duration_s or 0) / 3600.0, 1 / 6))


#: Stands in for a missing time to first frame (``no_first_frame`` says it was missing), so a
#: session without a first frame does not read as one with an instant start.
TYPICAL_TTFF_MS = 1000

#: Feature name → how it is computed from a ``sessions`` row (a mapping of its columns).
FEATURES: dict[str, callable] = {
    "log_duration_s": lambda s: _log(s["duration_s"]),
    "no_first_frame": lambda s: float(s.get("ttff_ms") is None),
    "log_ttff_ms": lambda s: _log(
        s["ttff_ms"] if s.get("ttff_ms") is not None else TYPICAL_TTFF_MS
    ),
    "black_screens": lambda s: _log(s["black_screen_count"]),
    "black_screens_per_h": lambda s: _per_hour(s["black_screen_count"], s["duration_s"]),
    "black_screen_share": lambda s: _share(s["black_screen_ms"], s["duration_s"]),
    "freezes": lambda s: _log(s["video_freeze_count"]),
    "freezes_per_h": lambda s: _per_hour(s["video_freeze_count"], s["duration_s"]),
    "freeze_share": lambda s: _share(s["video_freeze_ms"], s["duration_s"]),
    "display_drops": lambda s: _log(s["display_drop_count"]),
    "display_drops_per_h": lambda s: _per_hour(s["display_drop_count"], s["duration_s"]),
    "log_dropped_frames": lambda s: _log(s["dropped_frames"]),
    "rebuffers": lambda s: _log(s["buffering_count"]),
    "rebuffers_per_h": lambda s: _per_hour(s["buffering_count"], s["duration_s"]),
    "rebuffer_ratio": lambda s: float(s.get("rebuffer_ratio") or 0.0),
    "trick_modes": lambda s: _log(s["trick_mode_count"]),
    "hdmi_events": lambda s: _log(s["hdmi_event_count"]),
    "hdmi_events_per_h": lambda s: _per_hour(s["hdmi_event_count"], s["duration_s"]),
    "hdmi_disconnects": lambda s: _log(s["hdmi_disconnects"]),
    "standby": lambda s: float(min(int(s["standby_count"] or 0), 1)),
    "errors": lambda s: _log(s["error_count"]),
    "errors_per_h": lambda s: _per_hour(s["error_count"], s["duration_s"]),
    "fatal_error": lambda s: float(bool(s["fatal_error"])),
    "video_start_failure": lambda s: float(bool(s["video_start_failure"])),
    "log_seq_gaps": lambda s: _log(s["seq_gaps"]),
    "log_events": lambda s: _log(s["event_count"]),
}
FEATURE_NAMES = tuple(FEATURES)
#: Smallest spread a feature may be given when it is standardised (the default is
#: ``autoencoder.MIN_SCALE``). Lost lines are a logging artefact (logcat's ring buffer drops
#: lines under load), so one or two of them must not make a session look anomalous.
SCALE_FLOORS = {"log_seq_gaps": 1.0}
BIG = 10**12  # bound of counts and milliseconds: far above any real session


@dataclass(frozen=True)
class Measure:
    """One ``sessions`` column the features read: its type, default and bounds. The one
    description of detector input; the HTTP service's request model is built from it."""

    kind: type  # int (a count or milliseconds), float or bool
    default: object = 0  # REQUIRED: the caller must give it
    high: float = BIG  # largest value accepted (the lowest is 0)
    nullable: bool = False  # None is a value (e.g. no first frame)


REQUIRED = ...
#: The ``sessions`` columns the features read (what callers must supply), with their bounds.
MEASURES: dict[str, Measure] = {
    "duration_s": Measure(float, REQUIRED, high=1e9),
    "ttff_ms": Measure(int, None, nullable=True),
    "black_screen_count": Measure(int),
    "black_screen_ms": Measure(int),
    "video_freeze_count": Measure(int),
    "video_freeze_ms": Measure(int),
    "display_drop_count": Measure(int),
    "dropped_frames": Measure(int),
    "buffering_count": Measure(int),
    "rebuffer_ratio": Measure(float, None, high=1.0, nullable=True),
    "trick_mode_count": Measure(int),
    "hdmi_event_count": Measure(int),
    "hdmi_disconnects": Measure(int),
    "standby_count": Measure(int),
    "error_count": Measure(int),
    "fatal_error": Measure(bool, False),
    "video_start_failure": Measure(bool, False),
    "seq_gaps": Measure(int),
    "event_count": Measure(int),
}
FEATURE_COLUMNS = tuple(MEASURES)


def session_features(row: Mapping) -> list[float]:
    """The feature vector (in :data:`FEATURE_NAMES` order) of one ``sessions`` row."""
    return [f(row) for f in FEATURES.values()]
