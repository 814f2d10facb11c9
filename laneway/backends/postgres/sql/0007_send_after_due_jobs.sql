-- laneway PostgreSQL schema, migration 0007: a delayed job that came due before a later job
-- of its lane was sent runs first.
--
-- enqueue() gives a laned job that is due at once its seq when it is inserted, and a delayed
-- job takes its seq when it is promoted (by a claim, or by the promote_due() that enqueue()
-- runs after its insert). A delayed job that came due while no claim ran (every worker busy)
-- was therefore still unpromoted when a later job of its lane was sent, and that later job
-- took the smaller seq and ran first, against SPEC 3.4 ("a delayed job joins its lane when it
-- becomes due"). Sends now go through enqueue_in_due_order(), which promotes the queues' due
-- jobs before it inserts, when the call joins lanes itself and has a laned job. (A queue
-- whose promotion lock another transaction holds at that moment is skipped, as promote_due()
-- always does: that transaction is promoting its due jobs.) Sends inside a caller's
-- transaction (p_join false) leave promotion to the next claim, as before.

CREATE FUNCTION enqueue_in_due_order(
    p_ids text[], p_tasks text[], p_queues text[], p_lanes text[], p_priorities integer[],
    p_payloads bytea[], p_max_attempts integer[], p_timeouts double precision[],
    p_uniques text[], p_ttls double precision[], p_on_dead text[],
    p_delays double precision[], p_run_ats double precision[], p_join boolean)
RETURNS TABLE (job_id text, created boolean)
LANGUAGE plpgsql
SET search_path FROM CURRENT SET enable_seqscan = off AS $$
BEGIN
    IF p_join AND EXISTS (SELECT 1 FROM unnest(p_lanes) AS l WHERE l IS NOT NULL) THEN
        PERFORM promote_due(p_queues, cardinality(p_ids) + 100);
    END IF;
    RETURN QUERY SELECT e.job_id, e.created
                   FROM enqueue(p_ids, p_tasks, p_queues, p_lanes, p_priorities, p_payloads,
                                p_max_attempts, p_timeouts, p_uniques, p_ttls, p_on_dead,
                                p_delays, p_run_ats, p_join) AS e;
END
$$;
