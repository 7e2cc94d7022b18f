"""The reference history: the part of the fleet an operator knows to be clean (issue 15).

Why the LSTM needs one: it learns the order of events from the history, and a fault that
recurs in the history (a sequence-only fault is about 1 % of the sessions per kind, as often
as the fleet's legitimate rare transitions) is learnt as ordinary. The autoencoder cannot keep
such sessions out (their amounts are ordinary). Given a history without them, the LSTM finds
them (bench/README.md, "Sequence-only faults"). No labels can say which sessions are clean;
the operator can: "the fleet was fine until the rollout of 2024-03-18", or "these lab boxes".

A reference is a time window of session starts (``since`` inclusive, ``until`` exclusive,
either may be open) and optionally a set of boxes; a session is in it when both hold. It is
stored with the model it trained (checkpoint and ``models.trained_on``), so ``detect``, the
HTTP service and ``logalyzer models`` know what the model learnt from. Pure: no SQL, no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from logalyzer.errors import LogalyzerError

TIME_FORMS = "ISO 8601: 2024-03-18, 2024-03-18T07:00:00Z, 2024-03-18T08:00+01:00; no zone = UTC"


class BadReference(LogalyzerError):
    """A reference that cannot be used: an empty or inverted window, too few sessions."""


@dataclass(frozen=True)
class Reference:
    since: datetime | None = None  # sessions starting at or after (UTC)
    until: datetime | None = None  # ... and before (UTC)
    rxids: frozenset[str] | None = None  # ... on these boxes (None: every box)

    def __post_init__(self) -> None:
        if self.since is None and self.until is None and not self.rxids:
            raise BadReference(
                "a reference names a window or boxes",
                hint="give --reference-since/--reference-until and/or --reference-boxes",
            )
        if self.since and self.until and self.since >= self.until:
            raise BadReference(
                f"the reference window is empty: {_iso(self.since)} is not before "
                f"{_iso(self.until)}",
                hint="--reference-since must be before --reference-until",
            )

    def holds(self, session: Mapping) -> bool:
        """Whether a session (a ``sessions`` row: ``rxid``, ``start_ts``) is in the reference."""
        ts = _utc(session["start_ts"])
        return (
            (self.since is None or ts >= self.since)
            and (self.until is None or ts < self.until)
            and (not self.rxids or session["rxid"] in self.rxids)
        )

    def select(self, sessions: list[dict], needed: int) -> list[dict]:
        """The sessions in the reference; :class:`BadReference` when fewer than ``needed``."""
        chosen = [s for s in sessions if self.holds(s)]
        if len(chosen) < needed:
            raise BadReference(
                f"the reference ({self.describe()}) holds {len(chosen):,} sessions; the LSTM "
                f"needs at least {needed} to learn from",
                hint="widen the window or name other boxes (logalyzer db info shows the "
                "history's span)",
            )
        return chosen

    def describe(self) -> str:
        """'sessions from 2024-03-17T08:00:00Z to 2024-03-17T16:00:00Z on 2 boxes'."""
        parts = ["sessions"]
        if self.since:
            parts.append(f"from {_iso(self.since)}")
        if self.until:
            parts.append(f"before {_iso(self.until)}")
        if self.rxids:
            parts.append(f"on {len(self.rxids)} box{'es' if len(self.rxids) > 1 else ''}")
        return " ".join(parts)

    def to_json(self) -> dict:
        """Plain types, for the checkpoint (``weights_only``) and ``models.trained_on``."""
        return {
            "since": _iso(self.since) if self.since else None,
            "until": _iso(self.until) if self.until else None,
            "rxids": sorted(self.rxids) if self.rxids else None,
        }

    @classmethod
    def parse(
        cls, since: str | None, until: str | None, rxids: set[str] | None
    ) -> Reference | None:
        """From the command line (ISO 8601 times, no zone = UTC; the boxes already parsed);
        None when nothing names a reference (train as without one)."""
        if since is None and until is None and not rxids:
            return None
        return cls(
            _parse(since, "--reference-since"),
            _parse(until, "--reference-until"),
            frozenset(rxids) if rxids else None,
        )

    @classmethod
    def from_json(cls, d: Mapping | None) -> Reference | None:
        if not d:
            return None
        return cls(
            _parse(d.get("since")), _parse(d.get("until")), frozenset(d.get("rxids") or ()) or None
        )


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _iso(t: datetime) -> str:
    return _utc(t).isoformat().replace("+00:00", "Z")


def _parse(text: str | None, option: str = "reference time") -> datetime | None:
    if text is None:
        return None
    try:
        return _utc(datetime.fromisoformat(text.strip().replace("Z", "+00:00")))
    except (ValueError, OverflowError) as exc:
        raise BadReference(
            f"{option}: not a time: {text!r}",
            hint=TIME_FORMS,
        ) from exc
