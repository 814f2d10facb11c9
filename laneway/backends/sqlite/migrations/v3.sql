-- Schema version 2 -> 3: due jobs per queue, so that a send with a lane promotes every due
-- job of its own queues (and only those) before it stores: a backlog of due jobs is never
-- overtaken by a later send of their lane, and another queue's backlog is not its work.
CREATE INDEX "{ns}_jobs_wake_q" ON "{ns}_jobs" (queue, wake_at) WHERE wake_at IS NOT NULL;
