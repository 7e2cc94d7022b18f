"""The /jam-software routes: thin HTTP over :mod:`logalyzer.store.jam`, plus who may call what.

Admin token: create, list and read pushes, and their impact. Device token: only its own box's
pending pushes and events (another box's RxID is 403, an admin token on a device route too:
fetching marks pushes delivered, which only the box itself may do); :mod:`logalyzer.http.auth`.

Idempotency: ``POST /jam-software/pushes`` requires an ``Idempotency-Key`` header (1-200
printable ASCII characters). The first request with a key answers 201; the same key with the
same body answers 200 with the same push (``replayed: true``); with another body, 409.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Path, Query, Response
from pydantic import BaseModel

from logalyzer.core.files import RXID_PATTERN
from logalyzer.core.jam import EventIn, PushRequest
from logalyzer.http.auth import Admin, Device, Svc, own_box
from logalyzer.http.errors import error_responses
from logalyzer.store import jam

router = APIRouter(prefix="/jam-software", tags=["jam-software"])


PushId = Annotated[UUID, Path(description="the push's id")]


# --------------------------------------------------------------------------- response models


class TargetOut(BaseModel):
    rxid: str
    state: str
    delivered_at: datetime | None
    installed_at: datetime | None
    failed_at: datetime | None
    updated_at: datetime
    last_detail: str | None


class PushOut(BaseModel):
    push_id: UUID
    idempotency_key: str
    package: str
    version: str
    url: str
    sha256: str
    target: dict[str, Any]
    rollout_percent: int
    created_by: str
    created_at: datetime
    counts: dict[str, int]


class PushDetail(PushOut):
    targets: list[TargetOut]


class PushCreated(PushDetail):
    replayed: bool


class PushPage(BaseModel):
    items: list[PushOut]
    next_after: UUID | None  # pass as ?after= for the next page; null on the last page


class PendingPush(BaseModel):
    push_id: UUID
    package: str
    version: str
    url: str
    sha256: str
    created_at: datetime
    state: str
    delivered_at: datetime | None


class PendingOut(BaseModel):
    rxid: str
    pushes: list[PendingPush]


class EventOut(BaseModel):
    event_id: int
    received_at: datetime
    push_id: UUID | None
    state: str | None
    state_changed: bool


class ImpactRow(BaseModel):
    rxid: str
    state: str
    installed_at: datetime | None
    sessions_before: int
    sessions_after: int
    viewing_hours_before: float
    viewing_hours_after: float
    anomaly_rate_before: float | None
    anomaly_rate_after: float | None
    freezes_per_hour_before: float | None
    freezes_per_hour_after: float | None
    black_screens_per_hour_before: float | None
    black_screens_per_hour_after: float | None


class ImpactOut(BaseModel):
    push_id: UUID
    window_hours: int
    summary: dict[str, Any]
    targets: list[ImpactRow]


# --------------------------------------------------------------------------- admin routes


@router.post(
    "/pushes",
    status_code=201,
    response_model=PushCreated,
    summary="Push a package version to boxes (idempotent by the Idempotency-Key header)",
    responses={
        200: {"model": PushCreated, "description": "replay: this key already made this push"},
        **error_responses(401, 403, 409, 413, 503),
    },
)
async def create_push(
    body: PushRequest,
    response: Response,
    token: Admin,
    service: Svc,
    idempotency_key: Annotated[
        str,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=200,
            pattern=r"^[\x21-\x7e]+$",
            description="names this request: a retry with the same key and body returns the "
            "same push",
        ),
    ],
) -> dict:
    res = await service.run(jam.create_push, body, idempotency_key, token.label())
    if not res.created:
        response.status_code = 200
    return {**res.push, "replayed": not res.created}


@router.get(
    "/pushes",
    response_model=PushPage,
    summary="Pushes, newest first, a page at a time",
    responses=error_responses(401, 403, 404, 503),
)
async def list_pushes(
    _token: Admin,
    service: Svc,
    limit: Annotated[int, Query(ge=1, le=500, description="pushes per page")] = 50,
    after: Annotated[UUID | None, Query(description="next_after of the previous page")] = None,
) -> dict:
    items, nxt = await service.run(jam.list_pushes, limit, after)
    return {"items": items, "next_after": nxt}


@router.get(
    "/pushes/{push_id}",
    response_model=PushDetail,
    summary="A push with each target's state and times",
    responses=error_responses(401, 403, 404, 503),
)
async def get_push(push_id: PushId, _token: Admin, service: Svc) -> dict:
    return await service.run(jam.get_push, push_id)


@router.get(
    "/pushes/{push_id}/impact",
    response_model=ImpactOut,
    summary="Sessions before vs after each target's install (jam_push_impact)",
    responses=error_responses(401, 403, 404, 503),
)
async def push_impact(
    push_id: PushId,
    _token: Admin,
    service: Svc,
    window_hours: Annotated[
        int, Query(ge=1, le=24 * 366, description="hours on each side of the install")
    ] = 168,
) -> dict:
    targets, summary = await service.run(jam.impact, push_id, timedelta(hours=window_hours))
    return {
        "push_id": push_id,
        "window_hours": window_hours,
        "summary": summary,
        "targets": targets,
    }


# --------------------------------------------------------------------------- device routes


@router.get(
    "/devices/{rxid}/pending",
    response_model=PendingOut,
    summary="The box's pushes not installed or failed yet; pending ones become delivered",
    responses=error_responses(401, 403, 503),
)
async def pending(
    rxid: Annotated[str, Path(pattern=RXID_PATTERN, description="the box, R + 10 digits")],
    token: Device,
    service: Svc,
) -> dict:
    own_box(token, rxid)
    return {"rxid": rxid, "pushes": await service.run(jam.pending_for_device, rxid)}


@router.post(
    "/events",
    status_code=201,
    response_model=EventOut,
    summary="Record a box's JSON event (at most 64 KiB) and move its push's state",
    responses=error_responses(401, 403, 413, 503),
)
async def post_event(event: EventIn, token: Device, service: Svc) -> dict:
    own_box(token, event.rxid)
    return await service.run(jam.record_event, event)
