-- Playback sessions (LOG_FORMAT.md section 4; column names are the contract) and devices.
-- Written by `logalyzer sessionize` (logalyzer/jobs/sessionize.py), one device at a time: a
-- device's rows are recomputed whole when it has new lines, and upserted by their
-- deterministic id, so a re-run changes nothing (updated_at moves only when values change).
-- No index on log_lines for this: every index slows the ingest's COPY, and reading one
-- device's VAR lines is a scan of its own partition.

CREATE TABLE IF NOT EXISTS sessions (
    rxid                 text NOT NULL,
    session_id           uuid NOT NULL,
    content_id           text,
    source               text,
    start_ts             timestamptz NOT NULL,
    end_ts               timestamptz NOT NULL,
    duration_s           double precision NOT NULL,
    ttff_ms              bigint,
    black_screen_count   integer NOT NULL DEFAULT 0,
    black_screen_ms      bigint NOT NULL DEFAULT 0,
    video_freeze_count   integer NOT NULL DEFAULT 0,
    video_freeze_ms      bigint NOT NULL DEFAULT 0,
    display_drop_count   integer NOT NULL DEFAULT 0,
    dropped_frames       bigint NOT NULL DEFAULT 0,
    buffering_count      integer NOT NULL DEFAULT 0,
    rebuffer_ms          bigint NOT NULL DEFAULT 0,
    rebuffer_ratio       double precision,
    trick_mode_count     integer NOT NULL DEFAULT 0,
    hdmi_event_count     integer NOT NULL DEFAULT 0,
    hdmi_disconnects     integer NOT NULL DEFAULT 0,
    standby_count        integer NOT NULL DEFAULT 0,
    error_count          integer NOT NULL DEFAULT 0,
    fatal_error          boolean NOT NULL DEFAULT false,
    video_start_failure  boolean NOT NULL DEFAULT false,
    seq_gaps             bigint NOT NULL DEFAULT 0,
    event_count          integer NOT NULL DEFAULT 0,
    model                text,
    fw                   text,
    app                  text,
    summary              jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rxid, session_id)
);
CREATE INDEX IF NOT EXISTS sessions_start_ts ON sessions (start_ts);

COMMENT ON TABLE sessions IS 'Playback sessions, LOG_FORMAT.md section 4; written by logalyzer sessionize';
COMMENT ON COLUMN sessions.session_id IS 'md5(rxid || ''|'' || first event epoch ms || ''|'' || its seq || ''|'' || its type)::uuid: deterministic';
COMMENT ON COLUMN sessions.content_id IS 'cid of the opening ChangeContent; null for a session before the first one';
COMMENT ON COLUMN sessions.source IS 'src of the opening ChangeContent (live, vod, app)';
COMMENT ON COLUMN sessions.end_ts IS 'next ChangeContent, StandbyEnter, last event before a silent gap, or the last event';
COMMENT ON COLUMN sessions.ttff_ms IS 'ttff_ms of the first FirstFrame (else its time from the session start); null without one';
COMMENT ON COLUMN sessions.black_screen_ms IS 'total of black-screen episodes: dur_ms, else end - start; an open start ends at end_ts';
COMMENT ON COLUMN sessions.rebuffer_ratio IS 'rebuffer_ms / (rebuffer_ms + play time), play time = session time not rebuffering';
COMMENT ON COLUMN sessions.standby_count IS 'StandbyEnter events that ended the session';
COMMENT ON COLUMN sessions.video_start_failure IS 'opened by ChangeContent, no FirstFrame, and a fatal PlaybackError';
COMMENT ON COLUMN sessions.seq_gaps IS 'lines lost inside the session: sum of (seq jump - 1) over consecutive events';
COMMENT ON COLUMN sessions.model IS 'from the device''s latest BootInfo at or before the session''s first event';
COMMENT ON COLUMN sessions.summary IS 'end_reason, counts per event type, hdmi / trick_modes / standby / errors / other events with times, open_episodes';
COMMENT ON COLUMN sessions.updated_at IS 'last time any value of the row changed';

CREATE TABLE IF NOT EXISTS devices (
    rxid                   text PRIMARY KEY,
    model                  text,
    fw                     text,
    app                    text,
    first_seen             timestamptz,
    last_seen              timestamptz,
    line_count             bigint NOT NULL DEFAULT 0,
    var_event_count        bigint NOT NULL DEFAULT 0,
    session_count          integer NOT NULL DEFAULT 0,
    analysed_files         integer NOT NULL DEFAULT 0,
    analysed_lines_loaded  bigint NOT NULL DEFAULT 0,
    analysed_through       timestamptz,
    analysed_at            timestamptz
);
COMMENT ON TABLE devices IS 'One row per analysed box; the analysed_* columns are its high-water mark';
COMMENT ON COLUMN devices.model IS 'from the latest BootInfo (also fw, app)';
COMMENT ON COLUMN devices.first_seen IS 'time of its earliest stored line (last_seen: latest)';
COMMENT ON COLUMN devices.line_count IS 'stored log lines (all tags)';
COMMENT ON COLUMN devices.analysed_files IS 'high-water mark: done/partial ledger files of the device when last analysed';
COMMENT ON COLUMN devices.analysed_lines_loaded IS 'high-water mark: sum of their lines_loaded';
COMMENT ON COLUMN devices.analysed_through IS 'high-water mark: latest finished_at of those files; any of the three changing means new lines';
