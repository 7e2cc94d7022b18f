-- The QoE rates below are re-created in 0009_qoe_formulas.sql on its formula functions (qoe_rate,
-- qoe_share, qoe_rebuffer_ratio): that file is their definition now; this one is history.
-- Building blocks for the Superset dashboards (superset/assets/datasets/*.yaml). Their virtual
-- datasets stay one line of Jinja over these, so the logic lives here, commented and tested
-- (tests/test_superset.py), and every chart serves any time span and granularity.
-- Times: sessions are placed by their start; buckets are UTC; rates are per 1,000 viewing
-- hours (sum of session durations); every sum is re-aggregatable, so a chart may group the
-- rows by any subset of (period, model, fw) and divide sums.

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
           sum(greatest(s.duration_s * 1000, s.rebuffer_ms)),
           count(*) FILTER (WHERE s.content_id IS NOT NULL),
           count(*) FILTER (WHERE s.content_id IS NOT NULL AND s.video_start_failure),
           count(a.rxid)
    FROM sessions s
    LEFT JOIN anomalies_consolidated a
           ON a.rxid = s.rxid AND a.session_id = s.session_id AND a.is_anomaly
    WHERE s.start_ts >= p_from AND s.start_ts < p_to
    GROUP BY 1, 2, 3;
END $$;
COMMENT ON FUNCTION qoe_timeseries(text, timestamptz, timestamptz) IS
    'Fleet QoE sums per (UTC hour|day|week of the session start) x model x firmware for sessions '
    'starting in [from, to): sessions, viewing_hours, black_screens, video_freezes, display_drops, '
    'errors, rebuffer_ms over rebuffer_base_ms (rebuffer + play time), content_sessions (opened by '
    'ChangeContent) of which start_failures, anomalous_sessions (anomalies_consolidated.is_anomaly)';

CREATE OR REPLACE FUNCTION qoe_device_dashboard(p_from timestamptz, p_to timestamptz)
RETURNS TABLE (rxid text, model text, fw text, sessions bigint, viewing_hours double precision,
               black_screens_per_1000h double precision, freezes_per_1000h double precision,
               video_start_failure_rate double precision, errors bigint, anomalous_sessions bigint,
               first_start timestamptz, last_end timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT q.rxid, coalesce(q.model, 'unknown'), coalesce(q.fw, 'unknown'), q.sessions,
           q.viewing_hours, 1000 * q.black_screens_per_hour, 1000 * q.freezes_per_hour,
           q.video_start_failure_rate, q.errors,
           (SELECT count(*) FROM anomalies_consolidated a
             WHERE a.rxid = q.rxid AND a.is_anomaly AND a.start_ts >= p_from AND a.start_ts < p_to),
           q.first_start, q.last_end
    FROM qoe_device_window(p_from, p_to) q
$$;
COMMENT ON FUNCTION qoe_device_dashboard(timestamptz, timestamptz) IS
    'Per-device QoE for sessions starting in [from, to) (qoe_device_window) with rates per 1,000 '
    'viewing hours and the anomalous sessions among them; model/fw unknown when never seen';

-- reasons is {"features": [...], "transitions": [...]} (LOG_FORMAT.md section 5, written by
-- logalyzer/jobs/detect.py): the autoencoder's items are {"feature", "value", ...}, the LSTM's
-- {"after", "event", "p", ...}. Each becomes "feature" or "after -> event" (other shapes their
-- name, event or JSON text), listed once each, alphabetically.
CREATE OR REPLACE FUNCTION anomaly_reason_text(p_reasons jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT string_agg(r.key || ': ' || r.items, '; ' ORDER BY r.key)
    FROM (SELECT j.key,
                 (SELECT string_agg(DISTINCT CASE jsonb_typeof(e)
                                        WHEN 'string' THEN e #>> '{}'
                                        WHEN 'object' THEN coalesce(
                                            e ->> 'feature',
                                            (e ->> 'after') || ' -> ' || (e ->> 'event'),
                                            e ->> 'name', e ->> 'event', e::text)
                                        ELSE e::text END, ', ')
                  FROM jsonb_array_elements(CASE jsonb_typeof(j.value) WHEN 'array' THEN j.value
                                                 ELSE jsonb_build_array(j.value) END) e) AS items
          FROM jsonb_each(CASE jsonb_typeof(p_reasons) WHEN 'object' THEN p_reasons
                               ELSE '{}'::jsonb END) j) r
    WHERE r.items <> ''
$$;
COMMENT ON FUNCTION anomaly_reason_text(jsonb) IS
    'anomalies_consolidated.reasons as one line: "features: a, b; transitions: x -> y"';

CREATE OR REPLACE VIEW anomaly_sessions AS
SELECT a.rxid, a.session_id, a.start_ts, s.end_ts, s.duration_s / 60.0 AS duration_min,
       s.content_id, s.source, coalesce(s.model, 'unknown') AS model, coalesce(s.fw, 'unknown') AS fw,
       a.is_anomaly, a.lstm_score, a.ae_score,
       array_to_string(a.detectors, ', ') AS detectors,
       anomaly_reason_text(a.reasons) AS reasons,
       s.black_screen_count, s.video_freeze_count, s.error_count, s.fatal_error,
       s.video_start_failure, a.model_versions::text AS model_versions
FROM anomalies_consolidated a
LEFT JOIN sessions s ON s.rxid = a.rxid AND s.session_id = a.session_id;
COMMENT ON VIEW anomaly_sessions IS
    'anomalies_consolidated with the session''s measures and the reasons as text, for dashboards';
COMMENT ON COLUMN anomaly_sessions.duration_min IS 'session duration, minutes';
COMMENT ON COLUMN anomaly_sessions.lstm_score IS 'LSTM score as a multiple of its threshold (> 1: above it)';
COMMENT ON COLUMN anomaly_sessions.ae_score IS 'autoencoder score as a multiple of its threshold';
COMMENT ON COLUMN anomaly_sessions.reasons IS 'anomaly_reason_text(reasons)';
