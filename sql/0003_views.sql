-- The QoE rates below are re-created in 0009_qoe_formulas.sql on its formula functions (qoe_rate,
-- qoe_share, qoe_rebuffer_ratio): that file is their definition now; this one is history.
-- Views for dashboards and analysts over `sessions` (sql/0002_sessions.sql).
-- Rates are per viewing hour (sum of session durations); days are UTC calendar days of the
-- session's start. Ratios are NULL where their denominator is zero.

CREATE OR REPLACE VIEW qoe_daily AS
SELECT (s.start_ts AT TIME ZONE 'UTC')::date                          AS day,
       coalesce(s.model, 'unknown')                                   AS model,
       coalesce(s.fw, 'unknown')                                      AS fw,
       count(DISTINCT s.rxid)                                         AS devices,
       count(*)                                                       AS sessions,
       sum(s.duration_s) / 3600.0                                     AS viewing_hours,
       sum(s.black_screen_count) / nullif(sum(s.duration_s) / 3600.0, 0) AS black_screens_per_hour,
       sum(s.video_freeze_count) / nullif(sum(s.duration_s) / 3600.0, 0) AS freezes_per_hour,
       sum(s.display_drop_count) / nullif(sum(s.duration_s) / 3600.0, 0) AS display_drops_per_hour,
       least(sum(s.rebuffer_ms) / nullif(sum(greatest(s.duration_s * 1000, s.rebuffer_ms)), 0), 1.0)
                                                                      AS rebuffer_ratio,
       avg(s.video_start_failure::int) FILTER (WHERE s.content_id IS NOT NULL)
                                                                      AS video_start_failure_rate,
       sum(s.hdmi_disconnects)                                        AS hdmi_disconnects
FROM sessions s
GROUP BY 1, 2, 3;

COMMENT ON VIEW qoe_daily IS 'Fleet QoE per UTC day x model x firmware (model/fw of each session''s latest BootInfo)';
COMMENT ON COLUMN qoe_daily.day IS 'UTC calendar day of the session start';
COMMENT ON COLUMN qoe_daily.model IS 'box model of the session (unknown: no BootInfo seen before it)';
COMMENT ON COLUMN qoe_daily.fw IS 'firmware version of the session';
COMMENT ON COLUMN qoe_daily.devices IS 'distinct boxes with a session that day';
COMMENT ON COLUMN qoe_daily.sessions IS 'playback sessions started that day';
COMMENT ON COLUMN qoe_daily.viewing_hours IS 'sum of session durations, hours';
COMMENT ON COLUMN qoe_daily.black_screens_per_hour IS 'black-screen episodes per viewing hour';
COMMENT ON COLUMN qoe_daily.freezes_per_hour IS 'video-freeze episodes per viewing hour';
COMMENT ON COLUMN qoe_daily.display_drops_per_hour IS 'DisplayDrop events per viewing hour';
COMMENT ON COLUMN qoe_daily.rebuffer_ratio IS 'rebuffering time / (rebuffering + play time) over all sessions';
COMMENT ON COLUMN qoe_daily.video_start_failure_rate IS 'share of content sessions (opened by ChangeContent) that failed to start';
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
           sum(s.black_screen_count) / nullif(sum(s.duration_s) / 3600.0, 0),
           sum(s.video_freeze_count) / nullif(sum(s.duration_s) / 3600.0, 0),
           sum(s.display_drop_count) / nullif(sum(s.duration_s) / 3600.0, 0),
           least(sum(s.rebuffer_ms) / nullif(sum(greatest(s.duration_s * 1000, s.rebuffer_ms)), 0), 1.0)::double precision,
           avg(s.video_start_failure::int) FILTER (WHERE s.content_id IS NOT NULL)::double precision,
           sum(s.hdmi_disconnects)::bigint, sum(s.error_count)::bigint, sum(s.seq_gaps)::bigint,
           min(s.start_ts), max(s.end_ts)
    FROM sessions s LEFT JOIN devices d ON d.rxid = s.rxid
    WHERE s.start_ts >= p_from AND s.start_ts < p_to
    GROUP BY s.rxid, d.model, d.fw;
