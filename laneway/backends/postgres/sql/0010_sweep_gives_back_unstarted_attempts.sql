-- laneway PostgreSQL schema, migration 0010: a batch's jobs behind a job that killed its
-- worker keep their attempts.
--
-- A claim with batch > 1 counts an attempt for every job it takes of a lane, and sweep()
-- counted every running job of a lost lease as attempted. When a lane's first job killed its
-- worker every time, the jobs claimed behind it, which never started, used up their attempts
-- with it and went dead together. Only the first job of a lane in a lost lease (the lowest
-- seq) can have been running; the others now go back to the lane as queued with the attempt
-- their claim counted given back. The body is otherwise 0002's, with 0003's enable_seqscan
-- setting (CREATE OR REPLACE would drop it).

CREATE OR REPLACE FUNCTION sweep(p_worker text, p_limit integer) RETURNS integer
LANGUAGE plpgsql
SET search_path FROM CURRENT SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $$
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
    WITH lost AS (  -- behind: not the first job of its lane in its lease, so never started
        SELECT id, lane IS NOT NULL AND seq > min(seq) OVER (PARTITION BY token, queue, lane) AS behind
          FROM jobs WHERE token = ANY(v_tokens) AND status = 'running'
    ), rec AS (
        UPDATE jobs AS j SET
            status = CASE WHEN NOT l.behind AND j.attempts >= j.max_attempts THEN 'dead' ELSE 'queued' END,
            attempts = CASE WHEN l.behind THEN j.attempts - 1 ELSE j.attempts END,
            error = CASE WHEN l.behind THEN j.error
                         WHEN j.attempts >= j.max_attempts
                         THEN format('lease expired: worker lost while running attempt %s of %s',
                                     j.attempts, j.max_attempts)
                         ELSE 'lease expired: worker lost; re-queued' END,
            finished_at = CASE WHEN NOT l.behind AND j.attempts >= j.max_attempts THEN v_now END,
            token = NULL
          FROM lost AS l
         WHERE j.id = l.id
        RETURNING j.queue, j.lane
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
