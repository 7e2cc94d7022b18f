"""What to generate and what comes back: FleetSpec, FleetResult, VarEvent, the constants.

The constants name what the files may contain (LOG_FORMAT.md sections 2 and 3) and what the
truth may label (`ANOMALY_KINDS`, `SYSTEM_FAULT_KINDS`, `SEQUENCE_FAULT_KINDS`,
`EDGE_CASES`); `PLAYBACK_TYPES` are the events that make a window before the first
ChangeContent a session (see :mod:`.truth`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

UTC = UTC

HEADER_VARIANTS = (
    "threadtime",
    "year",
    "usec",
    "nsec",
    "zone",
    "uid",
    "epoch",
    "time",
    "studio",
    "iso",
)
VAR_DIALECTS = ("current", "legacy")
EVENT_TYPES = (
    "ChangeContent",
    "FirstFrame",
    "BlackScreen",
    "VideoFreeze",
    "DisplayDrop",
    "BufferingStart",
    "BufferingEnd",
    "TrickMode",
    "HdmiHotplug",
    "HdcpStatus",
    "StandbyEnter",
    "StandbyExit",
    "PlaybackError",
    "ResolutionChange",
    "BootInfo",
)
PLAYBACK_TYPES = frozenset(
    {
        "FirstFrame",
        "BlackScreen",
        "VideoFreeze",
        "DisplayDrop",
        "BufferingStart",
        "BufferingEnd",
        "TrickMode",
        "PlaybackError",
    }
)
ANOMALY_KINDS = (
    "freeze_storm",
    "black_after_change",
    "hdmi_flapping",
    "drop_storm",
    "error_loop",
    "video_start_failure",
    "rebuffer_storm",
    "hdcp_failure",
)
#: System-side faults (:mod:`.system`), opt-in with FleetSpec.system_faults; labelled like
#: the playback kinds in the truth.
SYSTEM_FAULT_KINDS = ("anr_burst", "oom_kill", "hdcp_kernel")
#: Sequence-only faults (:mod:`.sequence`), opt-in with FleetSpec.sequence_faults: the amounts
#: of an ordinary session, events in a wrong order; labelled like the others in the truth.
SEQUENCE_FAULT_KINDS = (
    "first_frame_late",
    "freeze_end_without_start",
    "playback_in_standby",
    "tune_loop",
)
EDGE_CASES = (
    "pre_first_change",
    "unclosed_episode",
    "seq_gap",
    "standby_mid_playback",
    "spans_files",
    "silent_gap",
    "log_end",
    "new_year",
)
MARKER_MAIN = "--------- beginning of main"

_MIN = 60_000


@dataclass
class FleetSpec:
    """What to generate; every field has a default so the CLI can pass only what it was given."""

    devices: int = 5
    hours: float = 4.0
    seed: int = 0
    anomaly_rate: float = 0.1  # fraction of sessions made anomalous
    start: datetime = datetime(2024, 3, 17, 8, 0, tzinfo=UTC)  # fleet start, UTC
    tz: str = "UTC"  # zone the boxes write local time in (zoneinfo name)
    noise_lines_per_minute: int = 600  # non-VAR lines per device-minute (controls size; above
    # 60000 two noise lines may share a millisecond)
    rotate_mb: float = 8.0  # rotate a device's file after about this many MB (1e6)
    overlap_lines: int = 50  # each rotated file repeats the last N lines of the previous
    # Fleet alerts' evaluation (.regression); both off by default, so every fleet stays the same:
    firmwares_per_model: int | None = None  # None: each box's fw patch is 0..30; N: 0..N-1
    regression: str | None = None  # "FW@DAY" or "FW@DAYxF": firmware FW's freezes x F (4) on
    # UTC day DAY of the fleet (0: the start's day)
    system_faults: float = 0.0  # share of anomalous sessions given a system-side cause
    # (SYSTEM_FAULT_KINDS); 0 keeps every fleet as it was, byte for byte
    sequence_faults: float = 0.0  # share of the other anomalous sessions given a sequence-only
    # fault (SEQUENCE_FAULT_KINDS: ordinary amounts, wrong order); 0 keeps every fleet as it was
    reference_clean_hours: float = 0.0  # no anomalous session of any kind starts in the fleet's
    # first H hours: the known-clean reference an operator names (`train --reference-until`),
    # so the LSTM can learn the order of events without the faults; 0 keeps every fleet as it was
    cohorts: str | None = None  # "drops:0.25,noisy:0.1": boxes whose ordinary playback differs
    # (:mod:`.cohorts`: drops, noisy, long, short); None keeps every fleet as it was

    def reference_until(self) -> datetime | None:
        """The end of the clean reference window (UTC), or None when there is none."""
        if not self.reference_clean_hours:
            return None
        return _start_utc(self.start) + timedelta(hours=self.reference_clean_hours)

    def to_json(self) -> dict:
        d = asdict(self)
        for opt in ("firmwares_per_model", "regression"):  # off: the truth file as before
            if d[opt] is None:
                del d[opt]
        d["start"] = _start_utc(self.start).isoformat()
        for opt in ("system_faults", "sequence_faults", "reference_clean_hours", "cohorts"):
            if not d[opt]:
                del d[opt]  # the truth of a default fleet stays as it was
        return d


@dataclass
class FleetResult:
    out_dir: Path
    files: list[Path]
    bytes_uncompressed: int
    lines: int  # overlapped lines counted once per file they appear in
    truth_path: Path  # OUT/ground_truth.json


@dataclass(slots=True)
class VarEvent:
    """One VAR event as the firmware emitted it; `dropped` ones consumed a seq but were lost."""

    ts_ms: int  # UTC epoch milliseconds
    etype: str  # canonical event type
    data: dict  # event keys (without sid/seq/mono)
    seq: int = 0
    sid: int = 0
    mono: int = 0
    dropped: bool = False
    anomaly: str | None = None  # set on the ChangeContent of an anomalous session
    file_index: int | None = None  # file it first appeared in (set by the writer)


def _start_utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def iso_ms(ts_ms: int) -> str:
    """UTC ISO-8601 with milliseconds and 'Z', the truth's timestamp format."""
    s, ms = divmod(int(ts_ms), 1000)
    return datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % ms
