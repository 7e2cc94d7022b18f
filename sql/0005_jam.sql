-- The QoE rates below are re-created in 0009_qoe_formulas.sql on its formula functions (qoe_rate,
-- qoe_share, qoe_rebuffer_ratio): that file is their definition now; this one is history.
-- jam-software: push an app to boxes, record what the boxes report, and measure the effect.
-- Written by the HTTP service (logalyzer/store/jam.py behind /jam-software/*) and `logalyzer tokens`
-- (logalyzer/store/tokens.py). jam_push_impact() is read by the service and by the dashboards.

CREATE TABLE IF NOT EXISTS api_tokens (
    token_id      serial PRIMARY KEY,
    token_hash    bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    role          text NOT NULL CHECK (role IN ('admin', 'device')),
    rxid          text CHECK (rxid ~ '^R[0-9]{10}$'),
    name          text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    last_used_at  timestamptz,
    CHECK ((role = 'device') = (rxid IS NOT NULL))
);
COMMENT ON TABLE api_tokens IS 'Bearer tokens of the HTTP service; only a hash of each secret is kept';
COMMENT ON COLUMN api_tokens.token_hash IS 'sha256 of the secret (32 bytes); the secret itself is shown once, at creation';
COMMENT ON COLUMN api_tokens.role IS 'admin: creates and reads pushes | device: one box''s own routes';
COMMENT ON COLUMN api_tokens.rxid IS 'the box a device token belongs to (NULL for admin tokens)';
COMMENT ON COLUMN api_tokens.revoked_at IS 'set by `logalyzer tokens revoke`; a revoked token is refused at once';
COMMENT ON COLUMN api_tokens.last_used_at IS 'last successful use, refreshed at most once a minute';

CREATE TABLE IF NOT EXISTS jam_pushes (
    push_id          uuid PRIMARY KEY,
    idempotency_key  text NOT NULL UNIQUE,
    request_hash     text NOT NULL,
    package          text NOT NULL,
    version          text NOT NULL,
    url              text NOT NULL CHECK (url LIKE 'https://%'),
    sha256           text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    target           jsonb NOT NULL,
    rollout_percent  smallint NOT NULL DEFAULT 100 CHECK (rollout_percent BETWEEN 1 AND 100),
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS jam_pushes_created ON jam_pushes (created_at DESC, push_id DESC);
COMMENT ON TABLE jam_pushes IS 'One row per push of an app version to a set of boxes';
COMMENT ON COLUMN jam_pushes.idempotency_key IS 'the Idempotency-Key header: the same key with the same body returns this push';
COMMENT ON COLUMN jam_pushes.request_hash IS 'sha256 of the validated request (canonical JSON): a different body under the same key is refused (409)';
COMMENT ON COLUMN jam_pushes.package IS 'Android package name, e.g. com.example.player';
COMMENT ON COLUMN jam_pushes.url IS 'https download URL of the package';
COMMENT ON COLUMN jam_pushes.sha256 IS 'SHA-256 of the package file, lower-case hex; the box checks it before installing';
COMMENT ON COLUMN jam_pushes.target IS 'the target spec as given: {"rxids": [...]} or {"filter": {"model": [...], "fw": [...], "app": [...]}}';
COMMENT ON COLUMN jam_pushes.rollout_percent IS 'share of the matching boxes targeted, chosen by a hash of (push_id, rxid): deterministic';
COMMENT ON COLUMN jam_pushes.created_by IS 'the admin token that created it: "token <id> (<name>)"';

CREATE TABLE IF NOT EXISTS jam_targets (
    push_id       uuid NOT NULL REFERENCES jam_pushes ON DELETE CASCADE,
    rxid          text NOT NULL CHECK (rxid ~ '^R[0-9]{10}$'),
    state         text NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'delivered', 'installed', 'failed')),
    delivered_at  timestamptz,
    installed_at  timestamptz,
    failed_at     timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    last_detail   text,
    PRIMARY KEY (push_id, rxid)
);
CREATE INDEX IF NOT EXISTS jam_targets_open ON jam_targets (rxid) WHERE state IN ('pending', 'delivered');
CREATE INDEX IF NOT EXISTS jam_targets_rxid ON jam_targets (rxid);
COMMENT ON TABLE jam_targets IS 'One row per box of a push, with where it stands (state machine in logalyzer/store/jam.py)';
COMMENT ON COLUMN jam_targets.state IS 'pending -> delivered -> installed | failed; failed -> installed on a successful retry; never backwards';
COMMENT ON COLUMN jam_targets.delivered_at IS 'first time the box fetched the push (or reported on it)';
COMMENT ON COLUMN jam_targets.installed_at IS 'server time the installed event was received; the pivot of jam_push_impact()';
COMMENT ON COLUMN jam_targets.failed_at IS 'server time of the failed event that moved the state (kept after a successful retry)';
COMMENT ON COLUMN jam_targets.last_detail IS 'what the box said last about this push: its event type, and detail/error/message when given';

CREATE TABLE IF NOT EXISTS jam_events (
    id           bigserial PRIMARY KEY,
    rxid         text NOT NULL CHECK (rxid ~ '^R[0-9]{10}$'),
    push_id      uuid,
    event_type   text NOT NULL,
    body         jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS jam_events_push ON jam_events (push_id, rxid) WHERE push_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS jam_events_rxid ON jam_events (rxid, received_at);
COMMENT ON TABLE jam_events IS 'Every JSON event a box posted, as posted: kept even when it moves no state (late, repeated, unknown push)';
COMMENT ON COLUMN jam_events.push_id IS 'the push it is about, if any; not a foreign key, so an event about an unknown push is still kept';
COMMENT ON COLUMN jam_events.body IS 'the whole JSON object the box sent (at most 64 KiB)';
COMMENT ON COLUMN jam_events.received_at IS 'server time of receipt (box clocks are not trusted)';

-- Before/after comparison of each target's sessions around its install.
CREATE OR REPLACE FUNCTION jam_push_impact(p_push_id uuid, p_window interval DEFAULT '7 days')
RETURNS TABLE (rxid text, state text, installed_at timestamptz,
               sessions_before bigint, sessions_after bigint,
               viewing_hours_before double precision, viewing_hours_after double precision,
               anomaly_rate_before double precision, anomaly_rate_after double precision,
               freezes_per_hour_before double precision, freezes_per_hour_after double precision,
               black_screens_per_hour_before double precision, black_screens_per_hour_after double precision)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_window IS NULL OR p_window <= interval '0' THEN
        RAISE EXCEPTION 'jam_push_impact: the window must be positive, got %', p_window
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    SELECT t.rxid, t.state, t.installed_at,
           count(*) FILTER (WHERE x.before),
           count(*) FILTER (WHERE NOT x.before),
           coalesce(sum(x.duration_s) FILTER (WHERE x.before), 0) / 3600.0,
           coalesce(sum(x.duration_s) FILTER (WHERE NOT x.before), 0) / 3600.0,
           (count(*) FILTER (WHERE x.before AND x.anomalous))::double precision
               / nullif(count(*) FILTER (WHERE x.before), 0),
           (count(*) FILTER (WHERE NOT x.before AND x.anomalous))::double precision
               / nullif(count(*) FILTER (WHERE NOT x.before), 0),
           sum(x.video_freeze_count) FILTER (WHERE x.before)
               / nullif(sum(x.duration_s) FILTER (WHERE x.before) / 3600.0, 0),
           sum(x.video_freeze_count) FILTER (WHERE NOT x.before)
               / nullif(sum(x.duration_s) FILTER (WHERE NOT x.before) / 3600.0, 0),
           sum(x.black_screen_count) FILTER (WHERE x.before)
               / nullif(sum(x.duration_s) FILTER (WHERE x.before) / 3600.0, 0),
           sum(x.black_screen_count) FILTER (WHERE NOT x.before)
               / nullif(sum(x.duration_s) FILTER (WHERE NOT x.before) / 3600.0, 0)
    FROM jam_targets t
    LEFT JOIN LATERAL (
        SELECT s.start_ts < t.installed_at AS before, s.duration_s,
               s.video_freeze_count, s.black_screen_count,
               EXISTS (SELECT 1 FROM anomalies_consolidated a
                       WHERE a.rxid = s.rxid AND a.session_id = s.session_id AND a.is_anomaly)
                   AS anomalous
        FROM sessions s
        WHERE s.rxid = t.rxid
          AND s.start_ts >= t.installed_at - p_window
          AND s.start_ts < t.installed_at + p_window
    ) x ON true
    WHERE t.push_id = p_push_id
    GROUP BY t.rxid, t.state, t.installed_at
    ORDER BY t.rxid;
END $$;
COMMENT ON FUNCTION jam_push_impact(uuid, interval) IS
    'Per target of a push: sessions starting in [installed_at - window, installed_at) (before) and '
    '[installed_at, installed_at + window) (after); viewing hours, share of sessions flagged in '
    'anomalies_consolidated (is_anomaly), freezes and black screens per viewing hour. Rates are NULL '
    'where the denominator is 0; a target not installed has no sessions on either side';
