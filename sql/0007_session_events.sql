-- Each session's VAR events as the LSTM detector's keys (logalyzer/core/features.py event_key), in
-- order; written by `logalyzer sessionize` together with the session (logalyzer/jobs/sessionize.py),
-- read by `logalyzer train` and `logalyzer detect`. Its own migration: it came after 0004 had
-- been applied to databases in use.

CREATE TABLE IF NOT EXISTS session_events (
    rxid        text NOT NULL,
    session_id  uuid NOT NULL,
    event_keys  text[] NOT NULL,
    PRIMARY KEY (rxid, session_id),
    FOREIGN KEY (rxid, session_id) REFERENCES sessions (rxid, session_id) ON DELETE CASCADE
);
COMMENT ON TABLE session_events IS 'Each session''s VAR events as detector keys, in order (logalyzer/core/features.py event_key): the LSTM''s input, written by sessionize with the session';
COMMENT ON COLUMN session_events.event_keys IS 'e.g. {ChangeContent,FirstFrame,HdmiHotplug:connected=false,...}';

-- Sessions analysed before this table existed have no keys yet: mark every analysed device
-- stale so the next `logalyzer sessionize` recomputes it (ids are deterministic, so the
-- sessions themselves are only updated where a value changed).
UPDATE devices SET analysed_files = 0;
