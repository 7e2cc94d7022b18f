"""Read-only summaries for the CLI: the fleet's QoE in a few lines, what the database holds.

Report SQL lives here rather than in the faces that print it. Its rates are the QoE formula
functions of sql/0009_qoe_formulas.sql, the same as the views' and the dashboards'.
"""

from __future__ import annotations

from logalyzer.store.db import Database


def fleet_overview(db: Database, worst: int = 3) -> dict:
    """A few lines' worth of fleet QoE from the views: totals, rates per viewing hour, and the
    devices with the most incidents (black screens + freezes + display drops) per viewing hour."""
    with db.connect() as conn:
        # no viewing yet: 0 per hour, as the CLI prints it; ratios stay NULL (no data)
        tot = conn.execute(
            "SELECT devices, sessions, hours,"
            " coalesce(qoe_rate(black, hours), 0), coalesce(qoe_rate(freezes, hours), 0),"
            " coalesce(qoe_rate(drops, hours), 0), rebuffer_ratio, start_failure_rate, hdmi"
            " FROM (SELECT count(DISTINCT rxid) AS devices, count(*) AS sessions,"
            "   coalesce(sum(duration_s), 0) / 3600.0 AS hours,"
            "   sum(black_screen_count) AS black, sum(video_freeze_count) AS freezes,"
            "   sum(display_drop_count) AS drops,"
            "   qoe_rebuffer_ratio(sum(rebuffer_ms),"
            "     sum(qoe_rebuffer_base_ms(duration_s, rebuffer_ms))) AS rebuffer_ratio,"
            "   qoe_share(count(*) FILTER (WHERE content_id IS NOT NULL AND video_start_failure),"
            "     count(*) FILTER (WHERE content_id IS NOT NULL)) AS start_failure_rate,"
            "   coalesce(sum(hdmi_disconnects), 0) AS hdmi FROM sessions) t"
        ).fetchone()
        bad = conn.execute(
            "SELECT rxid, model, fw, sessions, viewing_hours, coalesce(black_screens_per_hour, 0)"
            " + coalesce(freezes_per_hour, 0) + coalesce(display_drops_per_hour, 0) AS rate"
            " FROM qoe_device WHERE viewing_hours > 0 ORDER BY rate DESC, rxid LIMIT %s",
            (worst,),
        ).fetchall()
    devices, sessions, hours, black, freeze, drops, ratio, vsf, hdmi = tot
    return {
        "devices": devices,
        "sessions": sessions,
        "viewing_hours": float(hours),
        "black_screens_per_hour": black,
        "freezes_per_hour": freeze,
        "display_drops_per_hour": drops,
        "rebuffer_ratio": ratio,
        "video_start_failure_rate": vsf,
        "hdmi_disconnects": int(hdmi),
        "worst": [
            {
                "rxid": r[0],
                "model": r[1],
                "fw": r[2],
                "sessions": r[3],
                "viewing_hours": float(r[4]),
                "incidents_per_hour": float(r[5]),
            }
            for r in bad
        ],
    }


def database_info(db: Database) -> dict:
    """Schema version, device partitions, lines loaded and ledger files by status."""
    with db.connect() as conn:
        version = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
        parts = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'log_lines'::regclass"
        ).fetchone()[0]
        files = conn.execute(
            "SELECT status, count(*) FROM ingested_files GROUP BY 1 ORDER BY 1"
        ).fetchall()
        lines = conn.execute(
            "SELECT coalesce(sum(lines_loaded), 0) FROM ingested_files"
        ).fetchone()[0]
    return {"version": version, "partitions": parts, "lines": lines, "files": files}


def model_listing(db: Database) -> list[dict]:
    """Every registered version, oldest first per detector (``logalyzer models``)."""
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT detector, version, created_at, threshold, metrics, trained_on"
            " FROM models ORDER BY detector, version"
        )
        names = [d.name for d in cur.description]
        return [dict(zip(names, r)) for r in cur]
