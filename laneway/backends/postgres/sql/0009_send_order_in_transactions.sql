-- laneway PostgreSQL schema, migration 0009: two order fixes in enqueue() found by review.
--
-- A send inside the caller's transaction (p_join false) numbered its laned jobs at the insert
-- even when a due job of the queue still waited to join its lane. A plain send made just
-- before it, whose join had been skipped (another transaction held the queue's promotion
-- lock), was numbered later, so of two jobs one producer sent to a lane the second ran first
-- (a stress run with 30 % of sends in transactions: 248 such starts in 15 s). Such a send
-- now leaves its laned jobs unnumbered too, for the promotion that numbers every due job of
-- the queue in the order it joined; a send in a transaction counts as joining at its insert.
--
-- A job sent with a run_at in the past was stored with that run_at. promote_queue() chooses
-- the due jobs to join by run_at, with a limit, and numbers them by when they joined
-- (0008), so such a job could be chosen ahead of a delayed job of its lane that had come due
-- before it was sent, and take the smaller seq. A run_at in the past is now stored as the
-- send's own time: when it joins. The body is otherwise 0007's.

CREATE OR REPLACE FUNCTION enqueue(
    p_ids text[], p_tasks text[], p_queues text[], p_lanes text[], p_priorities integer[],
    p_payloads bytea[], p_max_attempts integer[], p_timeouts double precision[],
    p_uniques text[], p_ttls double precision[], p_on_dead text[],
    p_delays double precision[], p_run_ats double precision[], p_join boolean)
RETURNS TABLE (job_id text, created boolean)
LANGUAGE plpgsql
SET search_path FROM CURRENT SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_run timestamptz;
    v_id text;
    v_behind boolean;
BEGIN
    PERFORM pg_notify(channel(), q) FROM (SELECT DISTINCT q FROM unnest(p_queues) AS q) AS s;
    -- a due job of the queues a laned job joins still waits to join its lane (one index probe
    -- per such queue, none for a send without lanes): then the laned jobs sent now take their
    -- seqs from a promotion, after it (below, or for a send in the caller's transaction the
    -- first claim after its commit)
    v_behind := EXISTS (
        SELECT 1 FROM (SELECT DISTINCT x.q FROM unnest(p_queues, p_lanes) AS x(q, l) WHERE x.l IS NOT NULL) AS s
         CROSS JOIN LATERAL (SELECT 1 FROM jobs
                              WHERE queue = s.q AND status = 'waiting' AND run_at <= v_now
                              LIMIT 1) AS due);
    IF NOT EXISTS (SELECT 1 FROM unnest(p_uniques) AS u WHERE u IS NOT NULL) THEN
        RETURN QUERY
        WITH src AS (
            SELECT x.*, greatest(coalesce(to_timestamp(x.run_at), v_now + make_interval(secs => x.delay)),
                                 v_now) AS due
              FROM unnest(p_ids, p_tasks, p_queues, p_lanes, p_priorities, p_payloads,
                          p_max_attempts, p_timeouts, p_ttls, p_on_dead, p_delays, p_run_ats)
                   WITH ORDINALITY AS x(id, task, queue, lane, priority, payload, max_attempts,
                                        timeout_s, ttl, on_dead, delay, run_at, n)
        ), ins AS (
            INSERT INTO jobs (id, task, queue, lane, priority, payload, status, max_attempts,
                              timeout_s, result_ttl_s, on_dead, enqueued_at, run_at, seq)
            SELECT id, task, queue, lane, priority, payload,
                   CASE WHEN due > v_now OR lane IS NOT NULL THEN 'waiting' ELSE 'queued' END,
                   max_attempts, timeout_s, ttl, on_dead, v_now, due,
                   CASE WHEN due > v_now OR (lane IS NOT NULL AND v_behind) THEN NULL ELSE nextval('job_seq') END
              FROM src ORDER BY n
            ON CONFLICT (id) DO NOTHING
            RETURNING jobs.id
        )
        SELECT s.id, s.first AND ins.id IS NOT NULL
          FROM (SELECT id, n, row_number() OVER (PARTITION BY id ORDER BY n) = 1 AS first FROM src) AS s
          LEFT JOIN ins ON ins.id = s.id
         ORDER BY s.n;
        IF p_join THEN
            PERFORM promote_due(p_queues, cardinality(p_ids) + 100);
        END IF;
        RETURN;
    END IF;
    FOR i IN 1 .. cardinality(p_ids) LOOP
        v_run := greatest(coalesce(to_timestamp(p_run_ats[i]), v_now + make_interval(secs => p_delays[i])),
                          v_now);
        LOOP
            v_id := NULL;
            INSERT INTO jobs (id, task, queue, lane, priority, payload, status, max_attempts,
                              timeout_s, uniq, result_ttl_s, on_dead, enqueued_at, run_at, seq)
            VALUES (p_ids[i], p_tasks[i], p_queues[i], p_lanes[i], p_priorities[i], p_payloads[i],
                    CASE WHEN v_run > v_now OR p_lanes[i] IS NOT NULL THEN 'waiting' ELSE 'queued' END,
                    p_max_attempts[i], p_timeouts[i], p_uniques[i], p_ttls[i], p_on_dead[i], v_now,
                    v_run, CASE WHEN v_run > v_now OR (p_lanes[i] IS NOT NULL AND v_behind) THEN NULL
                                ELSE nextval('job_seq') END)
            ON CONFLICT DO NOTHING
            RETURNING jobs.id INTO v_id;
            IF v_id IS NOT NULL THEN
                job_id := v_id;
                created := true;
                EXIT;
            END IF;
            IF EXISTS (SELECT 1 FROM jobs AS j WHERE j.id = p_ids[i]) THEN
                job_id := p_ids[i];
                created := false;
                EXIT;
            END IF;
            SELECT j.id INTO v_id FROM jobs AS j
             WHERE j.uniq = p_uniques[i] AND j.status IN ('waiting', 'queued', 'running', 'retrying');
            IF v_id IS NOT NULL THEN
                job_id := v_id;
                created := false;
                EXIT;
            END IF;
        END LOOP;
        RETURN NEXT;
    END LOOP;
    IF p_join THEN
        PERFORM promote_due(p_queues, cardinality(p_ids) + 100);
    END IF;
END
$$;

