"""The embedded PostgreSQL (no LOGALYZER_DSN): started by LOGalyzer in its home, and set up for
bulk loads once (store.db.BULK_LOAD_SETTINGS), as README "Capacity" says."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import psycopg

from logalyzer.settings import Settings
from logalyzer.store.db import BULK_LOAD_SETTINGS, open_database


def test_the_embedded_server_is_set_up_for_bulk_loads_once():
    # outside pytest's private folder: as root, pgserver runs the server as another user
    home = Path(tempfile.mkdtemp(prefix="logalyzer-embedded-"))
    home.chmod(0o755)
    db = open_database(Settings(home=home, dsn=None))
    try:
        auto = home / "pgdata" / "postgresql.auto.conf"
        written = auto.stat().st_mtime_ns
        with psycopg.connect(db.dsn) as conn:
            shown = {
                name: conn.execute(f"SHOW {name}").fetchone()[0] for name in BULK_LOAD_SETTINGS
            }
        assert shown == {
            "max_wal_size": "4GB",
            "checkpoint_timeout": "15min",
            "wal_compression": "pglz",
        }
        again = open_database(Settings(home=home, dsn=None), migrate_schema=False)
        assert again.dsn == db.dsn
        assert auto.stat().st_mtime_ns == written  # nothing written the second time
    finally:
        db.embedded.cleanup()
        shutil.rmtree(home, ignore_errors=True)
