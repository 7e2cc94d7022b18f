-- Idempotency without any index on the lines themselves (issue 12; bench/README.md "Digests
-- beside the lines"). sql/0017 found a chunk's twins through two BRIN indexes on line_key:
-- keeping them up, summarising them after every chunk and reading the rows of the chunk's key
-- ranges cost PostgreSQL about as much again as the row's own COPY. A line's twin has the same
-- key, so it is enough to know, for each range of keys already stored, the digests of its
-- lines: one row here per stored chunk range (store.lines.LineLoader writes it in the chunk's
-- own transaction, under the device's lock), a few hundred rows for a box's ten million
-- lines. The loader reads the rows whose range meets its chunk's ranges, drops the lines whose
-- digest it finds, COPYs the rest and records their digests.
--
-- The rows must describe the partition as it is, or a line deleted by hand would never load
-- again: they are keyed by the partition's OID (a partition dropped and made again is a new
-- OID; sql/0019 deletes a dropped table's rows), and a statement
-- trigger on each partition (and two on log_lines itself) rebuilds them from its rows after a
-- DELETE, UPDATE or TRUNCATE.
--
-- Lines without a key (no header) keep their partial unique index (sql/0017). Partitions made
-- before 0017 keep their unique index on line_md5 and are loaded as before.

CREATE TABLE IF NOT EXISTS line_ranges (
    part    regclass NOT NULL,
    key_lo  bigint NOT NULL,
    key_hi  bigint NOT NULL,
    lines   integer NOT NULL,
    md5s    bytea NOT NULL
);
-- 16 random bytes a line do not compress: store them as they are, without trying
ALTER TABLE line_ranges ALTER COLUMN md5s SET STORAGE EXTERNAL;
CREATE INDEX IF NOT EXISTS line_ranges_part ON line_ranges (part, key_lo);

COMMENT ON TABLE line_ranges IS
    'Idempotency of keyed lines: the digests (line_md5, 16 bytes each, concatenated) of the '
    'lines of device partition `part` stored with line_key in [key_lo, key_hi]';

-- The partition's rows from its lines, an hour of keys a row (floor: kernel uptimes, negative,
-- and clocks never share one), under the loaders' lock of the device (store.db.LOCK_LINES).
CREATE OR REPLACE FUNCTION rebuild_line_ranges(p regclass) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7301003, hashtext(upper(p::text)));
    DELETE FROM line_ranges WHERE part = p;
    EXECUTE format(
        'INSERT INTO line_ranges (part, key_lo, key_hi, lines, md5s)'
        ' SELECT %L::regclass, min(line_key), max(line_key), count(*)::integer,'
        '        string_agg(uuid_send(line_md5), ''''::bytea)'
        ' FROM %s WHERE line_key IS NOT NULL GROUP BY floor(line_key / 3600000000.0)',
        p, p);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

CREATE OR REPLACE FUNCTION line_ranges_follow() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM rebuild_line_ranges(TG_RELID::regclass);
    RETURN NULL;
END $$;

-- The same for a DELETE or UPDATE through the parent table (a partition's own statement
-- triggers fire only for statements naming it): rebuild the partitions whose rows it touched.
-- (A TRUNCATE of the parent fires each partition's own trigger.)
CREATE OR REPLACE FUNCTION line_ranges_follow_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT DISTINCT rxid FROM old_rows LOOP
        PERFORM rebuild_line_ranges(lower(r.rxid)::regclass);
    END LOOP;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS line_ranges_follow_delete ON log_lines;
CREATE TRIGGER line_ranges_follow_delete AFTER DELETE ON log_lines
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION line_ranges_follow_rows();
DROP TRIGGER IF EXISTS line_ranges_follow_update ON log_lines;
CREATE TRIGGER line_ranges_follow_update AFTER UPDATE ON log_lines
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION line_ranges_follow_rows();

-- Every partition there is: its trigger and its rows (the lines stored under 0017's shape,
-- or before it). store.db.ensure_partition does the same for partitions made from now on.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT inhrelid::regclass AS part FROM pg_inherits
             WHERE inhparent = 'log_lines'::regclass LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS line_ranges_follow ON %s', r.part);
        EXECUTE format('CREATE TRIGGER line_ranges_follow AFTER DELETE OR UPDATE OR TRUNCATE'
                       ' ON %s FOR EACH STATEMENT EXECUTE FUNCTION line_ranges_follow()', r.part);
        PERFORM rebuild_line_ranges(r.part);
    END LOOP;
END $$;

DROP INDEX IF EXISTS log_lines_clock_brin;
DROP INDEX IF EXISTS log_lines_uptime_brin;
