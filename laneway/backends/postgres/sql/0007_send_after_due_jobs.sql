-- laneway PostgreSQL schema, migration 0007: a delayed job that came due before a later job
-- of its lane was sent runs first.
--
-- enqueue() gave a laned job that is due at once its seq when it inserted it, and a delayed
-- job takes its seq when it is promoted (by a claim, or by the promote_due() that enqueue()
-- runs after its insert). A delayed job that came due while no claim ran (every worker busy)
-- was therefore still unpromoted when a later job of its lane was sent, and that later job
-- took the smaller seq and ran first, against SPEC 3.4 ("a delayed job joins its lane when it
-- becomes due"). Now, when a due job of the queue still waits to join its lane (one index
-- probe per queue finds out; usually none does), a laned job sent outside a caller's
-- transaction (p_join) is inserted without a seq, like a delayed one, and the promote_due()
-- at the end of the same call numbers every due job of the queue, the new ones included,
-- oldest due time first: one pass that locks the lanes in lane order, as before (promoting
-- the due jobs in a first pass and inserting after it locked lanes out of that order, and
-- deadlocked with finishes). Otherwise the send numbers its jobs at the insert as before
-- (numbering them all in the promotion made a bulk send of 2,000 jobs to one lane ten times
-- slower). A job left unpromoted (another transaction held the queue's promotion lock) is
-- numbered by the next promotion, in the same order. Sends inside a caller's transaction
-- keep their seq from the insert and leave promotion to the next claim, as before. The body
-- is otherwise 0002's, with 0003's enable_seqscan setting (CREATE OR REPLACE would drop it).

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
    -- a due job of these queues still waits to join its lane (one index probe per queue):
    -- then the laned jobs sent now take their seqs from the promotion below, after it
    v_behind := p_join AND EXISTS (
        SELECT 1 FROM (SELECT DISTINCT q FROM unnest(p_queues) AS q) AS s
         CROSS JOIN LATERAL (SELECT 1 FROM jobs
                              WHERE queue = s.q AND status = 'waiting' AND run_at <= v_now
                              LIMIT 1) AS due);
    IF NOT EXISTS (SELECT 1 FROM unnest(p_uniques) AS u WHERE u IS NOT NULL) THEN
        RETURN QUERY
        WITH src AS (
            SELECT x.*, coalesce(to_timestamp(x.run_at), v_now + make_interval(secs => x.delay)) AS due
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
        v_run := coalesce(to_timestamp(p_run_ats[i]), v_now + make_interval(secs => p_delays[i]));
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
