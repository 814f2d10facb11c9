-- laneway PostgreSQL schema, migration 0001: tables, sequences and indexes.
--
-- Applied by laneway itself (PostgresBackend.migrate(), or on first use) inside one
-- transaction, under an advisory lock, with search_path set to the namespace's schema:
-- every name below lives in that schema. Applied migrations are recorded in
-- laneway_migrations (created by the migrator, not by this file).
--
-- Tables
--   jobs      every stored job. status is one of
--               waiting   stored but not yet in its lane: delayed (run_at in the future), or
--                         a laned job its enqueue did not join (stored in a caller's
--                         transaction, or while another promoter ran), which a claim or sweep
--                         joins to its lane (reported as scheduled or queued by run_at)
--               queued | running | succeeded | retrying | dead | cancelled
--             nid numbers jobs in insertion order (listings, ties between equal run_at);
--             seq is the job's position in its lane (taken at enqueue for immediate jobs,
--             when due for delayed ones); token is the fencing token of the lease it runs
--             under; expires_at is when a succeeded/cancelled job may be pruned.
--   lanes     one row per (queue, lane) that has pending work or is held: the lane's head
--             (lowest seq among its queued, retrying and blocking-dead jobs) and the token
--             holding it. Jobs without a lane have no row: each is a lane of its own.
--   leases    one row per live claim: token, worker, expiry. Deleted when all its jobs are
--             finished, or by sweep when it expired.
--   meta      small key/value store (put_meta / get_meta).
--   ticks     last enqueued tick of each periodic schedule (claim_tick).
--
-- Sequences (CACHE 1 so values are increasing across connections)
--   job_seq      lane positions;   lease_token   fencing tokens.
--
-- Indexes (each one serves one access path; a claim never scans a lane). Every index on
-- jobs but the primary key is partial, over the rows of one state: a status changes at
-- every step of a job, so a full index on it would take an entry at every step and, with
-- statistics that lag behind a queue's churn, tempt the planner into scanning every
-- queued or running job where one partial index gives the answer.
--   jobs_lane_pending  (queue, lane, seq) over a lane's waiting work: its head is the first entry
--   jobs_solo_ready    (queue, priority DESC, seq) over ready jobs without a lane
--   jobs_due           (queue, run_at) over waiting and retrying jobs: promotion and the wait timeout
--   jobs_running       (token) over running jobs: finish, release and sweep
--   jobs_unique        unique key of pending jobs
--   jobs_expiry        (expires_at) over prunable jobs
--   jobs_final         (status, queue) over succeeded, dead and cancelled jobs: stats, purge
--   lanes_ready        (queue, head_priority DESC, head_seq) over free lanes whose head is queued:
--                      the claim reads this index from its start, so its cost does not depend
--                      on the number of lanes, their depth, or blocked/delayed work
--   lanes_by_head      (head_seq): lanes() listing, oldest head first. It has no queue column
--                      on purpose: lookups of lanes by (queue, lane) must take the primary key

CREATE SEQUENCE job_seq AS bigint CACHE 1;
CREATE SEQUENCE lease_token AS bigint CACHE 1;

CREATE TABLE jobs (
    id            text COLLATE "C" PRIMARY KEY,
    nid           bigint GENERATED ALWAYS AS IDENTITY (CACHE 1),
    task          text NOT NULL,
    queue         text COLLATE "C" NOT NULL,
    lane          text COLLATE "C",
    priority      smallint NOT NULL,
    payload       bytea NOT NULL,
    status        text NOT NULL CHECK (status IN
                      ('waiting', 'queued', 'running', 'succeeded', 'retrying', 'dead', 'cancelled')),
    attempts      integer NOT NULL DEFAULT 0,
    max_attempts  integer NOT NULL,
    timeout_s     double precision,
    uniq          text COLLATE "C",
    result_ttl_s  double precision NOT NULL,
    on_dead       text NOT NULL CHECK (on_dead IN ('skip', 'block')),
    enqueued_at   timestamptz NOT NULL,
    run_at        timestamptz NOT NULL,
    seq           bigint,
    token         bigint,
    worker        text,
    started_at    timestamptz,
    finished_at   timestamptz,
    expires_at    timestamptz,
    result        bytea,
    error         text,
    traceback     text
);

CREATE INDEX jobs_lane_pending ON jobs (queue, lane, seq)
    WHERE lane IS NOT NULL
      AND (status IN ('queued', 'retrying') OR (status = 'dead' AND on_dead = 'block'));
CREATE INDEX jobs_solo_ready ON jobs (queue, priority DESC, seq)
    WHERE lane IS NULL AND status = 'queued';
CREATE INDEX jobs_due ON jobs (queue, run_at) WHERE status IN ('waiting', 'retrying');
CREATE INDEX jobs_running ON jobs (token) WHERE status = 'running';
CREATE UNIQUE INDEX jobs_unique ON jobs (uniq)
    WHERE uniq IS NOT NULL AND status IN ('waiting', 'queued', 'running', 'retrying');
CREATE INDEX jobs_expiry ON jobs (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX jobs_final ON jobs (status, queue) WHERE status IN ('succeeded', 'dead', 'cancelled');

CREATE TABLE lanes (
    queue          text COLLATE "C" NOT NULL,
    lane           text COLLATE "C" NOT NULL,
    head_seq       bigint,
    head_priority  smallint,
    head_status    text,
    held           bigint,
    PRIMARY KEY (queue, lane)
) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 200);

CREATE INDEX lanes_ready ON lanes (queue, head_priority DESC, head_seq)
    WHERE held IS NULL AND head_status = 'queued';
CREATE INDEX lanes_by_head ON lanes (head_seq);

CREATE TABLE leases (
    token       bigint PRIMARY KEY,
    worker      text NOT NULL,
    expires_at  timestamptz NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 200);

CREATE INDEX leases_expiry ON leases (expires_at);

CREATE TABLE meta (
    key    text COLLATE "C" PRIMARY KEY,
    value  bytea NOT NULL
);

CREATE TABLE ticks (
    name  text COLLATE "C" PRIMARY KEY,
    tick  double precision NOT NULL
);
