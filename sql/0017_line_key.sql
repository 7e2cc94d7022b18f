-- Idempotency without a unique index on every line (issue 12; bench/README.md "The row and
-- its index"). The unique btree on line_md5, a random key, cost PostgreSQL about half of a
-- COPY's CPU. A line's own clock as its text writes it (line_key, logalyzer/core/parser.py)
-- is the same for every copy of the line, so the loader finds a chunk's twins by looking in
-- the chunk's key ranges, under a per-device advisory lock, through this BRIN index, and
-- COPYs only the new lines (logalyzer/store/lines.py). Lines without a key (unparsed) keep a
-- unique index, partial, created per partition by store.db.ensure_partition.
--
-- minmax_multi, not plain minmax: a block range can hold both kernel lines (uptime keys,
-- small) and logcat lines (date keys, large); plain minmax would then span everything between.
--
-- Partitions made before this migration keep their unique index on line_md5 and their rows
-- no key: the loader sees that index and loads them as before (`logalyzer db migrate` says
-- how many there are, and README "Upgrading" how to give one the new shape).
ALTER TABLE log_lines ADD COLUMN IF NOT EXISTS line_key bigint;

COMMENT ON COLUMN log_lines.line_key IS
    'the line''s own clock as written (date and time of day without zone, epoch, or kernel '
    'uptime) in microseconds; null for unparsed lines. The ordered half of idempotency';

CREATE INDEX IF NOT EXISTS log_lines_key_brin
    ON log_lines USING brin (line_key int8_minmax_multi_ops);
