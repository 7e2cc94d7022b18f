"""The per-step pipeline launcher: ``logalyzer run`` and ``jobs/pipeline.py``.

It replaces the original bash launcher, which ran five device batches side by side; here each
step parallelises inside Ray. Steps run in the fixed order ingest → sessionize → templates →
train → detect → alerts (templates only when asked for; alerts: daily windows, the last three,
``logalyzer alerts`` for other windows);
an unknown step stops the run *before* anything starts, with a clear message, and a database
that went away during the ingest stops it after that step. It is the one
job that composes the others (with :mod:`logalyzer.jobs.evaluate`, which runs it); the stage
jobs import none of each other.
"""

from __future__ import annotations

from logalyzer.errors import LogalyzerError
from logalyzer.jobs.alerts import check_alerts
from logalyzer.jobs.ingest import ingest
from logalyzer.jobs.sessionize import sessionize
from logalyzer.jobs.templates import templates
from logalyzer.settings import Settings
from logalyzer.store.db import Database

STEPS = ("ingest", "sessionize", "templates", "train", "detect", "alerts")


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
    on_step=None,
) -> dict:
    """Run the given steps in order; return each step's result by name. ``workers``: Ray
    Train workers of the train step; ``on_step(name, result)`` is called as each step ends (so
    a face shows what was done even when a later step stops the run)."""
    results: dict = {}
    for step in steps:
        results[step] = _run_step(settings, db, paths, step, rxids, progress, workers)
        if on_step is not None:
            on_step(step, results[step])
        if step == "ingest" and results["ingest"].database_gone:
            break  # later steps would only fail the same way
    return results


def _run_step(settings, db, paths, step, rxids, progress, workers):
    if step == "ingest":
        return ingest(settings, db, paths, only_rxids=rxids, progress=progress)
    if step == "sessionize":
        return sessionize(settings, db, rxids=rxids, progress=progress)
    if step == "templates":
        return templates(settings, db, rxids=rxids, progress=progress)
    if step == "train":
        # imported by the step that needs them: train and detect load torch and Ray Train
        from logalyzer.jobs.train import train

        return train(settings, db, workers=workers, rxids=rxids, progress=progress)
    if step == "alerts":
        return check_alerts(settings, db, grain="day")
    from logalyzer.jobs.detect import detect  # torch: see train above

    return detect(settings, db, rxids=rxids, progress=progress)
