-- Reading one device's lines in time order: `logalyzer grep`, GET /v1/lines and session_lines()
-- ask for a time window of one partition, ordered by (ts, file_id, line_no). Without an index
-- that is a scan of the whole partition (about 3 s for a 10 M-line box, bench/grep.py); with
-- this one it is a range of the index read in order (a few ms for an hour).
--
-- Created on the partitioned parent, so PostgreSQL builds it on every existing partition and
-- every partition created later (store.db.ensure_partition) gets its own automatically.
-- What it costs: bench/README.md ("Search"): about a third more time per COPYed line and
-- about 40 bytes per line on disk.
--
-- On a large existing database this migration builds the index on every partition in one
-- transaction, blocking writes to log_lines while it runs. To avoid that, build it first per
-- partition with CREATE INDEX CONCURRENTLY r##########_ts_file_id_line_no_idx ON
-- r########## (ts, file_id, line_no), then this statement only attaches them.
CREATE INDEX IF NOT EXISTS log_lines_ts_file_id_line_no_idx
    ON log_lines (ts, file_id, line_no);
