-- The ledger tells rows PostgreSQL refused from lines already stored, and input damage from
-- a load cut short (issue 11). A `partial` file is read again by the next run unless its
-- damage is in the input itself (input_damaged) and the file is unchanged; rows loaded before
-- this migration were `partial` for either reason, so they are read once more (duplicates are
-- skipped, so this costs time, never rows).
ALTER TABLE ingested_files
    ADD COLUMN IF NOT EXISTS lines_degraded bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS lines_failed bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS input_damaged boolean NOT NULL DEFAULT false;

COMMENT ON COLUMN ingested_files.lines_loaded IS
    'rows new to the partition, lines_degraded included';
COMMENT ON COLUMN ingested_files.lines_duplicate IS
    'lines already stored (a re-read, the overlap of rotated files)';
COMMENT ON COLUMN ingested_files.lines_degraded IS
    'rows PostgreSQL refused as parsed, stored with status partial, VAR fields null, raw text kept';
COMMENT ON COLUMN ingested_files.lines_failed IS
    'rows PostgreSQL refused even degraded: not stored (the error column says why)';
COMMENT ON COLUMN ingested_files.input_damaged IS
    'the file itself is damaged (corrupt gzip, refused rows): re-reading it unchanged cannot do better';
COMMENT ON COLUMN ingested_files.status IS
    'done | partial (damaged input, or a load cut short: every line before the damage is loaded) '
    '| failed | refused (no RxID) | loading (in progress, or the run died: the next run reads it again)';
