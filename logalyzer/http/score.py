"""``POST /v1/score`` and ``POST /v1/models/reload``: anomaly scores of playback sessions.

A request holds 1 to :data:`MAX_SESSIONS` items; each is either a session's **measures** (the
``sessions`` table's columns the detectors read, :data:`logalyzer.core.features.MEASURES`,
plus optional ``event_keys`` for the LSTM) or the **raw log lines** of a box
(``{"lines": [...]}`` or one text), which are parsed, cut into sessions and measured by the
batch jobs' own code (:mod:`logalyzer.core.rawlines`); raw lines holding several sessions give a
result per session. Without ``event_keys`` only the autoencoder scores a session. With
``rxid`` the autoencoder reads the session's counts against what that box usually has
(:class:`logalyzer.core.features.BoxNormals`, kept in its checkpoint); without it, or for a
box it was not trained on, against the fleet's usual.

Who may call (a product decision, documented in the README):

- ``/v1/score`` needs a valid token, admin or device. Scoring changes nothing, but it costs
  CPU (a request may carry a thousand sessions), and the models encode what the fleet's
  normal looks like: nothing beyond health checks is open to anonymous callers.
- ``?store=true`` also writes the scores (``anomalies``, ``anomalies_consolidated``) with
  :func:`logalyzer.store.scores.write_scores`, the batch job's code: admin token only. A device
  token gets 403: a box that could store its own scores could post made-up measures for its
  flagged sessions and erase the batch verdict. Every stored session needs ``rxid`` and
  ``session_id`` (raw lines: ``rxid``; the id is computed) and must exist in ``sessions``,
  or nothing is stored and the answer is 409 naming the missing ones: dashboards join the
  scores to ``sessions``, and the consolidated row's ``start_ts`` is the stored session's.
- ``/v1/models/reload``: admin token.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Literal
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    create_model,
    field_validator,
)
from pydantic_core import to_json

from logalyzer.core.features import FEATURE_COLUMNS, KINDS, MEASURES, Measure
from logalyzer.core.files import RXID_PATTERN
from logalyzer.core.rawlines import sessions_from_lines
from logalyzer.core.verdict import consolidate, ratio, verdict_kinds
from logalyzer.errors import Forbidden, UnknownSessions
from logalyzer.http.auth import Admin, Caller
from logalyzer.http.errors import error_responses
from logalyzer.http.scoring import ScoringEngine
from logalyzer.store.scores import session_start_times, write_scores
from logalyzer.store.tokens import Token

MAX_SESSIONS = 1000  # items per request
MAX_LINES = 20_000  # raw lines per item
MAX_LINE_CHARS = 65_536  # the ingest's line limit
MAX_TEXT_CHARS = 4_000_000
MAX_KEYS = 20_000  # event keys per session
ZONES = sorted(z for z in available_timezones() if "/" in z or z == "UTC")

router = APIRouter(prefix="/v1", tags=["scoring"])

RxID = Annotated[str, StringConstraints(pattern=RXID_PATTERN)]
Key = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Line = Annotated[str, StringConstraints(max_length=MAX_LINE_CHARS)]


# --------------------------------------------------------------------------- request models


def _measure_field(m: Measure) -> tuple:
    """A ``sessions`` column as a pydantic field: its type, default and bounds."""
    kind = m.kind | None if m.nullable else m.kind
    if m.kind is bool:
        return kind, m.default
    return kind, Field(m.default, ge=0, le=m.high)


#: What ``rxid`` does in a scoring request (both kinds of item).
BOX_DOC = (
    "the box: the autoencoder reads the counts against its usual (the fleet's when absent or"
    " not trained on); needed to store the scores"
)

#: A session as the ``sessions`` table measures it (columns of LOG_FORMAT.md section 4): built
#: from :data:`logalyzer.core.features.MEASURES`, so the request accepts exactly what the
#: detectors read.
MeasuresIn = create_model(
    "MeasuresIn",
    __config__=ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "example": {
                "rxid": "R0000000001",
                "session_id": "2f1c7a3e-5b8d-4c1e-9a7f-0d2b6e4c8a10",
                "duration_s": 1800,
                "ttff_ms": 850,
                "video_freeze_count": 14,
                "video_freeze_ms": 42000,
                "event_count": 31,
                "event_keys": [
                    "ChangeContent",
                    "FirstFrame",
                    "VideoFreeze:start",
                    "VideoFreeze:end",
                ],
            }
        },
    ),
    __doc__="A session as the ``sessions`` table measures it (columns of LOG_FORMAT.md section 4).",
    rxid=(RxID | None, Field(None, description=BOX_DOC)),
    session_id=(UUID | None, None),
    **{name: _measure_field(m) for name, m in MEASURES.items()},
    event_keys=(
        list[Key] | None,
        Field(
            None,
            max_length=MAX_KEYS,
            description="the session's event keys in order (features.event_key); "
            "without them only the autoencoder scores",
        ),
    ),
)


class LinesIn(BaseModel):
    """Raw logcat lines of one box: every session in them is scored."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "rxid": "R0000000001",
                "lines": [
                    "03-17 08:00:00.000  1200  1300 I VAR     : "
                    "PLAYER|onChange|ChangeContent|cid=101 src=live seq=1",
                    "03-17 08:00:00.850  1200  1300 I VAR     : "
                    "PLAYER|onFrame|FirstFrame|ttff_ms=850 seq=2",
                ],
                "anchor": "2024-03-17",
            }
        },
    )

    rxid: RxID | None = Field(None, description=BOX_DOC + "; session ids derive from it")
    lines: list[Line] | Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)] = Field(
        description=f"logcat lines: a list (at most {MAX_LINES}) or one text with newlines"
    )
    tz: str | None = Field(
        None,
        description="IANA zone of headers without an offset (default: LOGALYZER_TZ)",
        json_schema_extra={"enum": ZONES},
    )
    anchor: date | None = Field(
        None,
        description="date the lines were written around, for headers without "
        "a year (default: today; years outside 1971-9998 are clamped)",
    )

    @field_validator("lines")
    @classmethod
    def _bounded(cls, v):
        n = len(v) if isinstance(v, list) else v.count("\n") + 1
        if n > MAX_LINES:
            raise ValueError(f"at most {MAX_LINES} lines per item (got {n})")
        return v

    @field_validator("tz")
    @classmethod
    def _zone(cls, v):
        if v is None:
            return v
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v


