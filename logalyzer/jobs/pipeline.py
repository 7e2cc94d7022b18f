"""The per-step pipeline launcher: ``logalyzer run`` and ``jobs/pipeline.py``.

It replaces the original bash launcher, which ran five device batches side by side; here each
step parallelises inside Ray. Steps run in the fixed order ingest → sessionize → train → detect;
an unknown step stops the run *before* anything starts, with a clear message, and a database
that went away during the ingest stops it after that step. It is the one
job that composes the others (with :mod:`logalyzer.jobs.evaluate`, which runs it); the stage
jobs import none of each other.
"""

from __future__ import annotations

from logalyzer.errors import LogalyzerError
from logalyzer.jobs.ingest import ingest
from logalyzer.jobs.sessionize import sessionize
from logalyzer.settings import Settings
from logalyzer.store.db import Database

STEPS = ("ingest", "sessionize", "train", "detect")


def parse_steps(text: str) -> list[str]:
    """'ingest,sessionize' → ['ingest', 'sessionize'] in pipeline order; unknown
    steps raise before anything runs."""
    asked = [s.strip().lower() for s in text.split(",") if s.strip()]
    unknown = [s for s in asked if s not in STEPS]
    if unknown:
        raise LogalyzerError(
            f"unknown step(s): {', '.join(unknown)}", hint=f"steps are: {', '.join(STEPS)}"
        )
    return [s for s in STEPS if s in asked]


def run_pipeline(
    settings: Settings,
    db: Database,
    paths: list[str],
    steps: list[str],
    rxids: set[str] | None = None,
    progress: bool | None = None,
    workers: int = 2,
) -> dict:
    """Run the given steps in order; return each step's result by name. ``workers``: Ray
    Train workers of the train step."""
    results: dict = {}
    for step in steps:
        if step == "ingest":
            results["ingest"] = ingest(settings, db, paths, only_rxids=rxids, progress=progress)
            if results["ingest"].database_gone:  # later steps would only fail the same way
                break
        elif step == "sessionize":
            results["sessionize"] = sessionize(settings, db, rxids=rxids, progress=progress)
        elif step == "train":
            # imported by the step that needs them: train and detect load torch and Ray Train
            from logalyzer.jobs.train import train

            results["train"] = train(settings, db, workers=workers, rxids=rxids, progress=progress)
        elif step == "detect":
            from logalyzer.jobs.detect import detect  # torch: see train above

            results["detect"] = detect(settings, db, rxids=rxids, progress=progress)
    return results
