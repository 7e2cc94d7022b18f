"""What the detectors see of a session (pure core): event keys and feature vectors.

Two views of one session, one per detector:

- **event keys** (the LSTM's alphabet): each VAR event's canonical type with the one attribute
  that changes its meaning folded in, e.g. ``HdmiHotplug:connected=false`` or
  ``BlackScreen:start``. Content ids, times, durations and positions are left out on purpose:
  they differ in every session and would make every sequence look new.
- **features** (the autoencoder's input): the ``sessions`` table's measures as a fixed vector,
  counts on a log scale (a storm of 40 drops is not 40 times as strange as one) read against
  what the session's box usually has (:data:`VS_BOX`, :class:`BoxNormals`), and rates per
  viewing hour, with the hour floored at ten minutes so a two-second zap with one drop does
  not read as 1,800 drops an hour. Whether a session had a content id is left out: a session
  before the box's first ChangeContent is a logging artefact, not a playback problem.

The same functions run in the batch jobs and in the HTTP service, so a session scores the
same wherever it is scored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

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
# Each feature is computed for a whole batch at once, over columns (numpy arrays, one value per
# session): the HTTP service scores a thousand sessions per request, and a Python function per
# feature and per session cost more than the autoencoder itself (profiled: bench/README.md).


def _log(n: np.ndarray) -> np.ndarray:
    return np.log1p(np.maximum(n, 0.0))


def _share(ms: np.ndarray, duration_s: np.ndarray) -> np.ndarray:
    return np.minimum(ms / np.maximum(duration_s * 1000.0, 1.0), 1.0)


def _per_hour(n: np.ndarray, duration_s: np.ndarray) -> np.ndarray:
    return _log(n / np.maximum(duration_s / 3600.0, 1 / 6))


def _flag(x: np.ndarray) -> np.ndarray:
    return (x != 0).astype(np.float64)


#: Stands in for a missing time to first frame (``no_first_frame`` says it was missing), so a
#: session without a first frame does not read as one with an instant start.
TYPICAL_TTFF_MS = 1000

#: Feature name → how it is computed from the columns of a batch of ``sessions`` rows
#: (:class:`Columns`: a missing or None value reads 0, except ``ttff_ms`` and
#: ``rebuffer_ratio``, whose None :meth:`Columns.isnull` tells).
FEATURES: dict[str, callable] = {
    "log_duration_s": lambda c: _log(c["duration_s"]),
    "no_first_frame": lambda c: c.isnull("ttff_ms").astype(np.float64),
    "log_ttff_ms": lambda c: _log(np.where(c.isnull("ttff_ms"), TYPICAL_TTFF_MS, c["ttff_ms"])),
    "black_screens": lambda c: _log(c["black_screen_count"]),
    "black_screens_per_h": lambda c: _per_hour(c["black_screen_count"], c["duration_s"]),
    "black_screen_share": lambda c: _share(c["black_screen_ms"], c["duration_s"]),
    "freezes": lambda c: _log(c["video_freeze_count"]),
    "freezes_per_h": lambda c: _per_hour(c["video_freeze_count"], c["duration_s"]),
    "freeze_share": lambda c: _share(c["video_freeze_ms"], c["duration_s"]),
    "display_drops": lambda c: _log(c["display_drop_count"]),
    "display_drops_per_h": lambda c: _per_hour(c["display_drop_count"], c["duration_s"]),
    "log_dropped_frames": lambda c: _log(c["dropped_frames"]),
    "rebuffers": lambda c: _log(c["buffering_count"]),
    "rebuffers_per_h": lambda c: _per_hour(c["buffering_count"], c["duration_s"]),
    "rebuffer_ratio": lambda c: c["rebuffer_ratio"],
    "trick_modes": lambda c: _log(c["trick_mode_count"]),
    "hdmi_events": lambda c: _log(c["hdmi_event_count"]),
    "hdmi_events_per_h": lambda c: _per_hour(c["hdmi_event_count"], c["duration_s"]),
    "hdmi_disconnects": lambda c: _log(c["hdmi_disconnects"]),
    "standby": lambda c: np.minimum(np.trunc(c["standby_count"]), 1.0),
    "errors": lambda c: _log(c["error_count"]),
    "errors_per_h": lambda c: _per_hour(c["error_count"], c["duration_s"]),
    "fatal_error": lambda c: _flag(c["fatal_error"]),
    "video_start_failure": lambda c: _flag(c["video_start_failure"]),
    "log_seq_gaps": lambda c: _log(c["seq_gaps"]),
    "log_events": lambda c: _log(c["event_count"]),
    "system_lines": lambda c: _log(c["system_unusual_lines"]),
}
#: The features as they were before box-relative counts (the autoencoder's ``box_relative=False``),
#: taken before those join :data:`FEATURES` below.
FLEET_FEATURE_NAMES = tuple(FEATURES)

# Box-relative counts (issue 15, "features relative to the box's own normal"): a count read
# against what the session's box usually has, ``log1p(n) - log1p(usual)``, where ``usual`` is
# the median of the box's training sessions (:class:`BoxNormals`). Why: a firmware that drops
# frames in every session made a box's ordinary sessions look like another box's drop storm,
# and the fleet-wide count could not tell the two (seed-29 tuning fleet with a quarter of the
# boxes on such a firmware: drop storms recall 0.35). The rates per viewing hour stay
# fleet-wide, so a box that is broken all the time is still unusual for the fleet.
#: Raw count feature → (its box-relative stand-in, the ``sessions`` column it counts).
VS_BOX = {
    "black_screens": ("black_screens_vs_box", "black_screen_count"),
    "freezes": ("freezes_vs_box", "video_freeze_count"),
    "display_drops": ("display_drops_vs_box", "display_drop_count"),
    "log_dropped_frames": ("dropped_frames_vs_box", "dropped_frames"),
    "rebuffers": ("rebuffers_vs_box", "buffering_count"),
    "hdmi_events": ("hdmi_events_vs_box", "hdmi_event_count"),
    "errors": ("errors_vs_box", "error_count"),
}
#: The ``sessions`` columns whose usual value per box :class:`BoxNormals` keeps.
USUAL_COLUMNS = tuple(col for _, col in VS_BOX.values())


def _vs_box(col: str):
    return lambda c: _log(c[col]) - _log(c.usual(col))


FEATURES.update({name: _vs_box(col) for name, col in VS_BOX.values()})
#: The autoencoder's features: the fleet-wide ones with the counts read against the box's usual.
FEATURE_NAMES = tuple(VS_BOX[n][0] if n in VS_BOX else n for n in FLEET_FEATURE_NAMES)
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
    # lines of system templates unusually frequent in the session (``logalyzer templates``
    # judges them; 0 where it has not run, and for a caller of /v1/score that does not know)
    "system_unusual_lines": Measure(int),
}
FEATURE_COLUMNS = tuple(MEASURES)


# --------------------------------------------------------------------------- in the user's units
# A feature's value is what the model sees (log1p of a count, a share, a flag); an operator reads
# "10 HDMI disconnects (usually 1)". Each feature says how to turn its value back into the
# session's own unit and how to name it; the autoencoder's explanations carry that text beside
# the model's numbers (``value``, ``expected``), so the CLI, the HTTP answers and the dashboards
# print the same sentence.


def _count(noun: str):
    def say(v: float, e: float) -> str:  # a session's count is whole; what is usual need not be
        return f"{_num(round(float(math.expm1(v))))} {noun} (usually {_num(math.expm1(e))})"

    return say


def _rate(noun: str):
    def say(v: float, e: float) -> str:
        return f"{noun} {_num(math.expm1(v))} per viewing hour (usually {_num(math.expm1(e))})"

    return say


def _percent(noun: str):
    def pct(x: float) -> str:  # a share is at most the whole session
        return _num(min(x, 1.0) * 100)

    def say(v: float, e: float) -> str:
        return f"{noun} {pct(v)}% of the time (usually {pct(e)}%)"

    return say


def _yes_no(yes: str, no: str):
    def say(v: float, e: float) -> str:
        state, usual = (yes if v >= 0.5 else no), (yes if e >= 0.5 else no)
        return f"{state} (usually {usual})" if state != usual else f"{state} (as usual)"

    return say


def _seconds(x: float) -> str:
    if x >= 3600:
        return f"{_num(x / 3600)} h"
    if x >= 60:
        return f"{_num(x / 60)} min"
    return f"{_num(x)} s"


def _num(x: float) -> str:
    """1234 → '1,234', 4.06 → '4.1', 0.042 → '0.04': two significant digits below 10."""
    x = float(max(x, 0.0))
    if x >= 9.95:
        return f"{x:,.0f}"
    if x >= 0.995 or x == 0:
        return f"{x:.1f}".removesuffix(".0")
    return f"{x:.2g}"


#: Feature name → (value, expected) in model units → a phrase in the session's units.
READINGS: dict[str, callable] = {
    "log_duration_s": lambda v, e: (
        f"lasted {_seconds(math.expm1(v))} (usually {_seconds(math.expm1(e))})"
    ),
    "no_first_frame": _yes_no("no first frame", "a first frame"),
    "log_ttff_ms": lambda v, e: (
        f"first frame after {_seconds(math.expm1(v) / 1000)} "
        f"(usually {_seconds(math.expm1(e) / 1000)})"
    ),
    "black_screens": _count("black screens"),
    "black_screens_per_h": _rate("black screens"),
    "black_screen_share": _percent("black screen"),
    "freezes": _count("freezes"),
    "freezes_per_h": _rate("freezes"),
    "freeze_share": _percent("frozen"),
    "display_drops": _count("display drops"),
    "display_drops_per_h": _rate("display drops"),
    "log_dropped_frames": _count("dropped frames"),
    "rebuffers": _count("rebuffers"),
    "rebuffers_per_h": _rate("rebuffers"),
    "rebuffer_ratio": _percent("rebuffering"),
    "trick_modes": _count("trick-mode changes"),
    "hdmi_events": _count("HDMI events"),
    "hdmi_events_per_h": _rate("HDMI events"),
    "hdmi_disconnects": _count("HDMI disconnects"),
    "standby": _yes_no("went to standby", "no standby"),
    "errors": _count("playback errors"),
    "errors_per_h": _rate("playback errors"),
    "fatal_error": _yes_no("a fatal playback error", "no fatal error"),
    "video_start_failure": _yes_no("video failed to start", "video started"),
    "log_seq_gaps": _count("lost log lines"),
    "log_events": _count("playback events"),
    "system_lines": _count("unusual system lines"),
}
# A box-relative count reads as the count itself: the explanation adds the box's usual back to
# the value and to what the model rebuilt (:meth:`Columns.offsets`), "20 display drops (usually 1)".
READINGS.update({rel: READINGS[raw] for raw, (rel, _) in VS_BOX.items()})


def reading(feature: str, value: float, expected: float) -> str:
    """One feature of a session and what the model expected, in the session's own units:
    ``reading("hdmi_disconnects", 2.398, 0.693)`` → ``"10 HDMI disconnects (usually 1)"``.
    A name it does not know (an old checkpoint's) reads as the model's numbers."""
    say = READINGS.get(feature)
    if say is None:
        return f"{feature} {value:g} (expected {expected:.2g})"
    return say(float(value), float(expected))


class Columns:
    """The measures of a batch of ``sessions`` rows as float64 columns, read once per column.

    ``duration_s`` must be in every row (KeyError otherwise: a session without a length cannot
    be measured); any other column may be absent or None, which reads 0, as the ``sessions``
    table's defaults do."""

    def __init__(self, rows: Sequence[Mapping], normals: BoxNormals | None = None):
        self.rows, self.normals = rows, normals
        self._cols: dict[str, np.ndarray] = {}
        self._usual: np.ndarray | None = None

    def raw(self, name: str) -> np.ndarray:
        """The column with None (or absent) as NaN."""
        col = self._cols.get(name)
        if col is None:
            if name == "duration_s":
                values = [r[name] for r in self.rows]
            else:
                values = [r.get(name) for r in self.rows]
            col = self._cols[name] = np.array(values, dtype=np.float64).reshape(len(values))
        return col

    def isnull(self, name: str) -> np.ndarray:
        return np.isnan(self.raw(name))

    def __getitem__(self, name: str) -> np.ndarray:
        return np.nan_to_num(self.raw(name), nan=0.0, posinf=np.inf, neginf=-np.inf)

    def usual(self, name: str) -> np.ndarray:
        """What each row's box usually has of the column ``name`` (one of
        :data:`USUAL_COLUMNS`); 0 without :class:`BoxNormals`, so a box-relative count then
        reads as the plain count."""
        if self.normals is None:
            return np.zeros(len(self.rows))
        if self._usual is None:
            self._usual = self.normals.of(self.rows)
        return self._usual[:, USUAL_COLUMNS.index(name)]

    def matrix(self, names: Sequence[str]) -> np.ndarray:
        """(N, F) the features ``names`` of these rows (:func:`feature_matrix`)."""
        out = np.empty((len(self.rows), len(names)), dtype=np.float64)
        if len(self.rows):
            with np.errstate(invalid="ignore", divide="ignore"):
                for j, name in enumerate(names):
                    out[:, j] = FEATURES[name](self)
        return out

    def offsets(self, names: Sequence[str]) -> np.ndarray:
        """(N, F) what each feature of :meth:`matrix` was shifted by, in model units:
        ``log1p(usual)`` for a box-relative count (:data:`VS_BOX`), 0 for the others. Added back
        to a value and to what the model rebuilt, it turns them into the session's own counts
        for :func:`reading`. Shares the box lookup with :meth:`matrix` (one per batch)."""
        out = np.zeros((len(self.rows), len(names)))
        if self.normals is not None and len(self.rows):
            column = dict(VS_BOX.values())
            for j, name in enumerate(names):
                if name in column:
                    out[:, j] = _log(self.usual(column[name]))
        return out


class BoxNormals:
    """What each box usually has in a session: the median of :data:`USUAL_COLUMNS` over its
    training sessions, and the fleet's median for a box with fewer than ``min_sessions`` of
    them, one never seen in training, or a row without an ``rxid`` (an HTTP caller that does
    not say which box). A median, not a mean: a box's few storms do not move it.

    The autoencoder keeps them in its checkpoint, so a session scores against the normal its
    box had when the model was trained, in the batch jobs and in the HTTP service alike."""

    def __init__(self, boxes: Mapping[str, Sequence[float]], fleet: Sequence[float]):
        self.boxes = {rxid: np.asarray(v, dtype=np.float64) for rxid, v in boxes.items()}
        self.fleet = np.asarray(fleet, dtype=np.float64)  # (K,)

    @classmethod
    def fit(cls, rows: Sequence[Mapping], min_sessions: int) -> BoxNormals:
        if not len(rows):
            return cls({}, np.zeros(len(USUAL_COLUMNS)))
        cols = Columns(rows)
        x = np.stack([cols[c] for c in USUAL_COLUMNS], axis=1)  # (N, K)
        box = np.array([str(r.get("rxid") or "") for r in rows])
        names, at, n = np.unique(box, return_inverse=True, return_counts=True)
        order = np.argsort(at, kind="stable")
        groups = np.split(x[order], np.cumsum(n)[:-1])  # one (n_box, K) block per box
        boxes = {
            rxid: np.median(g, axis=0)
            for rxid, g in zip(names.tolist(), groups)
            if rxid and len(g) >= min_sessions
        }
        return cls(boxes, np.median(x, axis=0))

    def of(self, rows: Sequence[Mapping]) -> np.ndarray:
        """(N, K): each row's box's usual values (the fleet's where the box has none)."""
        out = np.empty((len(rows), len(self.fleet)))
        for i, r in enumerate(rows):
            out[i] = self.boxes.get(r.get("rxid"), self.fleet)
        return out

    def to_dict(self) -> dict:
        return {
            "columns": list(USUAL_COLUMNS),
            "fleet": self.fleet.tolist(),
            "boxes": {rxid: v.tolist() for rxid, v in self.boxes.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping | None) -> BoxNormals | None:
        if d is None:
            return None
        if tuple(d["columns"]) != USUAL_COLUMNS:
            raise ValueError(f"box normals of other columns: {d['columns']}")
        return cls(d["boxes"], d["fleet"])


def feature_matrix(
    rows: Sequence[Mapping],
    names: Sequence[str] = FEATURE_NAMES,
    normals: BoxNormals | None = None,
) -> np.ndarray:
    """(N, F) feature vectors of N ``sessions`` rows: the features ``names`` (default the
    autoencoder's, in :data:`FEATURE_NAMES` order; a checkpoint trained before a feature existed
    asks for its own list), box-relative counts read against ``normals`` (:class:`BoxNormals`)."""
    return Columns(rows, normals).matrix(names)


def failed_sessions(rows: Sequence[Mapping]) -> np.ndarray:
    """(N,) bool: the sessions that failed as the viewer saw them: the video never started or
    playback ended on a fatal error. The autoencoder never learns them as ordinary (issue 15):
    a history can hold many alike (a broken stream retried by every box), and a fit that learnt
    them rebuilt them well enough to keep them, then missed the whole kind (one training in
    five on the tuning fleets). They are still scored like any session."""
    cols = Columns(rows)
    return (cols["video_start_failure"] != 0) | (cols["fatal_error"] != 0)


def session_features(row: Mapping) -> list[float]:
    """The feature vector (in :data:`FEATURE_NAMES` order) of one ``sessions`` row."""
    return feature_matrix([row])[0].tolist()