def _anchor(d: date | None) -> datetime:
    d = d or date.today()
    return datetime(min(max(d.year, 1971), 9998), d.month, min(d.day, 28), 12)


def _kind(v) -> str:
    return "lines" if isinstance(v, dict) and "lines" in v else "measures"


Item = Annotated[
    Annotated[MeasuresIn, Tag("measures")] | Annotated[LinesIn, Tag("lines")], Discriminator(_kind)
]


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sessions: list[Item] = Field(
        min_length=1,
        max_length=MAX_SESSIONS,
        description=f"1 to {MAX_SESSIONS} sessions (measures) or raw-line items",
    )


class ReloadRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"versions": {"lstm": 3}}}
    )
    versions: dict[Literal[KINDS], Annotated[int, Field(ge=1, le=2**31 - 1)] | None] = Field(
        default_factory=dict,
        description="versions to serve; a detector not named (or null): the newest",
    )


# --------------------------------------------------------------------------- response models


class DetectorScore(BaseModel):
    score: float | None = Field(
        description="the detector's score (LSTM: misses + tie-break; AE: reconstruction error)"
    )
    threshold: float | None
    ratio: float | None = Field(
        description="score / threshold: > 1 is flagged (comparable across detectors)"
    )
    is_anomaly: bool
    model_version: int
    details: dict = Field(
        description="what drove the score: unexpected transitions (lstm) or top features (ae)"
    )


