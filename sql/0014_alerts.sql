-- Fleet alerts (issue 14): each QoE measure per firmware and per model, for a UTC hour or day,
-- against the same cohort's own trailing baseline. Written by `logalyzer alerts`
-- (logalyzer/jobs/alerts.py; the statistical rule is logalyzer/core/alerts.py, the SQL
-- logalyzer/store/alerts.py). One row per firing window: a re-run of the same check updates
-- the row (its natural key), never adds one.

CREATE TABLE IF NOT EXISTS alerts (
    grain                 text NOT NULL CHECK (grain IN ('hour', 'day')),
    cohort_kind           text NOT NULL CHECK (cohort_kind IN ('fw', 'model')),
    cohort                text NOT NULL,
    measure               text NOT NULL,
    window_start          timestamptz NOT NULL,
    window_end            timestamptz NOT NULL,
    value                 double precision NOT NULL,
    baseline              double precision NOT NULL,
    ratio                 double precision,
    p_value               double precision NOT NULL,
    severity              text NOT NULL CHECK (severity IN ('warning', 'critical')),
    sessions              bigint NOT NULL,
    viewing_hours         double precision NOT NULL,
    baseline_windows      integer NOT NULL,
    detail                jsonb NOT NULL DEFAULT '{}'::jsonb,
    first_seen_at         timestamptz NOT NULL DEFAULT now(),
    last_seen_at          timestamptz NOT NULL DEFAULT now(),
    resolved_at           timestamptz,
    notified_at           timestamptz,
    resolved_notified_at  timestamptz,
    PRIMARY KEY (grain, cohort_kind, cohort, measure, window_start)
);
CREATE INDEX IF NOT EXISTS alerts_open ON alerts (grain, cohort_kind, cohort, measure)
    WHERE resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS alerts_window ON alerts (window_start);

COMMENT ON TABLE alerts IS 'A QoE measure of a firmware or model cohort that rose significantly above the cohort''s own trailing baseline in one UTC window (README, "Alerts")';
COMMENT ON COLUMN alerts.cohort_kind IS 'fw: every session of that firmware; model: the model''s sessions less the firmwares that alert on the same measure and window';
COMMENT ON COLUMN alerts.measure IS 'a qoe_daily column: black_screens_per_hour, freezes_per_hour, display_drops_per_hour, rebuffer_ratio, video_start_failure_rate, anomalous_share';
COMMENT ON COLUMN alerts.value IS 'the measure in the window (same formula as qoe_daily)';
COMMENT ON COLUMN alerts.baseline IS 'the measure over the cohort''s previous windows (7 days, or 24 hours)';
COMMENT ON COLUMN alerts.ratio IS 'value / baseline; NULL when the baseline is 0';
COMMENT ON COLUMN alerts.p_value IS 'one-sided p-value of the window against the baseline (overdispersion-robust z test)';
COMMENT ON COLUMN alerts.detail IS 'the test''s numbers: z, observed and expected amounts, window and baseline exposure';
COMMENT ON COLUMN alerts.first_seen_at IS 'the check that first found it firing';
COMMENT ON COLUMN alerts.last_seen_at IS 'the latest check that found it firing';
COMMENT ON COLUMN alerts.resolved_at IS 'the check that found a later (or the same) window of the cohort and measure no longer firing; NULL while open';
COMMENT ON COLUMN alerts.notified_at IS 'when the webhook accepted it (NULL: not sent yet, or no webhook)';
COMMENT ON COLUMN alerts.resolved_notified_at IS 'when the webhook accepted its resolution';

-- The per-window sums the test needs, per UTC window x model x firmware and measure: for each
-- session a numerator y and a denominator x (viewing hours for the per-hour rates; one content
-- session for start failures; one scored session for the anomalous share; rebuffer + play time
-- in ms, qoe_rebuffer_base_ms, for the rebuffer ratio), summed with their squares and product
-- so that sums over cells stay exact (the rule's variance is built from them). y / x summed
-- is the qoe_daily formula (tests/test_alerts.py holds the two together).
CREATE OR REPLACE FUNCTION alert_cells(p_grain text, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (period timestamptz, model text, fw text, measure text, sessions bigint,
               num double precision, den double precision, num2 double precision,
               numden double precision, den2 double precision)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_grain IS NULL OR p_grain NOT IN ('hour', 'day') THEN
        RAISE EXCEPTION 'alert_cells: grain must be hour or day, got %', p_grain
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_from IS NULL OR p_to IS NULL OR p_from > p_to THEN
        RAISE EXCEPTION 'alert_cells: need from <= to, got % and %', p_from, p_to
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    WITH s AS (
        SELECT date_trunc(p_grain, s.start_ts, 'UTC') AS period,
               coalesce(s.model, 'unknown') AS model, coalesce(s.fw, 'unknown') AS fw,
               s.duration_s / 3600.0 AS hours,
               s.black_screen_count, s.video_freeze_count, s.display_drop_count,
               s.rebuffer_ms::double precision AS rebuffer_ms,
               qoe_rebuffer_base_ms(s.duration_s, s.rebuffer_ms) AS rebuffer_base_ms,
               s.content_id IS NOT NULL AS content, s.video_start_failure,
               EXISTS (SELECT 1 FROM anomalies x
                       WHERE x.rxid = s.rxid AND x.session_id = s.session_id) AS scored,
               EXISTS (SELECT 1 FROM anomalies_consolidated a
                       WHERE a.rxid = s.rxid AND a.session_id = s.session_id AND a.is_anomaly)
                   AS anomalous
        FROM sessions s
        WHERE s.start_ts >= p_from AND s.start_ts < p_to
    )
    SELECT s.period, s.model, s.fw, m.measure, count(*), sum(m.y), sum(m.x),
           sum(m.y * m.y), sum(m.y * m.x), sum(m.x * m.x)
    FROM s
    CROSS JOIN LATERAL (VALUES
        ('black_screens_per_hour', s.black_screen_count::double precision, s.hours),
        ('freezes_per_hour', s.video_freeze_count::double precision, s.hours),
        ('display_drops_per_hour', s.display_drop_count::double precision, s.hours),
        ('rebuffer_ratio', s.rebuffer_ms, s.rebuffer_base_ms),
        ('video_start_failure_rate',
         CASE WHEN s.content THEN s.video_start_failure::int::double precision END,
         CASE WHEN s.content THEN 1.0::double precision END),
        ('anomalous_share',
         CASE WHEN s.scored THEN s.anomalous::int::double precision END,
         CASE WHEN s.scored THEN 1.0::double precision END)
    ) AS m(measure, y, x)
    WHERE m.x IS NOT NULL
    GROUP BY 1, 2, 3, 4;
END $$;
COMMENT ON FUNCTION alert_cells(text, timestamptz, timestamptz) IS
    'per UTC hour/day x model x firmware x QoE measure: sessions and the sums (y, x, y², yx, x²) the alert rule needs';
