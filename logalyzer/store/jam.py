"""jam-software: push an app version to boxes, follow each box through the rollout, and
measure what the new version did to playback: the SQL. No HTTP here.

The state machine of a target and the rollout rule are pure: :mod:`logalyzer.core.jam`.

Idempotent creation: the caller names each push with a key (the ``Idempotency-Key`` header).
The same key with the same validated body returns the first push; with a different body it is
:class:`~logalyzer.errors.IdempotencyConflict`. Concurrent requests with one key are serialised
by the unique index: the second waits for the first and then finds its push.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from logalyzer.core.jam import STATES, EventIn, PushRequest, Targets, in_rollout, next_state
from logalyzer.errors import IdempotencyConflict, NotFound

PENDING_LIMIT = 100
_PUSH_COLUMNS = (
    "push_id, idempotency_key, package, version, url, sha256, target, rollout_percent,"
    " created_by, created_at"
)
_TARGET_COLUMNS = "rxid, state, delivered_at, installed_at, failed_at, updated_at, last_detail"


@dataclass
class Created:
    push: dict
    created: bool  # False: the same request was made before under this key (a replay)


# --------------------------------------------------------------------------- pushes


def create_push(
    conn: psycopg.Connection, req: PushRequest, idempotency_key: str, created_by: str
) -> Created:
    """Create a push and its targets in one transaction, or return the push this key made."""
    fingerprint = req.fingerprint()
    push_id = uuid.uuid4()
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO jam_pushes (push_id, idempotency_key, request_hash, package, version, url,"
            " sha256, target, rollout_percent, created_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (idempotency_key) DO NOTHING RETURNING push_id",
            (
                push_id,
                idempotency_key,
                fingerprint,
                req.package,
                req.version,
                str(req.url),
                req.sha256,
                Jsonb(req.targets.model_dump(mode="json", exclude_none=True)),
                req.rollout_percent,
                created_by,
            ),
        ).fetchone()
        if row is None:
            first = conn.execute(
                "SELECT push_id, request_hash FROM jam_pushes WHERE idempotency_key = %s",
                (idempotency_key,),
            ).fetchone()
            if first[1] != fingerprint:
                raise IdempotencyConflict(
                    f"Idempotency-Key {idempotency_key!r} was used for a different push "
                    f"({first[0]})"
                )
            return Created(get_push(conn, first[0]), created=False)
        chosen = [
            r
            for r in resolve_targets(conn, req.targets)
            if in_rollout(push_id, r, req.rollout_percent)
        ]
        if chosen:
            conn.execute(
                "INSERT INTO jam_targets (push_id, rxid) SELECT %s, unnest(%s::text[])",
                (push_id, chosen),
            )
    return Created(get_push(conn, push_id), created=True)


def resolve_targets(conn: psycopg.Connection, targets: Targets) -> list[str]:
    """The RxIDs a target spec names, sorted: the list itself (a box need not be known yet),
    or the boxes of ``devices`` matching the filter."""
    if targets.rxids is not None:
        return list(targets.rxids)
    conds, params = [], []
    for column in ("model", "fw", "app"):
        values = getattr(targets.filter, column)
        if values is not None:
            conds.append(sql.SQL("{} = ANY(%s::text[])").format(sql.Identifier(column)))
            params.append(values)
    q = sql.SQL("SELECT rxid FROM devices WHERE {} ORDER BY rxid").format(
        sql.SQL(" AND ").join(conds)
    )
    return [r[0] for r in conn.execute(q, params)]


def get_push(conn: psycopg.Connection, push_id: uuid.UUID) -> dict:
    """A push with its targets (each with state and times) and counts by state."""
    with conn.cursor(row_factory=dict_row) as cur:
        push = cur.execute(
            f"SELECT {_PUSH_COLUMNS} FROM jam_pushes WHERE push_id = %s", (push_id,)
        ).fetchone()
        if push is None:
            raise NotFound(f"no push {push_id}")
        push["targets"] = cur.execute(
            f"SELECT {_TARGET_COLUMNS} FROM jam_targets WHERE push_id = %s ORDER BY rxid",
            (push_id,),
        ).fetchall()
    push["counts"] = {s: sum(t["state"] == s for t in push["targets"]) for s in STATES}
    return push


def list_pushes(
    conn: psycopg.Connection, limit: int = 50, after: uuid.UUID | None = None
) -> tuple[list[dict], uuid.UUID | None]:
    """Pushes newest first, with counts by state; returns (page, ``after`` of the next page or
    None). Keyset paging on (created_at, push_id): stable while new pushes arrive. The cursor is
    the last push id of the previous page, so any well-formed value is meaningful."""
    where = sql.SQL("")
    params: list = []
    if after is not None:
        if conn.execute("SELECT 1 FROM jam_pushes WHERE push_id = %s", (after,)).fetchone() is None:
            raise NotFound(f"no push {after} to page after")
        where = sql.SQL(
            "WHERE (p.created_at, p.push_id) <"
            " (SELECT created_at, push_id FROM jam_pushes WHERE push_id = %s)"
        )
        params.append(after)
    q = sql.SQL(
        "SELECT {cols}, coalesce(c.counts, '{{}}'::jsonb) AS counts FROM jam_pushes p"
        " LEFT JOIN LATERAL (SELECT jsonb_object_agg(state, n) AS counts FROM"
        "  (SELECT state, count(*) AS n FROM jam_targets t WHERE t.push_id = p.push_id"
        " GROUP BY state) s) c ON true"
        " {where} ORDER BY p.created_at DESC, p.push_id DESC LIMIT %s"
    ).format(
        cols=sql.SQL(", ").join(
            sql.SQL("p.") + sql.Identifier(c.strip()) for c in _PUSH_COLUMNS.split(",")
        ),
        where=where,
    )
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(q, [*params, limit + 1]).fetchall()
    for r in rows:
        r["counts"] = {s: r["counts"].get(s, 0) for s in STATES}
    nxt = rows[limit - 1]["push_id"] if len(rows) > limit else None
    return rows[:limit], nxt


# --------------------------------------------------------------------------- device side


def pending_for_device(conn: psycopg.Connection, rxid: str) -> list[dict]:
    """The box's pushes not installed or failed yet, oldest first; pending ones become
    delivered. Delivered ones are returned again, so a box that lost the answer (or crashed
    mid-install) still learns of them on its next fetch."""
    with conn.transaction():
        conn.execute(
            "UPDATE jam_targets SET state = 'delivered', delivered_at = now(), updated_at = now()"
            " WHERE rxid = %s AND state = 'pending'",
            (rxid,),
        )
        with conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                "SELECT p.push_id, p.package, p.version, p.url, p.sha256, p.created_at, t.state,"
                " t.delivered_at"
                " FROM jam_targets t JOIN jam_pushes p USING (push_id)"
                " WHERE t.rxid = %s AND t.state IN ('pending', 'delivered')"
                " ORDER BY p.created_at, p.push_id LIMIT %s",
                (rxid, PENDING_LIMIT),
            ).fetchall()


def record_event(conn: psycopg.Connection, event: EventIn) -> dict:
    """Store a box's event and move its target by the state machine (module docstring).

    Returns the event id and receipt time, and for an event about a push: the target's state
    after it, whether the event moved it, and ``state`` None when the box is not a target of
    that push (the event is kept all the same).
    """
    body = event.model_dump(mode="json")
    with conn.transaction():
        eid, received_at = conn.execute(
            "INSERT INTO jam_events (rxid, push_id, event_type, body) VALUES (%s, %s, %s, %s)"
            " RETURNING id, received_at",
            (event.rxid, event.push_id, event.event_type, Jsonb(body)),
        ).fetchone()
        out = {
            "event_id": eid,
            "received_at": received_at,
            "push_id": event.push_id,
            "state": None,
            "state_changed": False,
        }
        if event.push_id is None:
            return out
        row = conn.execute(
            "SELECT state FROM jam_targets WHERE push_id = %s AND rxid = %s FOR UPDATE",
            (event.push_id, event.rxid),
        ).fetchone()
        if row is None:
            return out
        new = next_state(row[0], event.event_type)
        conn.execute(
            "UPDATE jam_targets SET last_detail = %(detail)s, updated_at = %(t)s::timestamptz,"
            " state = coalesce(%(new)s::text, state),"
            " delivered_at = CASE WHEN %(new)s::text IS NULL THEN delivered_at"
            " ELSE coalesce(delivered_at, %(t)s::timestamptz) END,"
            " installed_at = CASE WHEN %(new)s::text = 'installed' THEN %(t)s::timestamptz"
            " ELSE installed_at END,"
            " failed_at = CASE WHEN %(new)s::text = 'failed' THEN %(t)s::timestamptz"
            " ELSE failed_at END"
            " WHERE push_id = %(push)s AND rxid = %(rxid)s",
            {
                "detail": event.detail(),
                "t": received_at,
                "new": new,
                "push": event.push_id,
                "rxid": event.rxid,
            },
        )
        out.update(state=new or row[0], state_changed=new is not None)
    return out


# --------------------------------------------------------------------------- impact


#: What the pooled summary gives for each side of the install.
_POOLED = (
    "sessions",
    "viewing_hours",
    "anomaly_rate",
    "freezes_per_hour",
    "black_screens_per_hour",
)


def _pooled(side: str) -> str:
    """SQL for one side of the pooled summary (``side`` is "before" or "after", never input):
    the installed targets' sessions and hours summed, the rates recomputed from those sums."""
    inst = "FILTER (WHERE installed_at IS NOT NULL)"
    hours = f"sum(viewing_hours_{side}) {inst}"
    pooled = lambda rate: f"sum(coalesce({rate}_{side}, 0) * viewing_hours_{side}) {inst}"
    return (
        f"coalesce(sum(sessions_{side}) {inst}, 0)::bigint AS {side}_sessions,"
        f" coalesce({hours}, 0) AS {side}_viewing_hours,"
        f" qoe_share(sum(coalesce(anomaly_rate_{side}, 0) * sessions_{side}) {inst},"
        f"           sum(sessions_{side}) {inst}) AS {side}_anomaly_rate,"
        f" qoe_rate({pooled('freezes_per_hour')}, {hours}) AS {side}_freezes_per_hour,"
        f" qoe_rate({pooled('black_screens_per_hour')}, {hours}) AS {side}_black_screens_per_hour"
    )