class SessionScore(BaseModel):
    item: int = Field(description="index of the request item this session came from")
    source: Literal["measures", "lines"]
    rxid: str | None
    session_id: UUID | None
    start_ts: datetime | None = Field(None, description="raw lines: the session's first event")
    end_ts: datetime | None = None
    is_anomaly: bool = Field(
        description="the combined verdict (core.verdict): the autoencoder above its threshold,"
        " or the LSTM when it learnt from a reference history; otherwise the LSTM's flag is a"
        " second opinion, in `detectors`"
    )
    detectors: list[str] = Field(description="the detectors that flagged it")
    scores: dict[str, DetectorScore]
    reasons: dict = Field(
        description='{"features": [...], "transitions": [...]} (core.verdict.consolidate)'
    )
    measures: dict | None = Field(None, description="raw lines: the measures computed from them")
    event_keys: list[str] | None = Field(None, description="raw lines: the session's event keys")


class ScoreResponse(BaseModel):
    sessions: list[SessionScore]
    empty_items: list[int] = Field(
        description="raw-line items that held no playback session (no VAR "
        "events, or none from a ChangeContent on)"
    )
    model_versions: dict[str, int]
    stored: int = Field(description="sessions whose scores were written (store=true)")


class ReloadResponse(BaseModel):
    before: dict[str, int]
    after: dict[str, int]


# --------------------------------------------------------------------------- routes


def _invalid(loc: list, msg: str) -> RequestValidationError:
    """A 422 shaped like every other validation error (field and reason)."""
    return RequestValidationError([{"loc": loc, "type": "value_error", "msg": msg}])


def _finite(x) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def _prepare(body: ScoreRequest, tz: str) -> list[dict]:
    """Request items → flat sessions: measures dicts with ``event_keys`` (or None) and where
    they came from. Raw lines are parsed and measured here (by :mod:`logalyzer.core.rawlines`)."""
    flat: list[dict] = []
    for i, item in enumerate(body.sessions):
        if isinstance(item, MeasuresIn):
            m = item.model_dump(exclude={"event_keys"})
            m["session_id"] = str(item.session_id) if item.session_id else None
            flat.append({**m, "event_keys": item.event_keys, "_item": i, "_source": "measures"})
            continue
        try:
            found = sessions_from_lines(
                item.lines, item.rxid or "R0000000000", item.tz or tz, _anchor(item.anchor)
            )
        except (ValueError, OverflowError) as exc:  # e.g. times past year 9999
            raise _invalid(["body", "sessions", i, "lines"], f"unreadable lines: {exc}") from exc
        for m, keys in found:
            if item.rxid is None:
                m["rxid"] = m["session_id"] = None
            flat.append({**m, "event_keys": keys, "_item": i, "_source": "lines"})
    return flat


def _check_store(token: Token, flat: list[dict]) -> None:
    missing = sorted({s["_item"] for s in flat if not s.get("rxid") or not s.get("session_id")})
    if missing:
        raise _invalid(
            ["query", "store"],
            f"store=true needs rxid and session_id for every session (items "
            f"{missing[:10]} lack them; raw lines: give rxid)",
        )
    if not token.is_admin:  # a box must not write its own verdict (it could erase its flags)
        raise Forbidden(
            f"a device token ({token.rxid}) may score but not store scores",
            hint="scores are stored by `logalyzer detect` or with an admin token",
        )


def _start_times(service, flat: list[dict]) -> None:
    """Fill in each session's stored ``start_ts``; 409 when any is not in ``sessions``."""
    keys = sorted({(s["rxid"], s["session_id"]) for s in flat})
    with service.connection() as conn:
        found = session_start_times(conn, keys)
    absent = [f"{r}/{i}" for r, i in keys if (r, i) not in found]
    if absent:
        raise UnknownSessions(
            f"{len(absent)} session(s) not in the sessions table, nothing stored: "
            f"{', '.join(absent[:5])}{' ...' if len(absent) > 5 else ''}"
        )
    for s in flat:
        s["start_ts"] = found[(s["rxid"], s["session_id"])]


def _store(service, models, flat: list[dict], verdicts) -> int:
    rows = [{**s, "session_id": uuid.UUID(s["session_id"])} for s in flat]
    with service.connection() as conn:
        write_scores(conn, models, rows, verdicts)
    return len(rows)


def _ts(t) -> datetime | None:
    if isinstance(t, datetime):
        return t
    return datetime.fromtimestamp(t / 1000, UTC) if isinstance(t, int) else None


