-- laneway PostgreSQL schema, migration 0006: joining due jobs to their lanes stays one index
-- probe per lane however many lanes the queue has.
--
-- promote_queue() (every enqueue of a laned job runs it, and claims for due delayed jobs)
-- rewrote its lanes' heads with UPDATE lanes ... FROM heads WHERE queue = p_queue AND
-- lane = heads.lane. A plan made while the queue had few lanes (a pooled connection keeps
-- it) joined that by hashing every lane of the queue: one enqueue of a laned job took
-- 1.2 ms with 1,000 lanes and 6.7 ms with 31,000, and the benchmarks' enqueue with a lane
-- per job fell from 916 to 406 jobs/s over its first 10,000 jobs. The lanes are locked
-- (FOR UPDATE) before their heads are computed, so each keeps its ctid until the
-- transaction ends; the rewrite and the delete of empty lanes now address them by it, as
-- take() and apply_outcomes() do since migration 0004. The body is otherwise 0002's.

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