END $$;
COMMENT ON FUNCTION qoe_device_window(timestamptz, timestamptz) IS
    'Per-device QoE for sessions starting in [from, to): same measures as qoe_daily, plus errors, '
    'seq_gaps (lost lines) and the time span; model/fw are the device''s latest BootInfo';

CREATE OR REPLACE VIEW qoe_device AS
SELECT * FROM qoe_device_window('-infinity'::timestamptz, 'infinity'::timestamptz);
COMMENT ON VIEW qoe_device IS 'Per-device QoE over all time (qoe_device_window(from, to) for a window)';
COMMENT ON COLUMN qoe_device.rxid IS 'the box';
COMMENT ON COLUMN qoe_device.model IS 'model of its latest BootInfo (devices.model)';
COMMENT ON COLUMN qoe_device.fw IS 'firmware of its latest BootInfo';
COMMENT ON COLUMN qoe_device.sessions IS 'playback sessions';
COMMENT ON COLUMN qoe_device.viewing_hours IS 'sum of session durations, hours';
COMMENT ON COLUMN qoe_device.black_screens_per_hour IS 'black-screen episodes per viewing hour';
COMMENT ON COLUMN qoe_device.freezes_per_hour IS 'video-freeze episodes per viewing hour';
COMMENT ON COLUMN qoe_device.display_drops_per_hour IS 'DisplayDrop events per viewing hour';
COMMENT ON COLUMN qoe_device.rebuffer_ratio IS 'rebuffering time / (rebuffering + play time)';
COMMENT ON COLUMN qoe_device.video_start_failure_rate IS 'share of content sessions that failed to start';
COMMENT ON COLUMN qoe_device.hdmi_disconnects IS 'HDMI disconnects inside sessions';
COMMENT ON COLUMN qoe_device.errors IS 'PlaybackError events inside sessions';
COMMENT ON COLUMN qoe_device.seq_gaps IS 'VAR lines lost inside sessions (seq jumps)';
COMMENT ON COLUMN qoe_device.first_start IS 'start of its first session';
COMMENT ON COLUMN qoe_device.last_end IS 'end of its last session';

-- Drill-down: every stored line of the device (all tags, not only VAR) inside the session's
-- time span, in time order. Validates its inputs: an RxID must be R + 10 digits and the
-- session must exist.
CREATE OR REPLACE FUNCTION session_lines(p_rxid text, p_session_id uuid)
RETURNS TABLE (ts timestamptz, ts_inferred boolean, file_id integer, line_no bigint,
               level text, tag text, message text, status text, event_type text, data jsonb)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_start timestamptz;
    v_end   timestamptz;
BEGIN
    IF p_rxid IS NULL OR p_rxid !~ '^R[0-9]{10}$' THEN
        RAISE EXCEPTION 'session_lines: not an RxID: %', p_rxid
            USING ERRCODE = 'invalid_parameter_value', HINT = 'R followed by 10 digits';
    END IF;
    SELECT s.start_ts, s.end_ts INTO v_start, v_end
    FROM sessions s WHERE s.rxid = p_rxid AND s.session_id = p_session_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'session_lines: no session % of %', p_session_id, p_rxid
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN QUERY
    SELECT l.ts, l.ts_inferred, l.file_id, l.line_no, l.level, l.tag, l.message, l.status,
           l.event_type, l.data
    FROM log_lines l
    WHERE l.rxid = p_rxid AND l.ts >= v_start AND l.ts <= v_end
    ORDER BY l.ts, l.file_id, l.line_no;
END $$;
COMMENT ON FUNCTION session_lines(text, uuid) IS
    'Drill-down: the raw log lines (all tags) of a session, in time order, from log_lines';
