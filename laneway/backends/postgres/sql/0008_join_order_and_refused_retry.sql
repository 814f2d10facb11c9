-- laneway PostgreSQL schema, migration 0008: two fixes found by review.
--
-- promote_queue() numbered the due jobs it joins to their lanes by run_at. Since 0007 a send
-- made while a due job waits leaves its laned jobs unnumbered for the same pass, so a job
-- sent with a run_at in the past took a seq ahead of jobs that had joined the lane before it
-- was sent (a due delayed job, or an earlier job of the same call). Jobs are now numbered by
-- when they joined: greatest(run_at, enqueued_at), then insertion order. The selection of
-- due jobs still goes by run_at (its index). The body is otherwise 0006's.
--
-- retry() of a laned job locks its lane first, which creates the lanes row when missing; when
-- the retry was then refused (its unique key taken by a pending job), that row stayed behind,
-- empty and unheld: stats() counted it and lanes(limit=n) could return nothing. A refused
-- retry now refreshes the lane, which deletes such a row. The body is otherwise 0002's.

CREATE OR REPLACE FUNCTION promote_queue(p_queue text, p_now timestamptz, p_limit integer) RETURNS integer
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
    SELECT array_agg(id ORDER BY run_at, nid),
           array_agg(id ORDER BY greatest(run_at, enqueued_at), nid) FILTER (WHERE seq IS NULL),
           array_agg(DISTINCT lane) FILTER (WHERE lane IS NOT NULL), bool_or(lane IS NULL)
      INTO v_ids, v_need, v_lanes, v_solo
      FROM (SELECT id, run_at, enqueued_at, nid, seq, lane FROM jobs
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
        SELECT l.tid, l.lane, l.held, h.seq, h.priority, h.status
          FROM unnest(v_lanes) AS u(lane)
         CROSS JOIN LATERAL (SELECT ctid AS tid, lane, held, queue FROM lanes AS x
                              WHERE x.queue = p_queue AND x.lane = u.lane LIMIT 1) AS l
          LEFT JOIN LATERAL (
              SELECT j.seq, j.priority, j.status FROM jobs AS j
               WHERE j.queue = l.queue AND j.lane = l.lane AND j.lane IS NOT NULL
                 AND (j.status IN ('queued', 'retrying') OR (j.status = 'dead' AND j.on_dead = 'block'))
               ORDER BY j.seq LIMIT 1) AS h ON true
    ), gone AS (
        DELETE FROM lanes AS l USING heads
         WHERE l.ctid = heads.tid AND heads.seq IS NULL AND heads.held IS NULL
    ), changed AS (
        UPDATE lanes AS l SET head_seq = heads.seq, head_priority = heads.priority, head_status = heads.status
          FROM heads
         WHERE l.ctid = heads.tid
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

CREATE OR REPLACE FUNCTION retry(p_id text) RETURNS boolean
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
        v_done := NULL;  -- its unique key is taken by a pending job: refused
    END;
    IF v_done IS NULL THEN
        IF j.lane IS NOT NULL THEN
            PERFORM lane_refresh(j.queue, j.lane);  -- drops the row lane_lock made for nothing
        END IF;
        RETURN false;
    END IF;
    IF j.lane IS NULL OR lane_refresh(j.queue, j.lane) THEN
        PERFORM pg_notify(channel(), j.queue);
    END IF;
    RETURN true;
END
$$;
