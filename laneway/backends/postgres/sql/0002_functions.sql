-- laneway PostgreSQL schema, migration 0002: the functions every operation is one call of.
--
-- Each function runs in the caller's transaction (a claim or finish by a worker is a
-- transaction of its own; enqueue and finish may run inside a caller's transaction) and
-- takes every deadline from clock_timestamp(), read once per call: now() would be the
-- start of a caller's transaction, which may be long gone.
--
-- Lock order, followed everywhere so that no two calls can deadlock:
--   leases (ascending token)  ->  lanes (ascending queue, lane)  ->  jobs
-- A claim only ever takes lanes and solo jobs with SKIP LOCKED, so it never waits.
-- Every change to a lane's set of pending jobs (queued, retrying, blocking dead) is made
-- while holding its lanes row, then lane_refresh() recomputes the head from
-- jobs_lane_pending (one index probe). Laned jobs are stored as 'waiting' and joined to
-- their lanes by promote(): at once by an enqueue that is its own transaction, otherwise
-- (an enqueue inside a caller's transaction, which must not hold lane locks) by the next
-- claims and sweeps; delayed jobs and retrying heads join the same way when due.
--
-- Entry points (every function the backend calls) run with search_path fixed to the
-- namespace's schema and with generic plans: their statements are planned once per
-- connection, not at every call (custom plans cost more to make than to run here).
-- The helpers channel(), lane_lock(), lane_refresh(), promote_queue(), promote_due(),
-- take() and apply_outcomes() inherit both settings from the entry point calling them
-- (a nested call of a function with SET clauses pays for switching them twice).
--
-- Notifications: pg_notify(channel(), queue) whenever work may have become ready
-- (enqueue, a lane freed with work behind it, a retry or release, recovery, promotion);
-- NOTIFY is transactional, so a rolled-back enqueue wakes nobody.

CREATE FUNCTION channel() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT 'laneway.' || current_schema()
$$;

-- Lock a lane's row, creating it when missing. Returns once this transaction holds it.
CREATE FUNCTION lane_lock(p_queue text, p_lane text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    LOOP
        PERFORM 1 FROM lanes WHERE queue = p_queue AND lane = p_lane FOR UPDATE;
        IF FOUND THEN
            RETURN;
        END IF;
        INSERT INTO lanes (queue, lane) VALUES (p_queue, p_lane) ON CONFLICT DO NOTHING;
        IF FOUND THEN
            RETURN;
        END IF;
    END LOOP;
END
$$;

-- Recompute a locked lane's head; drop the row when the lane is empty and free.
-- Returns whether the lane is ready (free, with a queued head).
CREATE FUNCTION lane_refresh(p_queue text, p_lane text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_held bigint;
    h record;
BEGIN
    SELECT held INTO v_held FROM lanes WHERE queue = p_queue AND lane = p_lane;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    SELECT seq, priority, status INTO h FROM jobs
     WHERE queue = p_queue AND lane = p_lane AND lane IS NOT NULL
       AND (status IN ('queued', 'retrying') OR (status = 'dead' AND on_dead = 'block'))
     ORDER BY seq LIMIT 1;
    IF NOT FOUND THEN
        IF v_held IS NULL THEN
            DELETE FROM lanes WHERE queue = p_queue AND lane = p_lane;
        ELSE
            UPDATE lanes SET head_seq = NULL, head_priority = NULL, head_status = NULL
             WHERE queue = p_queue AND lane = p_lane AND head_status IS NOT NULL;
        END IF;
        RETURN false;
    END IF;
    UPDATE lanes SET head_seq = h.seq, head_priority = h.priority, head_status = h.status
     WHERE queue = p_queue AND lane = p_lane
       AND (head_seq, head_priority, head_status) IS DISTINCT FROM (h.seq, h.priority, h.status);
    RETURN v_held IS NULL AND h.status = 'queued';
END
$$;

-- Store jobs in order. Immediate jobs take their seq now; delayed ones when due. A job
-- whose id is already stored, or whose unique key belongs to a pending job, is not
-- stored: its row names that job with created = false. With p_join (an enqueue that is a
-- transaction of its own) the new laned jobs also join their lanes now, so claims do not
-- pay for it; inside a caller's transaction they wait as 'waiting' for the next claim, so
-- that a caller's long transaction never holds a lane's lock.
CREATE FUNCTION enqueue(
    p_ids text[], p_tasks text[], p_queues text[], p_lanes text[], p_priorities integer[],
    p_payloads bytea[], p_max_attempts integer[], p_timeouts double precision[],
    p_uniques text[], p_ttls double precision[], p_on_dead text[],
    p_delays double precision[], p_run_ats double precision[], p_join boolean)
RETURNS TABLE (job_id text, created boolean)
LANGUAGE plpgsql
SET search_path FROM CURRENT SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_run timestamptz;
    v_id text;
BEGIN
    PERFORM pg_notify(channel(), q) FROM (SELECT DISTINCT q FROM unnest(p_queues) AS q) AS s;
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
                   CASE WHEN due > v_now THEN NULL ELSE nextval('job_seq') END
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
                    v_run, CASE WHEN v_run > v_now THEN NULL ELSE nextval('job_seq') END)
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

-- Record tick for schedule p_name and enqueue its job, only if tick is later than the last.
CREATE FUNCTION claim_tick(
    p_name text, p_tick double precision,
    p_ids text[], p_tasks text[], p_queues text[], p_lanes text[], p_priorities integer[],
    p_payloads bytea[], p_max_attempts integer[], p_timeouts double precision[],
    p_uniques text[], p_ttls double precision[], p_on_dead text[],
    p_delays double precision[], p_run_ats double precision[])
RETURNS boolean
LANGUAGE plpgsql
SET search_path FROM CURRENT SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_ok boolean;
BEGIN
    INSERT INTO ticks AS t (name, tick) VALUES (p_name, p_tick)
    ON CONFLICT (name) DO UPDATE SET tick = EXCLUDED.tick WHERE t.tick < EXCLUDED.tick
    RETURNING true INTO v_ok;
    IF v_ok IS NULL THEN
        RETURN false;
    END IF;
    PERFORM enqueue(p_ids, p_tasks, p_queues, p_lanes, p_priorities, p_payloads, p_max_attempts,
                    p_timeouts, p_uniques, p_ttls, p_on_dead, p_delays, p_run_ats, true);
    RETURN true;
END
$$;

-- Move due waiting jobs of p_queue into their lanes and its due retrying heads back to
-- queued, oldest due first, at most p_limit. The caller holds the queue's promotion lock.
-- Set-based: the lanes are locked (created when missing) in lane order with one statement,
-- and their heads recomputed with one statement of one index probe per lane.
CREATE FUNCTION promote_queue(p_queue text, p_now timestamptz, p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_ids text[];
    v_need text[];
    v_seqs bigint[];
    v_lanes text[];
    v_solo boolean;
    v_locked integer;
    v_n integer;
    v_ready boolean;
BEGIN
    SELECT array_agg(id ORDER BY run_at, nid), array_agg(id ORDER BY run_at, nid) FILTER (WHERE seq IS NULL),
           array_agg(DISTINCT lane) FILTER (WHERE lane IS NOT NULL), bool_or(lane IS NULL)
      INTO v_ids, v_need, v_lanes, v_solo
      FROM (SELECT id, run_at, nid, seq, lane FROM jobs
             WHERE queue = p_queue AND status IN ('waiting', 'retrying') AND run_at <= p_now
             ORDER BY run_at LIMIT p_limit) AS c;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;
    v_lanes := coalesce(v_lanes, '{}');
    LOOP
        -- v_lanes is sorted (array_agg DISTINCT), so the lanes are locked in lock order; one
        -- primary-key probe per lane whatever the planner thinks of the table's size
        PERFORM 1 FROM unnest(v_lanes) AS u(lane)
         CROSS JOIN LATERAL (SELECT 1 FROM lanes AS l WHERE l.queue = p_queue AND l.lane = u.lane
                              FOR UPDATE) AS locked;
        GET DIAGNOSTICS v_locked = ROW_COUNT;
        EXIT WHEN v_locked >= cardinality(v_lanes);
        INSERT INTO lanes (queue, lane) SELECT p_queue, l FROM unnest(v_lanes) AS l ORDER BY 2
        ON CONFLICT DO NOTHING;
    END LOOP;
    v_seqs := ARRAY(SELECT nextval('job_seq') FROM generate_series(1, coalesce(cardinality(v_need), 0)));
    UPDATE jobs AS j SET status = 'queued', seq = coalesce(j.seq, s.seq)
      FROM unnest(v_ids) AS u(id) LEFT JOIN unnest(v_need, v_seqs) AS s(id, seq) ON s.id = u.id
     WHERE j.id = u.id AND j.status IN ('waiting', 'retrying');
    GET DIAGNOSTICS v_n = ROW_COUNT;
    WITH heads AS (
        SELECT l.lane, l.held, h.seq, h.priority, h.status
          FROM unnest(v_lanes) AS u(lane)
         CROSS JOIN LATERAL (SELECT lane, held, queue FROM lanes AS x
                              WHERE x.queue = p_queue AND x.lane = u.lane LIMIT 1) AS l
          LEFT JOIN LATERAL (
              SELECT j.seq, j.priority, j.status FROM jobs AS j
               WHERE j.queue = l.queue AND j.lane = l.lane AND j.lane IS NOT NULL
                 AND (j.status IN ('queued', 'retrying') OR (j.status = 'dead' AND j.on_dead = 'block'))
               ORDER BY j.seq LIMIT 1) AS h ON true
    ), gone AS (
        DELETE FROM lanes AS l USING heads
         WHERE l.queue = p_queue AND l.lane = heads.lane AND heads.seq IS NULL AND heads.held IS NULL
    ), changed AS (
        UPDATE lanes AS l SET head_seq = heads.seq, head_priority = heads.priority, head_status = heads.status
          FROM heads
         WHERE l.queue = p_queue AND l.lane = heads.lane
           AND (l.head_seq, l.head_priority, l.head_status)
               IS DISTINCT FROM (heads.seq, heads.priority, heads.status)
           AND NOT (heads.seq IS NULL AND heads.held IS NULL)
        RETURNING heads.held IS NULL AND heads.status = 'queued' AS ready
    )
    SELECT coalesce(bool_or(ready), false) INTO v_ready FROM changed;
    IF v_ready OR v_solo THEN
        PERFORM pg_notify(channel(), p_queue);
    END IF;
    RETURN v_n;
END
$$;

-- Promote due work of p_queues (in name order, so lanes are locked in lock order). One
-- promoter per queue at a time: a queue whose lock is taken is skipped (its work is being
-- done). Finding nothing due is one index probe per queue.
CREATE FUNCTION promote_due(p_queues text[], p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_first timestamptz;
    v_n integer := 0;
    v_queue text;
BEGIN
    FOR v_queue IN SELECT DISTINCT q FROM unnest(p_queues) AS q ORDER BY 1 LOOP
        SELECT run_at INTO v_first FROM jobs
         WHERE queue = v_queue AND status IN ('waiting', 'retrying') ORDER BY run_at LIMIT 1;
        CONTINUE WHEN v_first IS NULL OR v_first > v_now;
        CONTINUE WHEN NOT pg_try_advisory_xact_lock(hashtextextended(channel() || '/' || v_queue, 1));
        v_n := v_n + promote_queue(v_queue, v_now, p_limit);
    END LOOP;
    RETURN v_n;
END
$$;

-- Lease up to p_limit jobs from ready lanes and ready solo jobs of p_queues (in order),
-- highest head priority first, then lowest seq; up to p_batch consecutive queued jobs per
-- lane, at most p_max_lanes lanes. One new token covers every job returned.
CREATE FUNCTION take(p_queues text[], p_worker text, p_limit integer, p_batch integer,
                      p_max_lanes integer, p_lease_s double precision)
RETURNS SETOF jobs
LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz;
    v_token bigint;
    v_queue text;
    v_room integer := p_limit;
    v_lanes integer := coalesce(p_max_lanes, p_limit);
    v_ids text[] := '{}';
    v_take text[];
    v_unused integer;
    c record;
BEGIN
    PERFORM promote_due(p_queues, 32);
    v_now := clock_timestamp();
    FOREACH v_queue IN ARRAY p_queues LOOP
        EXIT WHEN v_room <= 0 OR v_lanes <= 0;
        v_unused := 0;
        FOR c IN
            WITH l AS (
                SELECT lane AS key, head_priority AS prio, head_seq AS seq FROM lanes
                 WHERE queue = v_queue AND held IS NULL AND head_status = 'queued'
                 ORDER BY head_priority DESC, head_seq LIMIT least(v_room, v_lanes)
                 FOR UPDATE SKIP LOCKED
            ), s AS (
                SELECT id AS key, priority AS prio, seq FROM jobs
                 WHERE queue = v_queue AND lane IS NULL AND status = 'queued'
                 ORDER BY priority DESC, seq LIMIT least(v_room, v_lanes)
                 FOR UPDATE SKIP LOCKED
            )
            SELECT true AS laned, key, prio, seq FROM l
            UNION ALL
            SELECT false AS laned, key, prio, seq FROM s
            ORDER BY prio DESC, seq
        LOOP
            IF v_room <= 0 OR v_lanes <= 0 THEN
                v_unused := v_unused + 1;
                CONTINUE;
            END IF;
            IF c.laned THEN
                SELECT coalesce(array_agg(id ORDER BY seq), '{}') INTO v_take FROM (
                    SELECT id, seq, bool_and(status = 'queued') OVER (ORDER BY seq) AS ok FROM (
                        SELECT id, seq, status FROM jobs
                         WHERE queue = v_queue AND lane = c.key AND lane IS NOT NULL
                           AND (status IN ('queued', 'retrying') OR (status = 'dead' AND on_dead = 'block'))
                         ORDER BY seq LIMIT least(p_batch, v_room)) AS a) AS b
                 WHERE ok;
                IF cardinality(v_take) = 0 THEN
                    PERFORM lane_refresh(v_queue, c.key);
                    CONTINUE;
                END IF;
            ELSE
                v_take := ARRAY[c.key];
            END IF;
            IF v_token IS NULL THEN
                v_token := nextval('lease_token');
            END IF;
            IF c.laned THEN
                UPDATE lanes SET held = v_token WHERE queue = v_queue AND lane = c.key;
            END IF;
            v_ids := v_ids || v_take;
            v_room := v_room - cardinality(v_take);
            v_lanes := v_lanes - 1;
        END LOOP;
        IF v_unused > 0 THEN
            -- Ready work this claim locked but left: claims that skipped it and found
            -- nothing may be waiting; wake them once this transaction ends.
            PERFORM pg_notify(channel(), v_queue);
        END IF;
    END LOOP;
    IF v_token IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
        WITH lease AS (
            INSERT INTO leases (token, worker, expires_at)
            VALUES (v_token, p_worker, v_now + make_interval(secs => p_lease_s))
        ), taken AS (
            UPDATE jobs AS j SET status = 'running', attempts = j.attempts + 1, token = v_token,
                                 worker = p_worker, started_at = v_now
              FROM unnest(v_ids) WITH ORDINALITY AS u(id, n)
             WHERE j.id = u.id AND j.status = 'queued'
            RETURNING j.*, u.n
        )
        SELECT id, nid, task, queue, lane, priority, payload, status, attempts, max_attempts,
               timeout_s, uniq, result_ttl_s, on_dead, enqueued_at, run_at, seq, token, worker,
               started_at, finished_at, expires_at, result, error, traceback
          FROM taken ORDER BY n;
END
$$;

-- Push the expiry of each live lease; false for leases that expired, were swept or finished.
CREATE FUNCTION extend(p_tokens bigint[], p_lease_s double precision) RETURNS boolean[]
LANGUAGE plpgsql
SET search_path FROM CURRENT SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_live bigint[];
BEGIN
    WITH live AS (
        SELECT token FROM leases WHERE token = ANY(p_tokens) AND expires_at > v_now
         ORDER BY token FOR UPDATE
    ), upd AS (
        UPDATE leases AS l SET expires_at = v_now + make_interval(secs => p_lease_s)
          FROM live WHERE l.token = live.token RETURNING l.token
    )
    SELECT coalesce(array_agg(token), '{}') INTO v_live FROM upd;
    RETURN ARRAY(SELECT u.t = ANY(v_live) FROM unnest(p_tokens) WITH ORDINALITY AS u(t, n) ORDER BY u.n);
END
$$;

-- Apply outcomes; each is accepted only if its job runs under that token and the lease is
-- live (fencing). A lane is released once every job its lease took there is finished.
CREATE FUNCTION apply_outcomes(p_ids text[], p_tokens bigint[], p_verdicts text[], p_results bytea[],
                       p_errors text[], p_tracebacks text[], p_delays double precision[])
RETURNS boolean[]
LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_live bigint[];
    v_n bigint[];
    v_queues text[];
    v_lanes text[];
    v_tokens bigint[];
    v_verdicts text[];
    r record;
BEGIN
    SELECT coalesce(array_agg(token), '{}') INTO v_live FROM (
        SELECT token FROM leases WHERE token = ANY(p_tokens) AND expires_at > v_now
         ORDER BY token FOR UPDATE) AS s;
    IF cardinality(v_live) = 0 THEN
        RETURN array_fill(false, ARRAY[cardinality(p_ids)]);
    END IF;
    FOR r IN SELECT DISTINCT queue, lane FROM jobs
              WHERE id = ANY(p_ids) AND lane IS NOT NULL AND status = 'running' AND token = ANY(v_live)
              ORDER BY 1, 2 LOOP
        PERFORM lane_lock(r.queue, r.lane);
    END LOOP;
    -- One UPDATE for every outcome (the first of several for one job wins; the rest are refused).
    WITH o AS (
        SELECT DISTINCT ON (x.id) x.*
          FROM unnest(p_ids, p_tokens, p_verdicts, p_results, p_errors, p_tracebacks, p_delays)
               WITH ORDINALITY AS x(id, token, verdict, result, error, tb, delay, n)
         WHERE x.token = ANY(v_live)
         ORDER BY x.id, x.n
    ), u AS (
        UPDATE jobs AS j SET
            status = CASE o.verdict WHEN 'succeeded' THEN 'succeeded' WHEN 'retry' THEN 'retrying'
                                    WHEN 'dead' THEN 'dead' ELSE 'queued' END,
            result = CASE WHEN o.verdict = 'succeeded' THEN o.result ELSE j.result END,
            error = CASE WHEN o.verdict IN ('retry', 'dead') THEN o.error ELSE j.error END,
            traceback = CASE WHEN o.verdict IN ('retry', 'dead') THEN o.tb ELSE j.traceback END,
            run_at = CASE WHEN o.verdict = 'retry' THEN v_now + make_interval(secs => o.delay) ELSE j.run_at END,
            attempts = CASE WHEN o.verdict = 'release' THEN j.attempts - 1 ELSE j.attempts END,
            finished_at = CASE WHEN o.verdict IN ('succeeded', 'dead') THEN v_now ELSE j.finished_at END,
            expires_at = CASE WHEN o.verdict = 'succeeded' THEN v_now + make_interval(secs => j.result_ttl_s) END,
            token = NULL
          FROM o
         WHERE j.id = o.id AND j.token = o.token AND j.status = 'running'
        RETURNING o.n, j.queue, j.lane, o.token, o.verdict
    )
    SELECT coalesce(array_agg(n), '{}'), array_agg(queue), array_agg(lane), array_agg(token), array_agg(verdict)
      INTO v_n, v_queues, v_lanes, v_tokens, v_verdicts FROM u;
    -- Release each lane whose lease has no running job left in it; wake claims for ready work.
    FOR r IN SELECT u.queue, u.lane, u.token, bool_or(u.verdict IN ('retry', 'release')) AS requeued
               FROM unnest(v_queues, v_lanes, v_tokens, v_verdicts) AS u(queue, lane, token, verdict)
              GROUP BY 1, 2, 3 ORDER BY 1, 2 LOOP
        IF r.lane IS NULL THEN
            IF r.requeued THEN
                PERFORM pg_notify(channel(), r.queue);
            END IF;
        ELSIF NOT EXISTS (SELECT 1 FROM jobs WHERE token = r.token AND status = 'running'
                                              AND queue = r.queue AND lane = r.lane) THEN
            UPDATE lanes SET held = NULL WHERE queue = r.queue AND lane = r.lane AND held = r.token;
            IF lane_refresh(r.queue, r.lane) OR r.requeued THEN
                PERFORM pg_notify(channel(), r.queue);
            END IF;
        END IF;
    END LOOP;
    DELETE FROM leases AS l WHERE l.token = ANY(v_live)
       AND NOT EXISTS (SELECT 1 FROM jobs WHERE token = l.token AND status = 'running');
    RETURN ARRAY(SELECT i = ANY(v_n) FROM generate_series(1, cardinality(p_ids)) AS i ORDER BY i);
END
$$;

-- Entry point of promote_due().
CREATE FUNCTION promote(p_queues text[], p_limit integer) RETURNS integer
LANGUAGE plpgsql
SET search_path FROM CURRENT SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN promote_due(p_queues, p_limit);
END
$$;

-- Entry point of take(): the claim.
CREATE FUNCTION claim(p_queues text[], p_worker text, p_limit integer, p_batch integer,
                      p_max_lanes integer, p_lease_s double precision)
RETURNS SETOF jobs
LANGUAGE plpgsql
SET search_path FROM CURRENT SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN QUERY SELECT * FROM take(p_queues, p_worker, p_limit, p_batch, p_max_lanes, p_lease_s);
END
$$;

-- Entry point of apply_outcomes(): the finish.
CREATE FUNCTION finish(p_ids text[], p_tokens bigint[], p_verdicts text[], p_results bytea[],
                       p_errors text[], p_tracebacks text[], p_delays double precision[])
RETURNS boolean[]
LANGUAGE plpgsql
SET search_path FROM CURRENT SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN apply_outcomes(p_ids, p_tokens, p_verdicts, p_results, p_errors, p_tracebacks, p_delays);
END
$$;

-- finish(...) then claim(...) in one transaction: the worker's acknowledgement and its next
-- claim cost one round trip and one commit. Every row carries the finish's verdicts; the
-- claimed jobs come as the job column (a single row with a NULL job when none was claimed).
CREATE FUNCTION finish_and_claim(
    p_ids text[], p_tokens bigint[], p_verdicts text[], p_results bytea[], p_errors text[],
    p_tracebacks text[], p_delays double precision[],
    p_queues text[], p_worker text, p_limit integer, p_batch integer, p_lease_s double precision)
RETURNS TABLE (accepted boolean[], job jobs)
LANGUAGE plpgsql
SET search_path FROM CURRENT SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_accepted boolean[] := '{}';
BEGIN
    IF cardinality(p_ids) > 0 THEN
        v_accepted := apply_outcomes(p_ids, p_tokens, p_verdicts, p_results, p_errors, p_tracebacks, p_delays);
    END IF;
    IF p_limit > 0 THEN
        RETURN QUERY SELECT v_accepted, c FROM take(p_queues, p_worker, p_limit, p_batch, NULL, p_lease_s) AS c;
    END IF;
    IF NOT FOUND OR p_limit <= 0 THEN
        RETURN QUERY SELECT v_accepted, NULL::jobs;
    END IF;
END
$$;

-- Recover expired leases (and every lease of p_worker): their running jobs go back to the
-- head of their lanes as queued, or dead once out of attempts; their lanes are released.
CREATE FUNCTION sweep(p_worker text, p_limit integer) RETURNS integer
LANGUAGE plpgsql
SET search_path FROM CURRENT SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_tokens bigint[];
    v_queues text[];
    v_lanes text[];
    v_n integer;
    r record;
BEGIN
    SELECT coalesce(array_agg(token), '{}') INTO v_tokens FROM (
        SELECT token FROM leases WHERE expires_at <= v_now OR worker = p_worker
         ORDER BY token LIMIT p_limit FOR UPDATE SKIP LOCKED) AS s;
    IF cardinality(v_tokens) = 0 THEN
        RETURN 0;
    END IF;
    FOR r IN SELECT DISTINCT queue, lane FROM jobs
              WHERE token = ANY(v_tokens) AND status = 'running' AND lane IS NOT NULL ORDER BY 1, 2 LOOP
        PERFORM lane_lock(r.queue, r.lane);
    END LOOP;
    WITH rec AS (
        UPDATE jobs SET
            status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END,
            error = CASE WHEN attempts >= max_attempts
                         THEN format('lease expired: worker lost while running attempt %s of %s',
                                     attempts, max_attempts)
                         ELSE 'lease expired: worker lost; re-queued' END,
            finished_at = CASE WHEN attempts >= max_attempts THEN v_now END,
            token = NULL
         WHERE token = ANY(v_tokens) AND status = 'running'
        RETURNING queue, lane
    )
    SELECT count(*), array_agg(queue), array_agg(lane) INTO v_n, v_queues, v_lanes FROM rec;
    FOR r IN SELECT DISTINCT u.queue, u.lane FROM unnest(v_queues, v_lanes) AS u(queue, lane) ORDER BY 1, 2 LOOP
        IF r.lane IS NULL THEN
            PERFORM pg_notify(channel(), r.queue);
        ELSE
            UPDATE lanes SET held = NULL WHERE queue = r.queue AND lane = r.lane AND held = ANY(v_tokens);
            IF lane_refresh(r.queue, r.lane) THEN
                PERFORM pg_notify(channel(), r.queue);
            END IF;
        END IF;
    END LOOP;
    DELETE FROM leases WHERE token = ANY(v_tokens);
    RETURN v_n;
END
$$;

-- Delete up to p_limit succeeded/cancelled jobs whose result_ttl ran out.
CREATE FUNCTION prune(p_limit integer) RETURNS integer
LANGUAGE plpgsql
SET search_path FROM CURRENT SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_n integer;
BEGIN
    WITH doomed AS (
        SELECT id FROM jobs WHERE expires_at <= v_now
         ORDER BY expires_at LIMIT p_limit FOR UPDATE SKIP LOCKED
    )
    DELETE FROM jobs AS j USING doomed WHERE j.id = doomed.id;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;

-- Cancel a waiting, queued, retrying or dead job; its lane moves on.
CREATE FUNCTION cancel(p_id text) RETURNS boolean
LANGUAGE plpgsql
SET search_path FROM CURRENT SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    j record;
    v_now timestamptz;
    v_done boolean;
BEGIN
    LOOP
        SELECT queue, lane, status INTO j FROM jobs WHERE id = p_id;
        IF NOT FOUND OR j.status NOT IN ('waiting', 'queued', 'retrying', 'dead') THEN
            RETURN false;
        END IF;
        IF j.lane IS NOT NULL AND j.status <> 'waiting' THEN
            PERFORM lane_lock(j.queue, j.lane);
        END IF;
        v_now := clock_timestamp();
        v_done := NULL;
        UPDATE jobs SET status = 'cancelled', finished_at = v_now, token = NULL,
                        expires_at = v_now + make_interval(secs => result_ttl_s)
         WHERE id = p_id AND status = j.status
        RETURNING true INTO v_done;
        IF v_done THEN
            IF j.lane IS NOT NULL AND j.status <> 'waiting' AND lane_refresh(j.queue, j.lane) THEN
                PERFORM pg_notify(channel(), j.queue);
            END IF;
            RETURN true;
        END IF;
    END LOOP;
END
$$;

-- Put a dead or cancelled job back at the head of its lane with attempts reset.
CREATE FUNCTION retry(p_id text) RETURNS boolean
LANGUAGE plpgsql
SET search_path FROM CURRENT SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    j record;
    v_done boolean;
BEGIN
    SELECT queue, lane, status INTO j FROM jobs WHERE id = p_id;
    IF NOT FOUND OR j.status NOT IN ('dead', 'cancelled') THEN
        RETURN false;
    END IF;
    IF j.lane IS NOT NULL THEN
        PERFORM lane_lock(j.queue, j.lane);
    END IF;
    BEGIN
        UPDATE jobs SET status = 'queued', attempts = 0, run_at = clock_timestamp(),
                        finished_at = NULL, expires_at = NULL, seq = coalesce(seq, nextval('job_seq'))
         WHERE id = p_id AND status = j.status
        RETURNING true INTO v_done;
    EXCEPTION WHEN unique_violation THEN
        RETURN false;
    END;
    IF v_done IS NULL THEN
        RETURN false;
    END IF;
    IF j.lane IS NULL OR lane_refresh(j.queue, j.lane) THEN
        PERFORM pg_notify(channel(), j.queue);
    END IF;
    RETURN true;
END
$$;

-- Delete up to about p_limit jobs in final status p_status (of p_queue, or every queue).
-- Dead jobs that block their lane are deleted lane by lane, under the lane's lock.
CREATE FUNCTION purge(p_status text, p_queue text, p_limit integer) RETURNS integer
LANGUAGE plpgsql
SET search_path FROM CURRENT SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_n integer := 0;
    v_k integer;
    r record;
BEGIN
    IF p_status = 'dead' THEN
        FOR r IN SELECT DISTINCT queue, lane FROM jobs
                  WHERE status = 'dead' AND on_dead = 'block' AND lane IS NOT NULL
                    AND (p_queue IS NULL OR queue = p_queue)
                  ORDER BY 1, 2 LIMIT p_limit LOOP
            PERFORM lane_lock(r.queue, r.lane);
            DELETE FROM jobs WHERE queue = r.queue AND lane = r.lane AND status = 'dead';
            GET DIAGNOSTICS v_k = ROW_COUNT;
            v_n := v_n + v_k;
            IF lane_refresh(r.queue, r.lane) THEN
                PERFORM pg_notify(channel(), r.queue);
            END IF;
        END LOOP;
    END IF;
    WITH doomed AS (
        SELECT id FROM jobs
         WHERE status = p_status AND status IN ('succeeded', 'dead', 'cancelled')
           AND (p_queue IS NULL OR queue = p_queue)
           AND NOT (status = 'dead' AND on_dead = 'block' AND lane IS NOT NULL)
         LIMIT p_limit FOR UPDATE SKIP LOCKED
    )
    DELETE FROM jobs AS j USING doomed WHERE j.id = doomed.id;
    GET DIAGNOSTICS v_k = ROW_COUNT;
    RETURN v_n + v_k;
END
$$;
