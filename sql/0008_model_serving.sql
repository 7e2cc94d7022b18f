-- Which detector versions the HTTP service serves (logalyzer/http/scoring.py). Written by
-- POST /v1/models/reload; every Serve replica polls it, so one reload reaches all replicas
-- and survives restarts. No row for a detector: LOGALYZER_SCORE_VERSIONS, else the newest.
-- Numbered 0008: main has 0006 (dashboards) and 0007 (session_events).

CREATE TABLE IF NOT EXISTS serving_models (
    detector  text PRIMARY KEY CHECK (detector IN ('lstm', 'ae')),
    version   integer CHECK (version > 0),
    set_at    timestamptz NOT NULL DEFAULT now(),
    set_by    text NOT NULL DEFAULT ''
);
COMMENT ON TABLE serving_models IS 'Detector versions the HTTP service serves, set by POST /v1/models/reload';
COMMENT ON COLUMN serving_models.version IS 'the version to serve; null: always the newest in models';
COMMENT ON COLUMN serving_models.set_by IS 'the admin token that set it (its label, never the secret)';
