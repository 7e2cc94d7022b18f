"""jam-software's rules: what a request may contain, how a target's state moves, who is in a
rollout. Pure: the SQL is :mod:`logalyzer.store.jam`, the routes :mod:`logalyzer.http.jam`.

State machine of a target (one box of one push), by the events the box sends:

    pending ──fetch / download_started / downloaded──► delivered
    pending | delivered ──installed──► installed     (final)
    pending | delivered ──failed────► failed
    failed ──installed──► installed                  (a retry that worked)

Anything else leaves the state where it is: the event is still stored in ``jam_events`` (never
lost) and the target's ``last_detail`` shows it, but a state never moves backwards, so late or
reordered events (``download_started`` after ``installed``, ``failed`` after ``installed``)
cannot undo progress. Times are the server's receipt times (box clocks are not trusted); a
target reaching installed or failed without a fetch gets ``delivered_at`` then too.

The request models are pydantic models with bounds on every field. They are the library's
input contract (:mod:`logalyzer.store.jam` takes them) and the HTTP service's
request bodies, so bad input is refused the same way everywhere, with a message naming the
field. Every string that reaches PostgreSQL is bounded, and what PostgreSQL cannot store at
all (NUL, and lone UTF-16 surrogates that JSON escapes can carry) is replaced by U+FFFD, so
an event is kept rather than refused for it; NaN, infinities and nesting deeper than 32 levels
are refused (422), never a database error.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Annotated, Any
from uuid import UUID

from pydantic import (
    AnyUrl,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from logalyzer.core.files import RXID_PATTERN
from logalyzer.core.storable import clean

RxID = Annotated[str, StringConstraints(pattern=RXID_PATTERN)]
Label = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[ -~]+$")
]  # printable ASCII
STATES = ("pending", "delivered", "installed", "failed")
MAX_TARGET_RXIDS = 4000  # about 60 KB of JSON: what the 64 KiB body limit lets through anyway
MAX_JSON_DEPTH = 32


class FleetFilter(BaseModel):
    """Boxes of the ``devices`` table (their latest BootInfo) matching every given field;
    within a field, any of the listed values."""

    # The schema says what the validators enforce (at least one field; none of them null), so
    # that generated clients and schemathesis see the same contract as the server.
    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})
    model: list[Label] = Field(None, min_length=1, max_length=100, description="box models")
    fw: list[Label] = Field(None, min_length=1, max_length=100, description="firmware versions")
    app: list[Label] = Field(None, min_length=1, max_length=100, description="app versions")

    @model_validator(mode="after")
    def _not_empty(self):
        if self.model is None and self.fw is None and self.app is None:  # also {"model": null}
            raise ValueError(
                "a filter needs at least one of model, fw, app "
                "(a push to the whole fleet lists its models)"
            )
        return self


class Targets(BaseModel):
    """Exactly one of: an explicit list of RxIDs, or a fleet filter."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"oneOf": [{"required": ["rxids"]}, {"required": ["filter"]}]},
    )
    rxids: list[RxID] = Field(
        None, min_length=1, max_length=MAX_TARGET_RXIDS, description="the boxes, R + 10 digits each"
    )
    filter: FleetFilter = Field(
        None, description="or: the boxes of the devices table matching this"
    )

    @field_validator("rxids")
    @classmethod
    def _canonical(cls, v):
        return sorted(set(v)) if v is not None else v  # the same set is the same request

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.rxids is None) == (self.filter is None):
            raise ValueError("give exactly one of 'rxids' (a list of RxIDs) and 'filter'")
        return self


