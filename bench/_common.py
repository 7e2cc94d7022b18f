"""What the benchmarks share: a fresh database on the configured server, dropped afterwards."""

from __future__ import annotations

import secrets
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent


@contextmanager
def fresh_database(base_settings, keep: bool = False):
    """Yield (settings, Database) of a new ``bench_<hex>`` database on the server of
    ``base_settings`` (LOGALYZER_DSN, else the embedded one), migrated; dropped at the end
    (even on failure) unless ``keep``."""
    import psycopg
    from psycopg import sql

    from logalyzer.store.db import Database, migrate, open_database

    server = open_database(base_settings, migrate_schema=False)
    name = f"bench_{secrets.token_hex(5)}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = psycopg.conninfo.conninfo_to_dict(server.dsn)
    params["dbname"] = name
    dsn = psycopg.conninfo.make_conninfo(**params)
    try:
        with psycopg.connect(dsn) as conn:
            migrate(conn)
        yield base_settings.model_copy(update={"dsn": dsn}), Database(dsn)
    finally:
        if not keep:
            with psycopg.connect(server.dsn, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


# --------------------------------------------------------------------------- scoring


def synthetic_sessions(n_boxes: int = 8, hours: float = 12.0, seed: int = 11) -> list[dict]:
    """Sessions (measures + event keys, with rxid and session id) of a synthetic fleet, the
    way ``POST /v1/score`` receives them: the library's generator, file reader and raw-lines
    path (``logalyzer.core.rawlines``)."""
    import tempfile
    from collections import defaultdict

    from logalyzer.core.features import FEATURE_COLUMNS
    from logalyzer.core.files import LineReader, date_from_path, discover, rxid_from_path
    from logalyzer.core.rawlines import sessions_from_lines
    from logalyzer.core.synth import FleetSpec, generate_fleet

    out: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        generate_fleet(
            tmp, FleetSpec(devices=n_boxes, hours=hours, seed=seed, noise_lines_per_minute=2)
        )
        files = defaultdict(list)
        for p in discover([tmp]):
            if rxid_from_path(p):
                files[rxid_from_path(p)].append(p)
        for rx, paths in sorted(files.items()):
            lines = [
                line for p in paths for chunk in LineReader(p) for line in chunk.lines.to_pylist()
            ]
            for m, keys in sessions_from_lines(lines, rx, anchor=date_from_path(paths[0])):
                out.append(
                    {
                        **{c: m[c] for c in FEATURE_COLUMNS},
                        "rxid": rx,
                        "session_id": m["session_id"],
                        "event_keys": keys,
                    }
                )
    return out


def small_models(db, sessions: list[dict], epochs: int = 20) -> dict:
    """Small detectors of every kind trained in-process on ``sessions`` and registered: what a
    scoring benchmark serves (it measures serving, not model quality)."""
    from logalyzer.core.detectors import fit_in_process, threshold_rule
    from logalyzer.core.features import KINDS
    from logalyzer.jobs.train import new_detector, session_scores, training_array
    from logalyzer.store.registry import register

    small = {
        "lstm": {"hidden": 32, "layers": 1, "embed": 8, "epochs": max(1, epochs // 5)},
        "ae": {"epochs": epochs},
    }
    models = {}
    for kind in KINDS:
        det = new_detector(kind, sessions, small.get(kind))
        fit_in_process(det, training_array(det, sessions))
        det.threshold = threshold_rule(session_scores(det, sessions))
        register(db, det, {"bench": True}, {"sessions": len(sessions)})
        models[kind] = det
    return models
