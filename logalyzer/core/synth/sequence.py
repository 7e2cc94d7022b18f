"""Sequence-only faults: sessions whose amounts are ordinary and whose order of events is not.

A mixin of :class:`.timeline._Planner`, opt-in: only when ``FleetSpec.sequence_faults > 0``
does an anomalous session (one not given a system fault) get a sequence-only fault instead of
a playback anomaly (with that probability, the kind rotating per device over
`SEQUENCE_FAULT_KINDS`), so every fleet of the default spec stays byte-identical. Such a
session is labelled with its kind in ``ground_truth.json``. They are what only an order-aware
detector (the LSTM) can find: the autoencoder and the baseline read the ``sessions`` row's
measures, and those stay those of an ordinary session.

**How the amounts stay ordinary, by construction.** Each fault session starts as an ordinary
session: :meth:`_Playback.ordinary_items` draws it exactly as a normal session is drawn (the
same durations, the same incidents at the same rates, the same ABR switches), redrawn until it
holds what the kind rewrites (a freeze, an incident, ABR switches). Then only the order of its
events, or an event no measure reads, is changed:

- ``first_frame_late`` (the realisable form of "first frame before the tune": a session
  *starts* at its ChangeContent, ``core.sessions.cut``, so nothing of it can precede the tune):
  the FirstFrame is logged after the session's first playback incident (a display drop,
  freeze, rebuffering, trick mode or error), so the player reports trouble with a picture it
  has not shown yet. The FirstFrame keeps its ``ttff_ms``, which is what ``ttff_ms`` is read
  from: a permutation, every measure unchanged.
- ``freeze_end_without_start``: one freeze is logged as a ``VideoFreeze state=end`` with its
  ``dur_ms`` and no ``state=start`` before it. An end without a start counts one freeze of
  its ``dur_ms`` (LOG_FORMAT.md section 4), exactly what the one-line freezes ordinary sessions
  log (``VideoFreeze dur_ms=...``, no state) count: freeze count, freeze time and share are
  unchanged; when the freeze was a start/end pair the session has one event fewer (as the
  same session with a one-line freeze has).
- ``playback_in_standby``: an ABR switch (``ResolutionChange``, which no measure but the event
  count reads) is logged as a ``StandbyExit``: the box reports waking from standby in the
  middle of playback, so everything before it (tune, first frame, incidents) played while
  the box believed it was in standby. ``standby_count`` counts StandbyEnter only; the event
  count is unchanged.
- ``tune_loop``: each of the session's ABR switches (two or more) is logged as a new
  FirstFrame: the player re-tunes the same content again and again instead of switching
  bitrate, without a ChangeContent. Only the session's first FirstFrame gives its ``ttff_ms``,
  and the event count is unchanged.

So the autoencoder's features and the baseline's counts of a fault session are those of an
ordinary session the generator draws anyway (``tests/test_synth_sequence.py`` checks both
the order and the measures). The choice of sessions that hold a freeze, an incident or ABR
switches makes them longer and busier than the average session, never outside what ordinary
sessions do.
"""

from __future__ import annotations

from .cohorts import cohort_duration
from .spec import _MIN, PLAYBACK_TYPES, SEQUENCE_FAULT_KINDS

#: Ordinary draws tried before giving up on a session with what the kind rewrites (the rarest,
#: a freeze, is in about one ordinary session of fifteen).
_TRIES = 2000
#: Longer than any ordinary session (`_Playback.ordinary_items`: at most 55 minutes, times
#: the box's duration factor of :mod:`.cohorts`).
_LONGEST = 56 * _MIN


