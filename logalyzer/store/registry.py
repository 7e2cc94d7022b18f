"""The model registry: trained detector versions in the ``models`` table (sql/0004).

Checkpoints are stored in the database itself (a few hundred KB each), so any Ray node, Serve
replica or laptop that can reach PostgreSQL can load any version; nothing depends on a shared
file system. The newest version of a detector is the one used unless a version is pinned.
"""

from __future__ import annotations

from dataclasses import asdict

from psycopg.types.json import Jsonb

from logalyzer.core.detectors import Detector, from_bytes, to_bytes
from logalyzer.core.features import ALL_KINDS
from logalyzer.errors import LogalyzerError
from logalyzer.store.db import Database


class ModelNotFound(LogalyzerError):
    pass


def register(db: Database, det: Detector, metrics: dict, trained_on: dict) -> int:
    """Store a trained detector as its next version; return the version number."""
    with db.connect() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(7301004, hashtext(%s))", (det.kind,))
        version = conn.execute(
            "SELECT coalesce(max(version), 0) + 1 FROM models WHERE detector = %s", (det.kind,)
        ).fetchone()[0]
        det.version = version
        conn.execute(
            "INSERT INTO models (detector, version, threshold, config, metrics, trained_on,"
            " checkpoint) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                det.kind,
                version,
                det.threshold,
                Jsonb(asdict(det.cfg)),
                Jsonb(metrics),
                Jsonb(trained_on),
                to_bytes(det, {"version": version}),
            ),
        )
    return version


def load(db: Database, kind: str, version: int | None = None) -> Detector:
    """A detector from the registry: the newest version, or the one asked for."""
    if kind not in ALL_KINDS:
        raise LogalyzerError(
            f"unknown detector {kind!r}", hint=f"detectors are: {', '.join(ALL_KINDS)}"
        )
    with db.connect() as conn:
        row = conn.execute(
            "SELECT version, checkpoint FROM models WHERE detector = %s"
            " AND (%s::int IS NULL OR version = %s) ORDER BY version DESC LIMIT 1",
            (kind, version, version),
        ).fetchone()
    if row is None:
        what = (
            f"version {version} of the {kind} detector" if version else f"a trained {kind} detector"
        )
        raise ModelNotFound(
            f"no {what} in the models table", hint="train one first: logalyzer train"
        )
    return from_bytes(bytes(row[1]), version=row[0])


def available(db: Database) -> dict[str, int]:
    """The newest version of each trained detector."""
    with db.connect() as conn:
        return dict(conn.execute("SELECT detector, max(version) FROM models GROUP BY detector"))


def serving_pins(db: Database) -> dict[str, int | None]:
    """The versions ``POST /v1/models/reload`` last asked every replica to serve (sql/0008):
    detector -> version, None meaning "the newest"; a detector never pinned is absent."""
    with db.connect() as conn:
        return dict(conn.execute("SELECT detector, version FROM serving_models"))


def pin_serving(db: Database, versions: dict[str, int | None], by: str = "") -> None:
    """Record the versions to serve (None: the newest) for every replica and restart."""
    with db.connect() as conn, conn.transaction():
        for kind, version in versions.items():
            conn.execute(
                "INSERT INTO serving_models (detector, version, set_by) VALUES (%s, %s, %s)"
                " ON CONFLICT (detector) DO UPDATE SET version = excluded.version,"
                " set_by = excluded.set_by, set_at = now()",
                (kind, version, by),
            )
