"""Deterministic synthetic fleet: logcat files of Android-TV boxes, plus the exact answer.

Why: every later stage (parser, ingester, sessions, detectors, dashboards, benchmarks) needs
realistic input whose right answer is known. `generate_fleet(OUT, FleetSpec(...))` writes

    OUT/<RXID>/logcat_<YYYYMMDDTHHMMSS>.log.gz    (local time of the file's first line)
    OUT/ground_truth.json

and the same spec always gives byte-identical files and truth (seeded RNGs only, gzip header
mtime = the file's start, no file name in the gzip header).

What the files look like (LOG_FORMAT.md is the contract):
- one header variant (section 2, rows 1-9) and one VAR dialect (section 3) per device; event
  type spellings vary (`BlackScreen`, `BLACK_SCREEN`, `black-screen`), a few % of VAR lines
  carry a JSON object instead of key=value pairs. VAR lines in the `usec`/`nsec` variants have
  zero sub-millisecond digits, so the truth is exact to the millisecond.
- every file starts with its markers (`== dumpstate: ...` and `------ SYSTEM LOG ...` for some
  devices, then `--------- beginning of main`); file k+1 then repeats the last `overlap_lines`
  content lines of file k (markers are never part of the overlap) and continues.
- kernel lines (`[  123.456789] ...`, `<6>[ ...`, `[ ... @0] ...`) at boot and now and then;
  the boot burst opens a device's first file, before any wall-clock line.
- wall-clock timestamps of a device are strictly increasing, so no two of its lines are equal
  (the ingester's MD5 dedup then only removes the rotation overlap).
- local time is written in `spec.tz`; in a zone with a DST fall-back the repeated local hour is
  ambiguous for year-less/offset-less variants (the truth holds the real UTC instants).

Session rules and the ground-truth format are in :mod:`.truth` (`truth_sessions` is the
reference implementation of LOG_FORMAT.md section 4); the scripted edge cases and anomalies
in :mod:`.edge_cases` and :mod:`.playback`.

Modules, imports pointing down only (importing any of them has no side effects):

- :mod:`.spec`: FleetSpec, FleetResult, VarEvent, the constants (variants, dialects, event
  types, anomaly kinds, edge cases);
- :mod:`.render`: line headers in the section-2 variants, VAR messages in both dialects;
- :mod:`.noise`: processes, everyday chatter, kernel texts, the chunked noise stream;
- :mod:`.playback` and :mod:`.edge_cases`: the session content the planner draws (normal
  incidents, anomalies) and the scripted edge cases; :mod:`.system` and :mod:`.sequence`: the
  opt-in system-side and sequence-only faults;
- :mod:`.timeline`: one device's plan (boots, standby, VAR events, kernel lines);
- :mod:`.writer`: rotated gzip files with their markers and overlap;
- :mod:`.truth`: sessions and measures from the events, the ground-truth JSON;
- :mod:`.fleet`: the fleet's devices and `generate_fleet`.
"""

from .fleet import generate_fleet
from .render import spell, var_message
from .spec import (
    ANOMALY_KINDS,
    EDGE_CASES,
    EVENT_TYPES,
    HEADER_VARIANTS,
    MARKER_MAIN,
    PLAYBACK_TYPES,
    SEQUENCE_FAULT_KINDS,
    SYSTEM_FAULT_KINDS,
    UTC,
    VAR_DIALECTS,
    FleetResult,
    FleetSpec,
    VarEvent,
    iso_ms,
)
from .truth import truth_sessions

__all__ = [
    "ANOMALY_KINDS",
    "EDGE_CASES",
    "EVENT_TYPES",
    "HEADER_VARIANTS",
    "MARKER_MAIN",
    "PLAYBACK_TYPES",
    "SEQUENCE_FAULT_KINDS",
    "SYSTEM_FAULT_KINDS",
    "UTC",
    "VAR_DIALECTS",
    "FleetResult",
    "FleetSpec",
    "VarEvent",
    "generate_fleet",
    "iso_ms",
    "spell",
    "truth_sessions",
    "var_message",
]