def _answer(flat: list[dict], verdicts, models, stored: int, items: int) -> Response:
    """The JSON answer, shaped as :class:`ScoreResponse` (its documented schema), built as plain
    dicts and serialised once by pydantic-core. Why not the models themselves: every value is
    ours and already of its field's type, and building a thousand ``SessionScore`` objects (even
    with ``model_construct``) cost more than scoring them (profiled: bench/README.md).
    ``tests/test_score.py`` checks answers against ``ScoreResponse`` itself."""
    out = []
    versions = models.versions
    kinds = verdict_kinds(models.detectors)  # the LSTM's flag counts if it had a reference
    for s, vs in zip(flat, verdicts):
        is_anomaly, flagged, reasons = consolidate(vs, kinds)
        raw = s["_source"] == "lines"
        sid = s.get("session_id")
        out.append(
            {
                "item": s["_item"],
                "source": s["_source"],
                "rxid": s.get("rxid"),
                "session_id": None if sid is None else str(sid),
                "start_ts": _ts(s.get("start_ts")) if raw else None,
                "end_ts": _ts(s.get("end_ts")) if raw else None,
                "is_anomaly": bool(is_anomaly),
                "detectors": flagged,
                "scores": {
                    k: {
                        "score": _finite(v.score),
                        "threshold": _finite(v.threshold),
                        "ratio": _finite(ratio(v)),
                        "is_anomaly": bool(v.is_anomaly),
                        "model_version": versions[k],
                        "details": v.details,
                    }
                    for k, v in vs.items()
                },
                "reasons": reasons,
                "measures": {c: s[c] for c in FEATURE_COLUMNS} if raw else None,
                "event_keys": s["event_keys"] if raw else None,
            }
        )
    empty = sorted(set(range(items)) - {s["_item"] for s in flat})
    body = {"sessions": out, "empty_items": empty, "model_versions": versions, "stored": stored}
    return Response(to_json(body), media_type="application/json")


@router.post(
    "/score",
    response_model=ScoreResponse,
    summary="Anomaly scores of playback sessions",
    responses=error_responses(401, 403, 409, 413, 503),
)
async def score(
    request: Request,
    body: ScoreRequest,
    token: Caller,
    store: Annotated[
        bool, Query(description="also write the scores to anomalies / anomalies_consolidated")
    ] = False,
) -> Response:
    service = request.app.state.service
    engine = service.scorer
    engine.check_ready()
    raw = any(
        isinstance(i, LinesIn) for i in body.sessions
    )  # parsing lines is work: off the event loop
    flat = (
        await run_in_threadpool(_prepare, body, service.settings.tz)
        if raw
        else _prepare(body, service.settings.tz)
    )
    if store:
        _check_store(token, flat)
        await run_in_threadpool(_start_times, service, flat)
    verdicts, models, batch = await engine.score(flat)
    stored = (
        await run_in_threadpool(_store, service, models.detectors, flat, verdicts) if store else 0
    )
    answer = _answer(flat, verdicts, models, stored, len(body.sessions))
    answer.headers["X-Score-Batch"] = str(batch)  # sessions scored together with these
    return answer


@router.post(
    "/models/reload",
    response_model=ReloadResponse,
    summary="Serve the newest (or the given) detector versions; admin token",
    responses=error_responses(401, 403, 404, 503),
)
async def reload(
    request: Request, token: Admin, body: Annotated[ReloadRequest | None, Body()] = None
) -> ReloadResponse:
    engine = request.app.state.service.scorer
    before, after = await run_in_threadpool(
        engine.reload, dict((body or ReloadRequest()).versions), token.label()
    )
    return ReloadResponse(before=before, after=after)


def enable(service) -> APIRouter:
    """Give ``service`` a scoring engine (loaded in the background when the app starts) and a
    "models" readiness check; return the router to mount with ``create_api(routers=...)``."""
    if getattr(service, "scorer", None) is None:
        service.scorer = ScoringEngine(service)
        service.background.append(service.scorer)
        service.readiness_checks["models"] = service.scorer.check_ready
    return router
