-- Raw log lines, one LIST partition per device (r##########), and the file ledger.
-- Partitions are created on the fly by the ingest (logalyzer.store.db.ensure_partition), each with a
-- unique index on line_md5: the idempotency key, MD5(rxid || E'\n' || raw line) stored as uuid.

CREATE TABLE IF NOT EXISTS ingested_files (
    file_id          serial PRIMARY KEY,
    path             text NOT NULL UNIQUE,
    rxid             text,
    size_bytes       bigint,
    mtime            timestamptz,
    fingerprint      text,
    compression      text,
    status           text NOT NULL
                     CHECK (status IN ('loading', 'done', 'partial', 'failed', 'refused')),
    lines_read       bigint NOT NULL DEFAULT 0,
    lines_loaded     bigint NOT NULL DEFAULT 0,
    lines_duplicate  bigint NOT NULL DEFAULT 0,
    lines_unparsed   bigint NOT NULL DEFAULT 0,
    lines_truncated  bigint NOT NULL DEFAULT 0,
    markers          bigint NOT NULL DEFAULT 0,
    bytes_read       bigint NOT NULL DEFAULT 0,
    error            text,
    started_at       timestamptz,
    finished_at      timestamptz
);
COMMENT ON COLUMN ingested_files.status IS
    'done | partial (damaged input: every line before the damage is loaded) | failed | refused '
    '(no RxID) | loading (in progress, or the run died: the next run reads it again)';

CREATE TABLE IF NOT EXISTS log_lines (
    rxid         text NOT NULL,
    line_md5     uuid NOT NULL,
    file_id      integer,
    line_no      bigint,
    ts           timestamptz,
    ts_inferred  boolean NOT NULL DEFAULT false,
    uptime_s     double precision,
    pid          integer,
    tid          integer,
    uid          text,
    level        text,
    tag          text,
    message      text NOT NULL,
    status       text NOT NULL,
    truncated    boolean NOT NULL DEFAULT false,
    category     text,
    function     text,
    event_type   text,
    data         jsonb
) PARTITION BY LIST (rxid);

COMMENT ON TABLE log_lines IS 'Every stored logcat line; partition r<digits> holds device R<digits>';
COMMENT ON COLUMN log_lines.line_md5 IS 'md5(rxid || E''\n'' || raw line)::uuid, the idempotency key';
COMMENT ON COLUMN log_lines.ts_inferred IS 'true when ts was taken from the nearest wall-clock line';
COMMENT ON COLUMN log_lines.status IS 'ok | partial (VAR line read in part) | unparsed (message = raw line)';
COMMENT ON COLUMN log_lines.message IS 'the message; for unparsed lines the whole raw line';
