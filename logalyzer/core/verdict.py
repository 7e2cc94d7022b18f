"""The verdict rules: every detector's score of a session, and the combined verdict.

**The combined verdict** (``anomalies_consolidated.is_anomaly``), one rule for all: a session
is anomalous when a detector of :data:`VERDICT_KINDS` scores it above its threshold. Today that
is the autoencoder alone. The LSTM was meant to catch what amounts cannot show (a black screen
*before* the first frame, events in an impossible order), but measured on every fleet it found
no anomalous session the autoencoder missed, and its false alarms cost the verdict its
precision where anomalies are rare (2 % of sessions: combined F1 0.88 with it, 0.95 without;
README, "Combined verdict"). It is still trained, stored and scored: its flags and reasons stay
beside the autoencoder's in ``anomalies`` and in the consolidated row, as a second opinion.
**An LSTM trained on a reference history** (``train --reference-*``, its checkpoint's
``reference``; :mod:`logalyzer.core.reference`) is another model: it learnt the order of events
from a part of the fleet known to be clean, and finds the sequence-only faults the autoencoder
cannot see (issue 15, README "Reference history"); its flag counts (:func:`verdict_kinds`).
Scores are reported as multiples of their thresholds (> 1 = flagged, :func:`ratio`), so they
compare across detectors and versions.

Pure: the batch job (:mod:`logalyzer.jobs.detect`) and the HTTP service
(:mod:`logalyzer.http.score`) both score through :func:`score_sessions`, so a session gets the
same verdict whichever way it arrives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from logalyzer.core.features import KINDS

#: The detectors whose flag makes a session anomalous (module docstring says why not the LSTM).
VERDICT_KINDS = ("ae",)
#: ... and with an LSTM trained on a reference history (``train --reference-*``).
REFERENCE_VERDICT_KINDS = ("ae", "lstm")

if TYPE_CHECKING:  # types only: the rules need no torch, so report readers stay light
    from logalyzer.core.detectors import Detector, Verdict


def score_sessions(models: dict[str, Detector], sessions: list[dict]) -> list[dict[str, Verdict]]:
    """Every detector's verdict for each session."""
    per_kind = {kind: det.score(det.inputs(sessions)) for kind, det in models.items()}
    return [{k: v[i] for k, v in per_kind.items()} for i in range(len(sessions))]


def score_flat(models: dict[str, Detector], sessions: list[dict]) -> list[dict[str, Verdict]]:
    """:func:`score_sessions` for sessions that may lack ``event_keys`` (None), as the HTTP
    service receives them: those are scored by the autoencoder only (the LSTM has nothing to
    read)."""
    out: list[dict[str, Verdict]] = [{} for _ in sessions]
    has = [i for i, s in enumerate(sessions) if s.get("event_keys") is not None]
    lacks = [i for i, s in enumerate(sessions) if s.get("event_keys") is None]
    for idx, use in ((has, models), (lacks, {k: d for k, d in models.items() if k != "lstm"})):
        if idx and use:
            for i, v in zip(idx, score_sessions(use, [sessions[i] for i in idx])):
                out[i] = v
    return out


def verdict_kinds(models: Mapping[str, Detector]) -> tuple[str, ...]:
    """The detectors whose flag makes a session anomalous, given the models scoring it: the
    LSTM's too when it learnt from a reference history (its ``reference``), so the verdict
    follows the model in use, in the batch job and the HTTP service alike."""
    lstm = models.get("lstm")
    return REFERENCE_VERDICT_KINDS if getattr(lstm, "reference", None) else VERDICT_KINDS


def consolidate(
    verdicts: dict[str, Verdict], kinds: tuple[str, ...] = VERDICT_KINDS
) -> tuple[bool, list[str], dict]:
    """The combined verdict (module docstring): flagged by one of ``kinds``
    (:func:`verdict_kinds` of the models), the detectors that flagged (of :data:`KINDS`, a
    second opinion included), and the reasons."""
    flagged = [k for k in KINDS if k in verdicts and verdicts[k].is_anomaly]
    reasons = {
        "features": verdicts["ae"].details.get("features", []) if "ae" in verdicts else [],
        "transitions": (
            verdicts["lstm"].details.get("transitions", []) if "lstm" in verdicts else []
        ),
    }
    return any(k in flagged for k in kinds), flagged, reasons


def ratio(v: Verdict | None) -> float | None:
    """The score as a multiple of its threshold (> 1 = flagged); None without a verdict."""
    if v is None:
        return None
    return v.score / v.threshold if v.threshold > 0 else float(v.is_anomaly) * 2
