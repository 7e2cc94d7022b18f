-- A time window of one box's lines: `logalyzer grep`, GET /v1/lines and session_lines() read
-- one partition for a range of ts. Without an index that is a scan of the whole partition
-- (1.4-8 s for a 10 M-line box, bench/grep.py); with this one, 15-35 ms for an hour.
--
-- BRIN, not btree, because of what each costs the ingest (bench/README.md, "Search"): a
-- btree on (ts) or (ts, file_id, line_no) took 1.6-1.8x the PostgreSQL CPU of the COPY
-- (+2.3-3.2 us a line, 13-20 % of the whole ingest's CPU a line) and 1.3-1.4x its WAL; BRIN
-- costs nothing measurable and is 0.1 MB for 10 M lines. It fits how lines are stored: the
-- ingest appends each file a chunk at a time, so the rows of a block range are a few hours of
-- one box (or its lines without a time, which BRIN also finds: IS NULL). What BRIN cannot do
-- is give rows in order: the queries sort what a range holds, and context lines are read in
-- time spans around the hits (logalyzer/store/search.py).
--
-- autosummarize: a block range is summarised as soon as it is full, not at the next VACUUM,
-- so the lines just loaded are not read by every search until then.
--
-- Created on the partitioned parent, so PostgreSQL builds it on every existing partition and
-- every partition created later (store.db.ensure_partition) gets its own.
CREATE INDEX IF NOT EXISTS log_lines_ts_brin
    ON log_lines USING brin (ts) WITH (autosummarize = on);
