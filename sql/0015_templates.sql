-- System-line templates (issue 14, "what else the box logged"): Drain3 miners per model/firmware
-- cohort, their templates, and how often each template occurs inside each session's window.
-- Written by `logalyzer templates` (logalyzer/jobs/templates.py), read by `logalyzer detect`
-- for the reasons of anomalous sessions (logalyzer/store/templates.py).

CREATE TABLE IF NOT EXISTS template_miners (
    cohort       text PRIMARY KEY,
    state        bytea NOT NULL,
    lines_mined  bigint NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE template_miners IS 'Drain3 miner state per cohort (model/firmware): what a Drain3 PersistenceHandler saves (jsonpickle, zlib, base64), so any Ray worker restores the miner';
COMMENT ON COLUMN template_miners.cohort IS 'model/firmware of the boxes it mines, e.g. "DV8235/9.1.3" ("?" where unknown)';
COMMENT ON COLUMN template_miners.lines_mined IS 'sample lines the miner learnt from when it was mined (later additions: templates.size)';

CREATE TABLE IF NOT EXISTS templates (
    template_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cohort       text NOT NULL REFERENCES template_miners (cohort) ON DELETE CASCADE,
    cluster_id   integer NOT NULL,
    template     text NOT NULL,
    example      text,
    size         bigint NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (cohort, cluster_id)
);
COMMENT ON TABLE templates IS 'One row per Drain3 cluster of a cohort''s miner: its template over "tag: masked message"';
COMMENT ON COLUMN templates.template IS 'e.g. "ActivityManager: ANR in <*>" (<*>: a masked or varying part)';
COMMENT ON COLUMN templates.example IS 'the first masked line that created it';
COMMENT ON COLUMN templates.size IS 'distinct masked lines (while mining: lines) the miner folded into it';

CREATE TABLE IF NOT EXISTS session_templates (
    rxid         text NOT NULL,
    session_id   uuid NOT NULL,
    template_id  bigint NOT NULL REFERENCES templates (template_id) ON DELETE CASCADE,
    count        integer NOT NULL CHECK (count > 0),
    PRIMARY KEY (rxid, session_id, template_id),
    FOREIGN KEY (rxid, session_id) REFERENCES sessions (rxid, session_id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS session_templates_template ON session_templates (template_id);
COMMENT ON TABLE session_templates IS 'How many non-VAR lines of each template the box logged within the session''s window (start_ts..end_ts)';

CREATE TABLE IF NOT EXISTS template_devices (
    rxid                  text PRIMARY KEY REFERENCES devices (rxid) ON DELETE CASCADE,
    cohort                text NOT NULL,
    sessions_analysed_at  timestamptz,
    lines                 bigint NOT NULL DEFAULT 0,
    unmatched             bigint NOT NULL DEFAULT 0,
    applied_at            timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE template_devices IS 'High-water mark of the templates step: a device is recounted when devices.analysed_at moved (sessionize recomputed it)';
COMMENT ON COLUMN template_devices.lines IS 'non-VAR lines inside its sessions'' windows at the last count';
COMMENT ON COLUMN template_devices.unmatched IS 'of those, lines no template matched (0 unless the miner may not learn)';

-- The top system templates of a session, for drill-downs and dashboards.
CREATE OR REPLACE VIEW session_template_counts AS
SELECT st.rxid, st.session_id, s.start_ts, t.cohort, t.template, st.count,
       st.count / greatest(s.duration_s, 600) * 3600 AS per_viewing_hour
FROM session_templates st
JOIN templates t USING (template_id)
JOIN sessions s USING (rxid, session_id);
COMMENT ON VIEW session_template_counts IS 'session_templates with the template text and the count per viewing hour (sessions under 10 min count as 10)';
