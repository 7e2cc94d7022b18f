-- Unusual system templates, judged once per templates run (issue 14): which of a session's
-- template counts are unusually frequent against its box's and its cohort's normal, and how many
-- such lines the session holds. Written by `logalyzer templates` (store.templates.mark_unusual);
-- read by `detect` for reasons and by the autoencoder as a feature.

ALTER TABLE session_templates ADD COLUMN IF NOT EXISTS unusual_p double precision,
    ADD COLUMN IF NOT EXISTS usual double precision;
COMMENT ON COLUMN session_templates.unusual_p IS 'Poisson tail P(X >= count) at the higher of the box''s and the cohort''s normal rate, when the count is unusual (core.templates.unusual); NULL when ordinary';
COMMENT ON COLUMN session_templates.usual IS 'the count expected in the session at that normal rate (set with unusual_p)';

ALTER TABLE sessions ADD COLUMN IF NOT EXISTS system_unusual_lines integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN sessions.system_unusual_lines IS 'non-VAR lines of the session''s system templates unusual far beyond chance (session_templates.unusual_p < 1e-6, core.templates.FEATURE_MAX_P): the autoencoder''s feature; 0 until `logalyzer templates` has counted the device';

ALTER TABLE template_miners ADD COLUMN IF NOT EXISTS judged_at timestamptz;
COMMENT ON COLUMN template_miners.judged_at IS 'when the cohort''s counts were last judged usual or not (NULL: never; the next templates run judges it)';
