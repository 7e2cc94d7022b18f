-- Idempotency without a unique index on every line (issue 12; bench/README.md "The row and
-- its index"). The unique btree on line_md5, a random key, cost PostgreSQL about half of a
-- COPY's CPU. A line's own clock as its text writes it (line_key, logalyzer/core/parser.py)
-- is the same for every copy of the line, so the loader finds a chunk's twins by looking in
-- the chunk's key ranges, under a per-device advisory lock, through these BRIN indexes, and
-- COPYs only the new lines (logalyzer/store/lines.py). Lines without a key (no header) keep a
-- unique index, partial, created per partition by store.db.ensure_partition.
--
-- Two partial BRIN indexes, not one: kernel lines (key -1 - uptime, negative) sit beside
-- logcat lines (dates, positive) in the same files, so one block range holds both, and one
-- min/max over it would span everything between. Each index keeps the min/max of one kind.
-- (One minmax-multi index does the same, but it cost PostgreSQL about 1 us a line more to
-- maintain and summarise: bench/README.md.)
--
-- Partitions made before this migration keep their unique index on line_md5 and their rows
-- no key: the loader sees that index and loads them as before (`logalyzer db migrate` says
-- how many there are, and README "Upgrading" how to give one the new shape).
ALTER TABLE log_lines ADD COLUMN IF NOT EXISTS line_key bigint;

COMMENT ON COLUMN log_lines.line_key IS
    'the line''s own clock as written, in microseconds: date and time of day without zone, or '
    'epoch; -1 - uptime for kernel lines; null without a header. The ordered half of idempotency';

CREATE INDEX IF NOT EXISTS log_lines_clock_brin ON log_lines USING brin (line_key)
    WHERE line_key >= 0;
CREATE INDEX IF NOT EXISTS log_lines_uptime_brin ON log_lines USING brin (line_key)
    WHERE line_key < 0;
