-- laneway's SQLite schema, version 2: every table of one namespace.
--
-- "{ns}" stands for the namespace, validated as [a-z][a-z0-9_-]{0,39} before it is put
-- between the double quotes of an identifier; nothing else is ever formatted into SQL.
-- A fresh file gets this script in one transaction; an older file is brought here by
-- the scripts in migrations/ (see _schema.py). Times are epoch seconds (REAL) from the
-- local wall clock, which every process on the machine shares.
--
-- Tables
--   "{ns}_schema"    one row per schema version applied to this namespace; the file's
--                    version is max(version). Written by _schema.py only.
--   "{ns}_jobs"      every stored job, from enqueue until it is pruned or purged.
--                    Besides the JobRecord fields it keeps four "index handles", each
--                    non-NULL exactly while the job is in one structure, so partial
--                    indexes stay as small as that structure:
--                      lane_key  'l:' || lane, or 'j:' || id for a job without a lane
--                                (a lane of its own); never NULL.
--                      lane_pos  = seq while the job is a lane member: queued, retrying
--                                (a retrying head keeps its lane), or dead with
--                                on_dead = 'block' (a blocked lane). NULL otherwise.
--                      wake_at   = run_at while scheduled or retrying (the timer).
--                      token     the fencing token while running, else NULL.
--                    uniq is the job's unique key; uniq_live = uniq while the job is
--                    pending (scheduled, queued, running, retrying): the reservation.
--                    expires_at = finished_at + result_ttl_s once succeeded or
--                    cancelled (dead jobs are kept); sweep deletes rows past it.
--   "{ns}_lanes"     one row per lane (queue, lane_key) that has members or is held by
--                    a lease; an idle lane has no row. ready = 1 when no lease holds
--                    the lane and its head (lowest lane_pos) is queued; priority and
--                    head_seq are the head's, so the ready index orders lanes the way
--                    claims take them. held = the token of the lease holding it.
--   "{ns}_leases"    one row per live lease: token, worker, expires_at. A lease's jobs
--                    are the jobs whose token column holds its token.
--   "{ns}_counters"  'seq' (the last sequence number given to a job joining a lane) and
--                    'token' (the last fencing token); both only grow.
--   "{ns}_ticks"     periodic schedule name -> the last tick enqueued (claim_tick).
--   "{ns}_meta"      small key/value store (put_meta/get_meta).
--
-- Indexes (each named for the question it answers)
--   "{ns}_lanes_ready"   which ready lane of a queue is next: (queue, priority DESC,
--                        head_seq) over ready lanes only. A claim reads the first rows;
--                        its cost does not depend on how many lanes exist, how deep
--                        they are, or how many jobs wait, retry or block elsewhere.
--   "{ns}_jobs_lane"     a lane's members in order: (queue, lane_key, lane_pos) over
--                        members only. Finds a lane's head and the next batch.
--   "{ns}_jobs_wake"     which scheduled or retrying job is due next: (wake_at).
--   "{ns}_jobs_wake_q"   the same within one queue: (queue, wake_at). A send with a lane
--                        promotes its own queues' due jobs, all of them, before it stores.
--   "{ns}_jobs_token"    a lease's running jobs: (token, queue, lane_key).
--   "{ns}_jobs_unique"   UNIQUE (uniq_live): one pending job per unique key.
--   "{ns}_jobs_expires"  finished jobs to prune: (expires_at).
--   "{ns}_leases_expiry" leases that ran out: (expires_at).
--   "{ns}_leases_worker" a dead worker's leases: (worker).

CREATE TABLE "{ns}_schema" (
    version     INTEGER PRIMARY KEY,
    applied_at  REAL NOT NULL
);

CREATE TABLE "{ns}_jobs" (
    rid           INTEGER PRIMARY KEY,          -- insertion order (list_jobs: newest first)
    id            TEXT NOT NULL UNIQUE,
    task          TEXT NOT NULL,
    queue         TEXT NOT NULL,
    lane          TEXT,
    lane_key      TEXT NOT NULL,
    priority      INTEGER NOT NULL,
    payload       BLOB NOT NULL,
    status        TEXT NOT NULL,                -- a laneway.Status value
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL,
    timeout_s     REAL,
    uniq          TEXT,
    uniq_live     TEXT,
    result_ttl_s  REAL NOT NULL,
    on_dead       TEXT NOT NULL,                -- 'skip' or 'block'
    enqueued_at   REAL NOT NULL,
    run_at        REAL NOT NULL,
    seq           INTEGER,
    lane_pos      INTEGER,
    wake_at       REAL,
    token         INTEGER,
    worker        TEXT,
    started_at    REAL,
    finished_at   REAL,
    result        BLOB,
    error         TEXT,
    traceback     TEXT,
    expires_at    REAL
);

CREATE INDEX "{ns}_jobs_lane" ON "{ns}_jobs" (queue, lane_key, lane_pos) WHERE lane_pos IS NOT NULL;
CREATE INDEX "{ns}_jobs_wake" ON "{ns}_jobs" (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX "{ns}_jobs_wake_q" ON "{ns}_jobs" (queue, wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX "{ns}_jobs_token" ON "{ns}_jobs" (token, queue, lane_key) WHERE token IS NOT NULL;
CREATE UNIQUE INDEX "{ns}_jobs_unique" ON "{ns}_jobs" (uniq_live) WHERE uniq_live IS NOT NULL;
CREATE INDEX "{ns}_jobs_expires" ON "{ns}_jobs" (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE "{ns}_lanes" (
    queue     TEXT NOT NULL,
    lane_key  TEXT NOT NULL,
    ready     INTEGER NOT NULL,
    priority  INTEGER NOT NULL,
    head_seq  INTEGER NOT NULL,
    held      INTEGER,
    PRIMARY KEY (queue, lane_key)
) WITHOUT ROWID;

CREATE INDEX "{ns}_lanes_ready" ON "{ns}_lanes" (queue, priority DESC, head_seq) WHERE ready = 1;

CREATE TABLE "{ns}_leases" (
    token       INTEGER PRIMARY KEY,
    worker      TEXT NOT NULL,
    expires_at  REAL NOT NULL
);

CREATE INDEX "{ns}_leases_expiry" ON "{ns}_leases" (expires_at);
CREATE INDEX "{ns}_leases_worker" ON "{ns}_leases" (worker);

CREATE TABLE "{ns}_counters" (
    name   TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO "{ns}_counters" (name, value) VALUES ('seq', 0), ('token', 0);

CREATE TABLE "{ns}_ticks" (
    name  TEXT PRIMARY KEY,
    tick  REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE "{ns}_meta" (
    key    TEXT PRIMARY KEY,
    value  BLOB NOT NULL
) WITHOUT ROWID;
