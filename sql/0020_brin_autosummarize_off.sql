-- The device tables' BRIN indexes on ts stop asking autovacuum to summarise their ranges: the
-- loader summarises the ranges each chunk filled itself, in the chunk's transaction
-- (store.lines.LineLoader._summarize), because `autosummarize` only queues a request that a
-- bulk load overflows. Left on, it costs an autovacuum work item per
-- filled range and, once the queue is full, a line in the server's log per range
-- ("request for BRIN range summarization for index ... was not recorded": 35,539 of them over
-- one day's benchmarks, bench/README.md "Digests beside the lines").
--
-- A partitioned index's storage parameters cannot be changed, so log_lines_ts_brin (sql/0012)
-- keeps `autosummarize = on` and each new device table's index is switched off when the table
-- is made (store.db.ensure_partition). Here: the device tables that exist already. Switching a
-- BRIN index's parameter rewrites nothing: it takes a brief lock on the index and is done.
DO $$
DECLARE
    idx regclass;
BEGIN
    FOR idx IN
        SELECT i.indexrelid::regclass
        FROM pg_inherits h
        JOIN pg_index i ON i.indrelid = h.inhrelid
        JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_am am ON am.oid = c.relam
        WHERE h.inhparent = 'log_lines'::regclass AND am.amname = 'brin'
          AND c.reloptions @> ARRAY['autosummarize=on']
    LOOP
        EXECUTE format('ALTER INDEX %s SET (autosummarize = off)', idx);
    END LOOP;
END $$;
