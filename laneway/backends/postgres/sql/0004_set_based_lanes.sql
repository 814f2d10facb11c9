-- laneway PostgreSQL schema, migration 0004: claims and finishes handle their lanes with
-- a few set-based statements, not a few statements per lane.
--
-- Measured before this change (benchmarks/profile/redis_drain.py --url <postgres>, one
-- worker, 20,000 jobs, pg_stat_user_functions): with every job on a lane of its own the
-- server spent 325 us per job in finish_and_claim against 189 us without lanes. take()
-- ran a batch query and an UPDATE of the lanes row per lane, and apply_outcomes() ran
-- lane_lock(), a NOT EXISTS probe, an UPDATE and lane_refresh() (a SELECT, a head probe
-- and a DELETE) per lane: seven statements, and two writes of the lanes row, per lane.
--
-- Now:
--   take()            one statement locks the ready lanes and solo jobs (FOR UPDATE SKIP
--                     LOCKED); a second reads every locked lane's batch of consecutive
--                     queued jobs (its snapshot is taken with the locks held, so it sees
--                     each lane as it was locked, not as the first statement's snapshot
--                     had it); one UPDATE marks every lane taken as held.
--   apply_outcomes()  one statement locks the lanes of the finished jobs (in lock order),
--                     one statement releases every lane whose lease has no running job
--                     left in it: a lane with nothing pending is deleted, any other gets
--                     its new head and loses its holder in one write.
-- Both write the lanes rows they locked by ctid (a locked row cannot move): with seqscans
-- off (0003) that is a TID scan, whatever the statistics a cached generic plan was made from
-- (an UPDATE by "lane = ANY(...)" planned on a near-empty table read every lane of the
-- queue: 10 ms per claim with 31,000 lanes, tests/backends/test_postgres_flat_claims.py).
-- Semantics are unchanged: same lock order (leases -> lanes -> jobs), same order of
-- candidates, same fencing; a finish that requeues a laned job now wakes claims even when
-- the lane stays held by the rest of its batch (a spare wake-up, never a missed one).

