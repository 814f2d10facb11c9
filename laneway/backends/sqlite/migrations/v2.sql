-- Schema version 1 -> 2: finished jobs get their own expiry column and a partial index,
-- so sweep prunes expired results with one index range instead of scanning every
-- finished job. Jobs that finished under version 1 get the expiry they would have had.
ALTER TABLE "{ns}_jobs" ADD COLUMN expires_at REAL;

UPDATE "{ns}_jobs" SET expires_at = finished_at + result_ttl_s
 WHERE status IN ('succeeded', 'cancelled') AND finished_at IS NOT NULL;

CREATE INDEX "{ns}_jobs_expires" ON "{ns}_jobs" (expires_at) WHERE expires_at IS NOT NULL;
