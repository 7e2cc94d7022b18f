-- The QoE formulas, one SQL function each. Every view and function below, the dashboards'
-- datasets (superset/assets) and the reports the CLI prints (logalyzer/store/reports.py)
-- compute their rates through these, so a rate means the same everywhere; the per-session
-- rebuffer ratio that the pure core computes for each session (logalyzer/core/sessions.py,
-- which needs no database) is held to qoe_rebuffer_ratio by tests/test_sessionize.py.
-- The views of 0003, 0005 and 0006 are re-created here on top of them (earlier files keep
-- the formulas they were first written with: a migration is history, this file is the
-- definition). All are plain SQL expressions: the planner inlines them, so they cost nothing.
--
--   qoe_rate(n, hours)                   n per viewing hour (hours = sum of session durations)
--   qoe_share(part, whole)               part / whole: start failures among content sessions,
--                                        anomalous among all sessions
--   qoe_rebuffer_base_ms(duration_s, rebuffer_ms)   one session's rebuffer + play time, ms
--   qoe_rebuffer_ratio(rebuffer_ms, base_ms)        rebuffering / (rebuffering + play time)
--
-- Each is NULL where its denominator is zero (no viewing, no sessions): "no data", not 0.

CREATE OR REPLACE FUNCTION qoe_rate(p_count double precision, p_hours double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT p_count / nullif(p_hours, 0)
$$;
COMMENT ON FUNCTION qoe_rate(double precision, double precision) IS
    'events per viewing hour: count / hours (NULL without viewing)';

CREATE OR REPLACE FUNCTION qoe_share(p_part double precision, p_whole double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT p_part / nullif(p_whole, 0)
$$;
COMMENT ON FUNCTION qoe_share(double precision, double precision) IS
    'part / whole, e.g. video-start failures among content sessions (NULL when whole is 0)';

CREATE OR REPLACE FUNCTION qoe_rebuffer_base_ms(p_duration_s double precision, p_rebuffer_ms double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    -- play time = session time not rebuffering, so rebuffer + play time is the session's
    -- length, or the rebuffering itself when an open episode was cut at the session's end
    SELECT greatest(p_duration_s * 1000, p_rebuffer_ms)
$$;
COMMENT ON FUNCTION qoe_rebuffer_base_ms(double precision, double precision) IS
    'a session''s rebuffering + play time in ms: the denominator of the rebuffer ratio';

CREATE OR REPLACE FUNCTION qoe_rebuffer_ratio(p_rebuffer_ms double precision, p_base_ms double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    -- not least(x / nullif(base, 0), 1): least() skips NULLs, which made "no play time" read
    -- as 1.0 (all rebuffering) in the views of 0003
    SELECT CASE WHEN p_base_ms > 0 THEN least(p_rebuffer_ms / p_base_ms, 1.0) END
$$;
COMMENT ON FUNCTION qoe_rebuffer_ratio(double precision, double precision) IS
    'rebuffering time / (rebuffering + play time): of one session, or of sums over many '
    '(sum(rebuffer_ms), sum(qoe_rebuffer_base_ms(...))); NULL without play time';

-- 0003: the fleet views. qoe_daily is dropped and made again because its start-failure rate
-- becomes double precision like qoe_device's (it was numeric).
DROP VIEW IF EXISTS qoe_daily;
CREATE VIEW qoe_daily AS
SELECT (s.start_ts AT TIME ZONE 'UTC')::date                                AS day,
       coalesce(s.model, 'unknown')                                         AS model,
       coalesce(s.fw, 'unknown')                                            AS fw,
       count(DISTINCT s.rxid)                                               AS devices,
       count(*)                                                             AS sessions,
       sum(s.duration_s) / 3600.0                                           AS viewing_hours,
       qoe_rate(sum(s.black_screen_count), sum(s.duration_s) / 3600.0)      AS black_screens_per_hour,
       qoe_rate(sum(s.video_freeze_count), sum(s.duration_s) / 3600.0)      AS freezes_per_hour,
       qoe_rate(sum(s.display_drop_count), sum(s.duration_s) / 3600.0)      AS display_drops_per_hour,
       qoe_rebuffer_ratio(sum(s.rebuffer_ms),
                          sum(qoe_rebuffer_base_ms(s.duration_s, s.rebuffer_ms))) AS rebuffer_ratio,
       qoe_share(count(*) FILTER (WHERE s.content_id IS NOT NULL AND s.video_start_failure),
                 count(*) FILTER (WHERE s.content_id IS NOT NULL))          AS video_start_failure_rate,
       sum(s.hdmi_disconnects)                                              AS hdmi_disconnects
FROM sessions s
GROUP BY 1, 2, 3;

COMMENT ON VIEW qoe_daily IS 'Fleet QoE per UTC day x model x firmware (model/fw of each session''s latest BootInfo)';
COMMENT ON COLUMN qoe_daily.day IS 'UTC calendar day of the session start';
COMMENT ON COLUMN qoe_daily.model IS 'box model of the session (unknown: no BootInfo seen before it)';
COMMENT ON COLUMN qoe_daily.fw IS 'firmware version of the session';
COMMENT ON COLUMN qoe_daily.devices IS 'distinct boxes with a session that day';
COMMENT ON COLUMN qoe_daily.sessions IS 'playback sessions started that day';
COMMENT ON COLUMN qoe_daily.viewing_hours IS 'sum of session durations, hours';
COMMENT ON COLUMN qoe_daily.black_screens_per_hour IS 'black-screen episodes per viewing hour (qoe_rate)';
COMMENT ON COLUMN qoe_daily.freezes_per_hour IS 'video-freeze episodes per viewing hour (qoe_rate)';
COMMENT ON COLUMN qoe_daily.display_drops_per_hour IS 'DisplayDrop events per viewing hour (qoe_rate)';
COMMENT ON COLUMN qoe_daily.rebuffer_ratio IS 'rebuffering time / (rebuffering + play time) over all sessions (qoe_rebuffer_ratio)';
COMMENT ON COLUMN qoe_daily.video_start_failure_rate IS 'share of content sessions (opened by ChangeContent) that failed to start (qoe_share)';
COMMENT ON COLUMN qoe_daily.hdmi_disconnects IS 'HDMI hot-plug disconnects inside sessions';

CREATE OR REPLACE FUNCTION qoe_device_window(p_from timestamptz, p_to timestamptz)
RETURNS TABLE (rxid text, model text, fw text, sessions bigint, viewing_hours double precision,
               black_screens_per_hour double precision, freezes_per_hour double precision,
               display_drops_per_hour double precision, rebuffer_ratio double precision,
               video_start_failure_rate double precision, hdmi_disconnects bigint,
               errors bigint, seq_gaps bigint, first_start timestamptz, last_end timestamptz)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_from IS NULL OR p_to IS NULL OR p_from > p_to THEN
        RAISE EXCEPTION 'qoe_device_window: need from <= to, got % and %', p_from, p_to
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    SELECT s.rxid, d.model, d.fw, count(*),
           sum(s.duration_s) / 3600.0,
           qoe_rate(sum(s.black_screen_count), sum(s.duration_s) / 3600.0),
           qoe_rate(sum(s.video_freeze_count), sum(s.duration_s) / 3600.0),
           qoe_rate(sum(s.display_drop_count), sum(s.duration_s) / 3600.0),
           qoe_rebuffer_ratio(sum(s.rebuffer_ms), sum(qoe_rebuffer_base_ms(s.duration_s, s.rebuffer_ms))),
           qoe_share(count(*) FILTER (WHERE s.content_id IS NOT NULL AND s.video_start_failure),
                     count(*) FILTER (WHERE s.content_id IS NOT NULL)),
           sum(s.hdmi_disconnects)::bigint, sum(s.error_count)::bigint, sum(s.seq_gaps)::bigint,
           min(s.start_ts), max(s.end_ts)
    FROM sessions s LEFT JOIN devices d ON d.rxid = s.rxid
    WHERE s.start_ts >= p_from AND s.start_ts < p_to
    GROUP BY s.rxid, d.model, d.fw;
END $$;

-- 0006: the dashboards' per-bucket sums (the rates are divided in the datasets' metrics,
-- through the same functions, so a chart may group the sums any way).
CREATE OR REPLACE FUNCTION qoe_timeseries(p_grain text, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (period timestamp, model text, fw text, sessions bigint,
               viewing_hours double precision, black_screens bigint, video_freezes bigint,
               display_drops bigint, errors bigint, rebuffer_ms bigint, rebuffer_base_ms double precision,
               content_sessions bigint, start_failures bigint, anomalous_sessions bigint)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    -- The grain becomes part of date_trunc's argument: only the three known ones pass.
    IF p_grain IS NULL OR p_grain NOT IN ('hour', 'day', 'week') THEN
        RAISE EXCEPTION 'qoe_timeseries: grain must be hour, day or week, got %', p_grain
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_from IS NULL OR p_to IS NULL OR p_from > p_to THEN
        RAISE EXCEPTION 'qoe_timeseries: need from <= to, got % and %', p_from, p_to
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    SELECT -- a bucket cut by the window's start is labelled with that start, so a dashboard's
           -- own time filter on `period` keeps it
           (greatest(date_trunc(p_grain, s.start_ts, 'UTC'), p_from) AT TIME ZONE 'UTC'),
           coalesce(s.model, 'unknown'), coalesce(s.fw, 'unknown'),
           count(*),
           sum(s.duration_s) / 3600.0,
           sum(s.black_screen_count)::bigint,
           sum(s.video_freeze_count)::bigint,
           sum(s.display_drop_count)::bigint,
           sum(s.error_count)::bigint,
           sum(s.rebuffer_ms)::bigint,
           sum(qoe_rebuffer_base_ms(s.duration_s, s.rebuffer_ms)),
           count(*) FILTER (WHERE s.content_id IS NOT NULL),
           count(*) FILTER (WHERE s.content_id IS NOT NULL AND s.video_start_failure),
           count(a.rxid)
    FROM sessions s
    LEFT JOIN anomalies_consolidated a
           ON a.rxid = s.rxid AND a.session_id = s.session_id AND a.is_anomaly
    WHERE s.start_ts >= p_from AND s.start_ts < p_to
    GROUP BY 1, 2, 3;
END $$;

-- 0005: a push's before/after comparison.
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
           qoe_share(count(*) FILTER (WHERE x.before AND x.anomalous), count(*) FILTER (WHERE x.before)),
           qoe_share(count(*) FILTER (WHERE NOT x.before AND x.anomalous), count(*) FILTER (WHERE NOT x.before)),
           qoe_rate(sum(x.video_freeze_count) FILTER (WHERE x.before),
                    sum(x.duration_s) FILTER (WHERE x.before) / 3600.0),
           qoe_rate(sum(x.video_freeze_count) FILTER (WHERE NOT x.before),
                    sum(x.duration_s) FILTER (WHERE NOT x.before) / 3600.0),
           qoe_rate(sum(x.black_screen_count) FILTER (WHERE x.before),
                    sum(x.duration_s) FILTER (WHERE x.before) / 3600.0),
           qoe_rate(sum(x.black_screen_count) FILTER (WHERE NOT x.before),
                    sum(x.duration_s) FILTER (WHERE NOT x.before) / 3600.0)
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
