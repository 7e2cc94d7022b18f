-- A dropped device table's digests go with it (sql/0018 kept them until a new partition was
-- made, and then swept the whole of line_ranges for every new box, under the partition lock:
-- work that grew with the fleet, for a fleet that gains boxes every day). DROP TABLE fires no
-- table trigger, so an event trigger deletes the digests of the tables a DROP TABLE removed,
-- through line_ranges' index on `part`.
--
-- Only a superuser may create an event trigger. Without one (a role that only owns the
-- schema) the digests of a dropped table stay, harmless: a new table given the same OID clears
-- that OID's digests itself (store.db.ensure_partition). To sweep them by hand:
--   DELETE FROM line_ranges WHERE part NOT IN
--       (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'log_lines'::regclass);

CREATE OR REPLACE FUNCTION line_ranges_forget() RETURNS event_trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF to_regclass('line_ranges') IS NULL THEN  -- line_ranges itself was dropped
        RETURN;
    END IF;
    DELETE FROM line_ranges WHERE part = ANY (ARRAY(
        SELECT objid::regclass FROM pg_event_trigger_dropped_objects()
        WHERE object_type = 'table'));
END $$;

DO $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        DROP EVENT TRIGGER IF EXISTS line_ranges_forget;
        CREATE EVENT TRIGGER line_ranges_forget ON sql_drop WHEN TAG IN ('DROP TABLE')
            EXECUTE FUNCTION line_ranges_forget();
    ELSE
        RAISE NOTICE 'line_ranges_forget: not a superuser, so no event trigger: a dropped '
            'device table''s digests stay in line_ranges (sql/0019 says how to sweep them)';
    END IF;
END $$;
