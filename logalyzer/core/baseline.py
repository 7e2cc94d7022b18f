"""The naive baseline detector (pure core): the largest |z| over a few counts of a session.

Why it exists: a detector is worth its training only if it beats something a person could write
in an afternoon. This one is that afternoon: seven counts of the ``sessions`` table (black
screens, freezes, display drops, HDMI disconnects, errors, buffering, trick modes), each as
``log1p(count)`` and as ``log1p(count per viewing hour)`` (the hour floored at ten minutes, as
in :mod:`logalyzer.core.features`), standardised with the training sessions' mean and spread;
a session's score is its largest |z|, and it is flagged above the 95th percentile of the
training scores. No weights, nothing random: it is the same every time it is fitted, which
makes it the yardstick for the two learnt detectors in every evaluation
(:mod:`logalyzer.jobs.evaluate`). It is stored, trained and scored like them, but it takes no
part in the combined verdict (:mod:`logalyzer.core.verdict`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: The seven ``sessions`` counts it reads.
COUNTS = (
    "black_screen_count",
    "video_freeze_count",
    "display_drop_count",
    "hdmi_disconnects",
    "error_count",
    "buffering_count",
    "trick_mode_count",
)
NAMES = tuple(c for n in COUNTS for c in (n, f"{n}_per_h"))


@dataclass
class BaselineConfig:
    quantile: float = 0.95  # threshold: this quantile of the training scores
    min_scale: float = 0.2  # floor under a count's spread (a count that is almost always 0)
    epochs: int = 0  # nothing to train: kept so every detector config reads alike


def measures(row: Mapping) -> list[float]:
    """The 14 numbers of one ``sessions`` row, in :data:`NAMES` order."""
    hours = max(float(row.get("duration_s") or 0) / 3600.0, 1 / 6)
    out = []
    for c in COUNTS:
        n = max(float(row.get(c) or 0), 0.0)
        out += [math.log1p(n), math.log1p(n / hours)]
    return out


def matrix(rows: Sequence[Mapping]) -> np.ndarray:
    return np.array([measures(r) for r in rows], dtype=np.float64).reshape(len(rows), len(NAMES))


def max_abs_z(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) largest |z| of each row and (N,) the index of the measure that gave it."""
    z = np.abs((x - mean) / scale)
    return (z.max(axis=1), z.argmax(axis=1)) if len(x) else (np.zeros(0), np.zeros(0, int))