CREATE OR REPLACE FUNCTION take(p_queues text[], p_worker text, p_limit integer, p_batch integer,
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
    v_rids tid[];
    v_keys text[];
    v_held tid[];
    v_stale text[];
    v_marked integer;
    v_unused integer;
    c record;
BEGIN
    PERFORM promote_due(p_queues, 32);
    v_now := clock_timestamp();
    FOREACH v_queue IN ARRAY p_queues LOOP
        EXIT WHEN v_room <= 0 OR v_lanes <= 0;
        v_unused := 0;
        v_held := '{}';
        v_stale := '{}';
        -- Lock the candidates (ready lanes and ready solo jobs) in one statement...
        SELECT coalesce(array_agg(x.rid ORDER BY x.prio DESC, x.seq), '{}'),
               coalesce(array_agg(x.key ORDER BY x.prio DESC, x.seq), '{}')
          INTO v_rids, v_keys
          FROM (
              WITH l AS (
                  SELECT ctid AS rid, lane AS key, head_priority AS prio, head_seq AS seq FROM lanes
                   WHERE queue = v_queue AND held IS NULL AND head_status = 'queued'
                   ORDER BY head_priority DESC, head_seq LIMIT least(v_room, v_lanes)
                   FOR UPDATE SKIP LOCKED
              ), s AS (
                  SELECT NULL::tid AS rid, id AS key, priority AS prio, seq FROM jobs
                   WHERE queue = v_queue AND lane IS NULL AND status = 'queued'
                   ORDER BY priority DESC, seq LIMIT least(v_room, v_lanes)
                   FOR UPDATE SKIP LOCKED
              )
              SELECT * FROM l UNION ALL SELECT * FROM s) AS x;
        -- ...then read each locked lane's batch in the next one, whose snapshot is taken
        -- with the locks held: a lane row locked here may be newer than the first
        -- statement's snapshot (a finish, cancel or retry committed while it ran), and its
        -- jobs must be read as of that version. The batch: the lane's first queued jobs in
        -- seq order, up to the first that is not queued (a retrying or blocking head
        -- yields none).
        FOR c IN
            SELECT u.rid, u.key,
                   CASE WHEN u.rid IS NULL THEN ARRAY[u.key] ELSE (
                       SELECT coalesce(array_agg(w.id ORDER BY w.seq), '{}') FROM (
                           SELECT a.id, a.seq, bool_and(a.status = 'queued') OVER (ORDER BY a.seq) AS ok FROM (
                               SELECT j.id, j.seq, j.status FROM jobs AS j
                                WHERE j.queue = v_queue AND j.lane = u.key AND j.lane IS NOT NULL
                                  AND (j.status IN ('queued', 'retrying') OR (j.status = 'dead' AND j.on_dead = 'block'))
                                ORDER BY j.seq LIMIT least(p_batch, v_room)) AS a) AS w
                        WHERE w.ok) END AS ids
              FROM unnest(v_rids, v_keys) WITH ORDINALITY AS u(rid, key, n)
             ORDER BY u.n
        LOOP
            IF v_room <= 0 OR v_lanes <= 0 THEN
                v_unused := v_unused + 1;
                CONTINUE;
            END IF;
            v_take := c.ids[1:v_room];
            IF cardinality(v_take) = 0 THEN
                v_stale := v_stale || c.key;
                CONTINUE;
            END IF;
            IF c.rid IS NOT NULL THEN
                v_held := v_held || c.rid;
            END IF;
            v_ids := v_ids || v_take;
            v_room := v_room - cardinality(v_take);
            v_lanes := v_lanes - 1;
        END LOOP;
        IF cardinality(v_ids) > 0 AND v_token IS NULL THEN
            v_token := nextval('lease_token');
        END IF;
        IF cardinality(v_held) > 0 THEN
            -- by the rows' ctids: they are locked by this claim, so they cannot move, and a
            -- TID scan (seqscans are off) does not depend on the table's statistics
            UPDATE lanes SET held = v_token WHERE ctid = ANY(v_held);
            GET DIAGNOSTICS v_marked = ROW_COUNT;
            IF v_marked <> cardinality(v_held) THEN  -- never seen; a free lane would break order
                RAISE EXCEPTION 'laneway claim: % of % lanes marked held', v_marked, cardinality(v_held);
            END IF;
        END IF;
        -- A lane whose recorded head was not queued after all (rare): recompute it.
        FOR i IN 1 .. cardinality(v_stale) LOOP
            PERFORM lane_refresh(v_queue, v_stale[i]);
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
    GET DIAGNOSTICS v_marked = ROW_COUNT;
    IF v_marked <> cardinality(v_ids) THEN  -- never seen; a lane held with nothing running would stall
        RAISE EXCEPTION 'laneway claim: % of % jobs taken', v_marked, cardinality(v_ids);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION apply_outcomes(p_ids text[], p_tokens bigint[], p_verdicts text[], p_results bytea[],
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
    v_lq text[];
    v_ll text[];
    v_rids tid[] := '{}';
    v_wake text[];
    v_missed bigint;
BEGIN
    SELECT coalesce(array_agg(token), '{}') INTO v_live FROM (
        SELECT token FROM leases WHERE token = ANY(p_tokens) AND expires_at > v_now
         ORDER BY token FOR UPDATE) AS s;
    IF cardinality(v_live) = 0 THEN
        RETURN array_fill(false, ARRAY[cardinality(p_ids)]);
    END IF;
    -- Lock the lanes of the jobs being finished, in lock order, with one statement, and
    -- keep their rows' ctids (locked, so they cannot move) for the release below. A lane
    -- held by a live lease always has its row (no step deletes a held lane); should one be
    -- missing all the same, lane_lock() creates it and the rows are read again.
    SELECT coalesce(array_agg(queue ORDER BY queue, lane), '{}'), coalesce(array_agg(lane ORDER BY queue, lane), '{}')
      INTO v_lq, v_ll FROM (
        SELECT DISTINCT queue, lane FROM jobs
         WHERE id = ANY(p_ids) AND lane IS NOT NULL AND status = 'running' AND token = ANY(v_live)) AS d;
    IF cardinality(v_ll) > 0 THEN
        LOOP
            SELECT coalesce(array_agg(locked.rid ORDER BY u.n), '{}') INTO v_rids
              FROM unnest(v_lq, v_ll) WITH ORDINALITY AS u(queue, lane, n)
             CROSS JOIN LATERAL (SELECT l.ctid AS rid FROM lanes AS l
                                  WHERE l.queue = u.queue AND l.lane = u.lane FOR UPDATE) AS locked;
            EXIT WHEN cardinality(v_rids) = cardinality(v_ll);
            FOR i IN 1 .. cardinality(v_ll) LOOP
                PERFORM lane_lock(v_lq[i], v_ll[i]);
            END LOOP;
        END LOOP;
    END IF;
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
    -- Release each lane whose lease has no running job left in it, in one statement: a lane
    -- with nothing pending and no other holder is deleted; any other gets its new head and
    -- loses its holder in one write. Wake claims for ready work and for requeued jobs.
    WITH done AS (
        SELECT u.queue, u.lane, array_agg(DISTINCT u.token) AS tokens,
               bool_or(u.verdict IN ('retry', 'release')) AS requeued
          FROM unnest(v_queues, v_lanes, v_tokens, v_verdicts) AS u(queue, lane, token, verdict)
         GROUP BY 1, 2
    ), free AS (
        SELECT k.rid, d.tokens, h.seq, h.priority, h.status
          FROM done AS d
          JOIN unnest(v_lq, v_ll, v_rids) AS k(queue, lane, rid) ON k.queue = d.queue AND k.lane = d.lane
          LEFT JOIN LATERAL (
              SELECT j.seq, j.priority, j.status FROM jobs AS j
               WHERE j.queue = d.queue AND j.lane = d.lane AND j.lane IS NOT NULL
                 AND (j.status IN ('queued', 'retrying') OR (j.status = 'dead' AND j.on_dead = 'block'))
               ORDER BY j.seq LIMIT 1) AS h ON true
         WHERE NOT EXISTS (SELECT 1 FROM jobs AS r WHERE r.token = ANY(d.tokens) AND r.status = 'running'
                                                   AND r.queue = d.queue AND r.lane = d.lane)
    ), gone AS (
        DELETE FROM lanes AS l USING free AS f
         WHERE l.ctid = f.rid AND f.seq IS NULL AND (l.held IS NULL OR l.held = ANY(f.tokens))
        RETURNING 1
    ), changed AS (
        UPDATE lanes AS l SET held = CASE WHEN l.held = ANY(f.tokens) THEN NULL ELSE l.held END,
                              head_seq = f.seq, head_priority = f.priority, head_status = f.status
          FROM free AS f
         WHERE l.ctid = f.rid
           AND NOT (f.seq IS NULL AND (l.held IS NULL OR l.held = ANY(f.tokens)))
        RETURNING l.queue, l.held IS NULL AND l.head_status = 'queued' AS ready
    )
    SELECT (SELECT array_agg(DISTINCT q) FROM (SELECT queue AS q FROM changed WHERE ready
                                               UNION ALL SELECT queue FROM done WHERE requeued) AS w),
           (SELECT count(*) FROM free) - (SELECT count(*) FROM gone) - (SELECT count(*) FROM changed)
      INTO v_wake, v_missed;
    IF v_missed <> 0 THEN  -- never seen; a lane left held by a finished lease would stall
        RAISE EXCEPTION 'laneway finish: % released lanes not written', v_missed;
    END IF;
    IF v_wake IS NOT NULL THEN
        PERFORM pg_notify(channel(), q) FROM unnest(v_wake) AS q;
    END IF;
    DELETE FROM leases AS l WHERE l.token = ANY(v_live)
       AND NOT EXISTS (SELECT 1 FROM jobs WHERE token = l.token AND status = 'running');
    RETURN ARRAY(SELECT i = ANY(v_n) FROM generate_series(1, cardinality(p_ids)) AS i ORDER BY i);
END
$$;
