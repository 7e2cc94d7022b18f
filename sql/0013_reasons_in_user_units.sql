-- The autoencoder's reasons carry their reading in the session's own units since this version
-- ({"feature": "hdmi_disconnects", "text": "10 HDMI disconnects (usually 1)", "value": 2.3979,
-- "expected": 0.73, ...}, logalyzer.core.features.reading): the dashboards' one-line reasons
-- show that text; items written before it (no "text") keep showing the feature's name.
CREATE OR REPLACE FUNCTION anomaly_reason_text(p_reasons jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT string_agg(r.key || ': ' || r.items, '; ' ORDER BY r.key)
    FROM (SELECT j.key,
                 (SELECT string_agg(DISTINCT CASE jsonb_typeof(e)
                                        WHEN 'string' THEN e #>> '{}'
                                        WHEN 'object' THEN coalesce(
                                            e ->> 'text',
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
    'anomalies_consolidated.reasons as one line: "features: 10 HDMI disconnects (usually 1), ...; transitions: x -> y"';