def impact(
    conn: psycopg.Connection, push_id: uuid.UUID, window: timedelta = timedelta(days=7)
) -> tuple[list[dict], dict]:
    """Per target, sessions before / after its install (``jam_push_impact``), and the fleet
    view of them: the installed targets pooled, rates recomputed from the pooled sums (not an
    average of per-box rates) by the QoE formula functions (sql/0009_qoe_formulas.sql). One
    statement: the function runs once, and its summary row is joined to every target row."""
    if conn.execute("SELECT 1 FROM jam_pushes WHERE push_id = %s", (push_id,)).fetchone() is None:
        raise NotFound(f"no push {push_id}")
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "WITH i AS MATERIALIZED (SELECT * FROM jam_push_impact(%s, %s)),"
            " s AS (SELECT count(*) AS targets, count(installed_at) AS installed,"
            f" {_pooled('before')}, {_pooled('after')} FROM i)"
            " SELECT s.*, i.* FROM s LEFT JOIN i ON true ORDER BY i.rxid",
            (push_id, window),
        ).fetchall()
    first = rows[0]  # there is always the summary row, with NULL target columns if no targets
    summary: dict = {"targets": first["targets"], "installed": first["installed"]}
    summary |= {side: {k: first[f"{side}_{k}"] for k in _POOLED} for side in ("before", "after")}
    drop = {"targets", "installed"} | {
        f"{side}_{k}" for side in ("before", "after") for k in _POOLED
    }
    targets = [{k: v for k, v in r.items() if k not in drop} for r in rows if r["rxid"]]
    return targets, summary