class PushRequest(BaseModel):
    """A push: which package version, where to download it, its hash, and to which boxes."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "package": "com.example.player",
                "version": "4.2.1",
                "url": "https://apps.example.com/player-4.2.1.apk",
                "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                "targets": {"filter": {"model": ["STB-200"], "fw": ["9.1.3"]}},
                "rollout_percent": 10,
            }
        },
    )

    package: str = Field(
        max_length=255,
        pattern=r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+$",
        description="Android package name, e.g. com.example.player",
    )
    version: str = Field(
        max_length=64,
        pattern=r"^[0-9A-Za-z][0-9A-Za-z._+-]*$",
        description="version name, e.g. 4.2.1",
    )
    url: AnyUrl = Field(description="https download URL of the package (no credentials in it)")
    sha256: str = Field(
        min_length=64,
        max_length=64,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="SHA-256 of the package file, 64 hex digits",
    )
    targets: Targets
    rollout_percent: int = Field(
        100, ge=1, le=100, description="share of the matching boxes to target (deterministic)"
    )

    @field_validator("url")
    @classmethod
    def _https_only(cls, v: AnyUrl) -> AnyUrl:
        if v.scheme != "https":
            raise ValueError(f"the download URL must use https, not {v.scheme}")
        if v.username or v.password:
            raise ValueError("the download URL must not hold credentials")
        if not v.host or len(str(v)) > 2048:
            raise ValueError("the download URL needs a host and at most 2048 characters")
        return v

    @field_validator("sha256")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.lower()

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of the validated request: what 'the same body' means
        for idempotency (key order, case of the hash, order of RxIDs do not matter)."""
        text = json.dumps(
            self.model_dump(mode="json", exclude_none=True), sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(text.encode()).hexdigest()


class EventIn(BaseModel):
    """A box's report: any JSON object with at least ``rxid`` and ``event_type``; stored whole.

    ``event_type`` values that move a push's state: ``download_started``/``downloaded``
    (delivered), ``installed``, ``failed``; any other type is recorded only.
    """

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "example": {
                "rxid": "R1234567890",
                "event_type": "installed",
                "push_id": "5f0c6c1e-8a57-4c1b-9a51-6b9b0a1f7d21",
                "detail": "4.2.1 installed in 12 s",
            }
        },
    )

    rxid: RxID = Field(description="the reporting box (must be the token's box)")
    event_type: str = Field(
        max_length=64,
        pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$",
        description="e.g. download_started, installed, failed, or your own",
    )
    push_id: UUID | None = Field(None, description="the push the event is about, if any")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        if isinstance(data, dict):
            problem = json_problem(data)
            if problem:
                raise ValueError(problem)
            data = clean(data)
        return data

    def detail(self) -> str:
        """The line kept in ``jam_targets.last_detail``: the type, plus detail/error/message."""
        extra = self.model_extra or {}
        said = next(
            (extra[k] for k in ("detail", "error", "message") if isinstance(extra.get(k), str)), ""
        )
        return (f"{self.event_type}: {said}" if said else self.event_type)[:500]


def json_problem(value: Any, depth: int = 0, path: str = "$") -> str | None:
    """Why this parsed JSON is refused (not JSON numbers, or unreasonably deep), else None."""
    if depth > MAX_JSON_DEPTH:
        return f"JSON nested deeper than {MAX_JSON_DEPTH} levels at {path}"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value} is not a JSON number (at {path})"
    if isinstance(value, dict):
        for k, v in value.items():
            if p := json_problem(v, depth + 1, f"{path}.{str(k)[:40]}"):
                return p
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if p := json_problem(v, depth + 1, f"{path}[{i}]"):
                return p
    return None


# --------------------------------------------------------------------------- state rules

#: event_type -> the state it moves a target to, and the states it may move it from.
TRANSITIONS: dict[str, tuple[str, frozenset[str]]] = {
    "download_started": ("delivered", frozenset({"pending"})),
    "downloaded": ("delivered", frozenset({"pending"})),
    "installed": ("installed", frozenset({"pending", "delivered", "failed"})),
    "failed": ("failed", frozenset({"pending", "delivered"})),
}


def next_state(current: str, event_type: str) -> str | None:
    """The state an event moves a target in ``current`` to, or None if it does not move it."""
    rule = TRANSITIONS.get(event_type.lower())
    if rule is None or current not in rule[1]:
        return None
    return rule[0]


def in_rollout(push_id: UUID, rxid: str, percent: int) -> bool:
    """Whether a matching box is in the push's rollout share: a hash of (push id, RxID) mod
    100 — deterministic (re-resolving gives the same boxes) and independent between pushes."""
    if percent >= 100:
        return True
    h = hashlib.sha256(f"{push_id}:{rxid}".encode()).digest()
    return int.from_bytes(h[:8], "big") % 100 < percent
