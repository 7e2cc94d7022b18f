"""The per-step pipeline launcher: ``logalyzer run`` and ``jobs/pipeline.py``.

It replaces the original bash launcher, which ran five device batches side by side; here each
step parallelises inside Ray. Steps run in the fixed order ingest → sessionize → train → detect;
an unknown step stops the run *before* anything starts, with a clear message.
"""

from __future__ import annotations

from pathlib import Path

from .db import Database
from .errors import InvalidIdentifier, LogalyzerError
from .files import is_valid_rxid
from .settings import Settings

STEPS = ("ingest", "sessionize", "train", "detect")


def parse_steps(text: str) -> list[str]:
    """'ingest,sessionize' → ['ingest', 'sessionize'] in pipeline order; unknown
    steps raise before anything runs."""
    asked = [s.strip().lower() for s in text.split(",") if s.strip()]
    unknown = [s for s in asked if s not in STEPS]
    if unknown:
        raise LogalyzerError(f"unknown step(s): {', '.join(unknown)}",
                             hint=f"steps are: {', '.join(STEPS)}")
    return [s for s in STEPS if s in asked]


def parse_rxids(rxids: str | None = None, rxids_file: str | Path | None = None) -> set[str] | None:
    """The devices to restrict the run to, from ``--rxids R1,R2`` or a file (one per line,
    ``#`` comments); None means all."""
    found: list[str] = []
    if rxids:
        found += [r.strip().upper() for r in rxids.split(",") if r.strip()]
    if rxids_file:
        for line in Path(rxids_file).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                found.append(line.upper())
    if not rxids and not rxids_file:
        return None
    bad = [r for r in found if not is_valid_rxid(r)]
    if bad:
        raise InvalidIdentifier(f"not RxIDs: {', '.join(bad[:5])}")
    return set(found)


def run_pipeline(settings: Settings, db: Database, paths: list[str], steps: list[str],
                 rxids: set[str] | None = None, progress: bool | None = None) -> dict:
    """Run the given steps in order; return each step's result by name."""
    from .ingest import ingest

    results: dict = {}
    for step in steps:
        if step == "ingest":
            results["ingest"] = ingest(settings, db, paths, only_rxids=rxids, progress=progress)
        elif step == "sessionize":
            from .sessionize import sessionize

            results["sessionize"] = sessionize(settings, db, rxids=rxids, progress=progress)
        elif step == "train":
            from .train import train

            results["train"] = train(settings, db, rxids=rxids, progress=progress)
        elif step == "detect":
            from .detect import detect

            results["detect"] = detect(settings, db, rxids=rxids, progress=progress)
    return results
