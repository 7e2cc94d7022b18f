"""Demo data for the jam-software charts: one push into the synthetic fleet's past.

    LOGALYZER_DSN=... .venv/bin/python superset/demo_jam.py

`make superset-check` runs it after the pipeline so that the anomaly dashboard's push charts
have something to show. A real push is created through the HTTP service and its install time
is when the box reports it, i.e. now; the synthetic fleet's sessions lie in the past, so this
writes the rows directly, dated inside the fleet's time span: the boxes of the most common
model get `com.example.player 5.2.0`, installed half-way through (one of them failed). The
push id is fixed, so running it again changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import uuid

import psycopg

PUSH_ID = uuid.uuid5(uuid.NAMESPACE_URL, "logalyzer-demo-push/com.example.player/5.2.0")


def main() -> int:
    with psycopg.connect(os.environ["LOGALYZER_DSN"]) as conn:
        span = conn.execute("SELECT min(start_ts), max(start_ts) FROM sessions").fetchone()
        if span[0] is None:
            print("no sessions: run the pipeline first", file=sys.stderr)
            return 1
        model = conn.execute(
            "SELECT model FROM devices WHERE model IS NOT NULL GROUP BY model"
            " ORDER BY count(*) DESC, model LIMIT 1"
        ).fetchone()[0]
        boxes = [
            r[0]
            for r in conn.execute(
                "SELECT rxid FROM devices WHERE model = %s ORDER BY rxid", (model,)
            )
        ]
        created = span[0] + (span[1] - span[0]) * 0.45
        installed = span[0] + (span[1] - span[0]) * 0.5
        target = {"filter": {"model": [model]}}
        with conn.transaction():
            cur = conn.execute(
                "INSERT INTO jam_pushes (push_id, idempotency_key, request_hash, package, version,"
                " url, sha256, target, rollout_percent, created_by, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 100, %s, %s)"
                " ON CONFLICT (push_id) DO NOTHING",
                (
                    PUSH_ID,
                    f"demo-{PUSH_ID}",
                    hashlib.sha256(b"demo").hexdigest(),
                    "com.example.player",
                    "5.2.0",
                    "https://apps.example.com/com.example.player-5.2.0.apk",
                    hashlib.sha256(b"com.example.player-5.2.0").hexdigest(),
                    json.dumps(target),
                    "demo (superset/demo_jam.py)",
                    created,
                ),
            )
            if cur.rowcount:
                for i, rxid in enumerate(boxes):
                    failed = i == len(boxes) - 1 and len(boxes) > 1
                    conn.execute(
                        "INSERT INTO jam_targets (push_id, rxid, state, delivered_at,"
                        " installed_at, failed_at,"
                        " last_detail) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        (
                            PUSH_ID,
                            rxid,
                            "failed" if failed else "installed",
                            created,
                            None if failed else installed,
                            installed if failed else None,
                            "failed: checksum mismatch" if failed else "installed",
                        ),
                    )
    print(
        f"demo push {PUSH_ID}: com.example.player 5.2.0 to {len(boxes)} {model} boxes,"
        f" installed {installed:%Y-%m-%d %H:%M}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