class _SequenceFaults:
    """Sequence-only anomalous sessions of the planner (see the module)."""

    def sequence_fault(self, t: int) -> str | None:
        """The sequence kind for an anomalous session starting at ``t``, or None (no draw at all
        when off). Only where the longest ordinary session fits before the log's end: a fault
        cut off by the end of the log would be labelled and not be there."""
        p = getattr(self.spec, "sequence_faults", 0.0) or 0.0
        if (
            p <= 0
            or self.r.random() >= p
            or self.end_ms - t <= _LONGEST * max(1.0, cohort_duration(self))
        ):
            return None
        n = getattr(self, "_sequence_n", 0)
        self._sequence_n = n + 1
        return SEQUENCE_FAULT_KINDS[(n + self.dev.index) % len(SEQUENCE_FAULT_KINDS)]

    def sequence_items(self, kind: str, ttff: int, src: str) -> tuple[int, list]:
        """Duration and VAR items (offsets from the ChangeContent) of one session with a
        sequence-only fault: an ordinary draw, reordered (see the module)."""
        rewrite = {
            "first_frame_late": self._first_frame_late,
            "freeze_end_without_start": self._freeze_end_without_start,
            "playback_in_standby": self._playback_in_standby,
            "tune_loop": self._tune_loop,
        }[kind]
        for _ in range(_TRIES):
            dur, items = self.ordinary_items(ttff, src)
            out = rewrite(sorted(items, key=lambda x: x[0]))
            if out is not None:
                return dur, out
        raise RuntimeError(f"no ordinary session to give {kind} in {_TRIES} draws")

    # each rewrite takes an ordinary session's items in offset order and returns them with the
    # fault, or None when the session lacks what the kind needs (the caller draws again)

    def _first_frame_late(self, items: list) -> list | None:
        ff = [i for i, it in enumerate(items) if it[1] == "FirstFrame"]
        incidents = [
            i for i, it in enumerate(items) if it[1] in PLAYBACK_TYPES and it[1] != "FirstFrame"
        ]
        if len(ff) != 1 or not incidents:
            return None
        first = items[incidents[0]]
        at = first[0] + self.r.randint(20, 400)
        nxt = [it[0] for it in items if it[0] > first[0]]
        if nxt and at >= min(nxt):  # right after the incident's event, before the next one
            at = (first[0] + min(nxt)) // 2
        if at <= first[0]:
            return None
        moved = items[ff[0]]
        rest = [it for i, it in enumerate(items) if i != ff[0]]
        # not droppable: a lost first incident line would leave no trace of the fault
        rest = [(*it[:3], False) if it is first else it for it in rest]
        return rest + [(at, "FirstFrame", moved[2])]

    def _freeze_end_without_start(self, items: list) -> list | None:
        freezes = [i for i, it in enumerate(items) if it[1] == "VideoFreeze"]
        ends = [i for i in freezes if items[i][2].get("state") != "start"]
        if not ends:
            return None
        i = ends[self.r.randrange(len(ends))]
        off, _, data, *_ = items[i]
        state = data.get("state")
        if state is None:  # a one-line freeze: the same line, marked as an end
            items[i] = (off, "VideoFreeze", {"state": "end", **data}, False)
            return items
        if state == "end":  # the end of a pair: drop its start, keep the length
            starts = [j for j in freezes if j < i and items[j][2].get("state") == "start"]
            if not starts:
                return None
            j = starts[-1]
            if "dur_ms" not in data:
                data = {**data, "dur_ms": off - items[j][0]}
            items[i] = (off, "VideoFreeze", data, False)
            del items[j]
            return items
        return None

    def _abr(self, items: list) -> list[int]:
        """Indices of the ABR switches (an ordinary session's only ResolutionChange items)."""
        return [i for i, it in enumerate(items) if it[1] == "ResolutionChange"]

    def _playback_in_standby(self, items: list) -> list | None:
        abr = self._abr(items)
        if not abr or not any(it[1] == "FirstFrame" for it in items):
            return None
        i = abr[self.r.randrange(len(abr))]
        reason = self.r.choice(("power_key", "cec_wakeup"))
        items[i] = (items[i][0], "StandbyExit", {"reason": reason}, False)
        return items

    def _tune_loop(self, items: list) -> list | None:
        abr = self._abr(items)
        if len(abr) < 2 or not any(it[1] == "FirstFrame" for it in items):
            return None
        for i in abr:
            ttff = self.r.randint(350, 2200)
            items[i] = (items[i][0], "FirstFrame", self.first_frame(ttff), False)
        return items
