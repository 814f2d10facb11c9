-- laneway PostgreSQL schema, migration 0003: the hot-path functions never plan a
-- sequential scan of a table.
--
-- Their statements are planned once per connection (generic plans, migration 0002), so a
-- plan is made from the table sizes of the moment it is first needed. A worker that
-- connects while a queue is nearly empty and keeps its connection while a burst fills
-- the queue would keep a plan that reads every lane and sorts them, until an
-- ANALYZE (autovacuum's, within about a minute) invalidates it: measured with 10,000 and
-- 30,000 ready lanes, claims took 2.8 and 7.8 ms instead of 0.5 ms. Every statement of
-- these functions has an index made for it (0001's header), so they run with
-- enable_seqscan off; with it the same test measured claims flat (0.9 ms at 31,000 lanes).
-- (A table with no usable index would still be scanned: the setting only weighs plans.)

ALTER FUNCTION enqueue(text[], text[], text[], text[], integer[], bytea[], integer[],
                       double precision[], text[], double precision[], text[],
                       double precision[], double precision[], boolean)
    SET enable_seqscan = off;
ALTER FUNCTION claim_tick(text, double precision, text[], text[], text[], text[], integer[],
                          bytea[], integer[], double precision[], text[], double precision[],
                          text[], double precision[], double precision[])
    SET enable_seqscan = off;
ALTER FUNCTION claim(text[], text, integer, integer, integer, double precision)
    SET enable_seqscan = off;
ALTER FUNCTION extend(bigint[], double precision) SET enable_seqscan = off;
ALTER FUNCTION finish(text[], bigint[], text[], bytea[], text[], text[], double precision[])
    SET enable_seqscan = off;
ALTER FUNCTION finish_and_claim(text[], bigint[], text[], bytea[], text[], text[],
                                double precision[], text[], text, integer, integer,
                                double precision)
    SET enable_seqscan = off;
ALTER FUNCTION promote(text[], integer) SET enable_seqscan = off;
ALTER FUNCTION sweep(text, integer) SET enable_seqscan = off;
ALTER FUNCTION prune(integer) SET enable_seqscan = off;
