"""Every statement the backend sends, composed once per namespace.

The schema name is the only identifier in them; it is validated and quoted with
``psycopg.sql.Identifier``. Everything else is a bound parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from ._rows import ENQUEUE_ARGS, FINISH_ARGS, JOB_COLUMNS, job_columns

_PENDING_IN_LANE = "(status IN ('queued', 'retrying') OR (status = 'dead' AND on_dead = 'block'))"

_STATS = """
WITH clock AS (SELECT clock_timestamp() AS now),
pending AS (
    SELECT queue,
           CASE WHEN status = 'retrying' THEN 'retrying'
                WHEN run_at > (SELECT now FROM clock) THEN 'scheduled' ELSE 'queued' END AS st,
           CASE WHEN status = 'waiting' AND run_at <= (SELECT now FROM clock) THEN run_at END AS ready_at
      FROM {s}.jobs WHERE status IN ('waiting', 'retrying')
    UNION ALL
    SELECT queue, 'queued', run_at FROM {s}.jobs WHERE lane IS NULL AND status = 'queued'
    UNION ALL
    SELECT queue, 'queued', run_at FROM {s}.jobs WHERE lane IS NOT NULL AND status = 'queued'
    UNION ALL
    SELECT queue, 'running', NULL FROM {s}.jobs WHERE status = 'running'
),
counts AS (
    SELECT queue, st, count(*) AS n, min(ready_at) AS oldest FROM pending GROUP BY 1, 2
    UNION ALL
    SELECT queue, status, count(*), NULL FROM {s}.jobs
     WHERE status IN ('succeeded', 'dead', 'cancelled') GROUP BY 1, 2
)
SELECT c.queue,
       coalesce(sum(c.n) FILTER (WHERE c.st = 'scheduled'), 0)::bigint,
       coalesce(sum(c.n) FILTER (WHERE c.st = 'queued'), 0)::bigint,
       coalesce(sum(c.n) FILTER (WHERE c.st = 'running'), 0)::bigint,
       coalesce(sum(c.n) FILTER (WHERE c.st = 'retrying'), 0)::bigint,
       coalesce(sum(c.n) FILTER (WHERE c.st = 'succeeded'), 0)::bigint,
       coalesce(sum(c.n) FILTER (WHERE c.st = 'dead'), 0)::bigint,
       coalesce(sum(c.n) FILTER (WHERE c.st = 'cancelled'), 0)::bigint,
       extract(epoch FROM (SELECT now FROM clock) - min(c.oldest))::float8,
       (SELECT count(*) FROM {s}.lanes AS l WHERE l.queue = c.queue)
  FROM counts AS c
 GROUP BY c.queue
 ORDER BY c.queue
"""
"""Counts per queue, each read through the partial index of its state."""

_LANES = f"""
SELECT l.lane, l.held IS NOT NULL, h.id, h.status, h.attempts,
       extract(epoch FROM clock_timestamp() - h.enqueued_at)::float8, d.depth
  FROM (SELECT * FROM {{s}}.lanes WHERE queue = %(queue)s ORDER BY head_seq NULLS FIRST LIMIT %(limit)s) AS l
  CROSS JOIN LATERAL (
      SELECT * FROM (
          (SELECT id, status, attempts, enqueued_at, seq FROM {{s}}.jobs
            WHERE token = l.held AND status = 'running' AND queue = l.queue AND lane = l.lane
            ORDER BY seq LIMIT 1)
          UNION ALL
          (SELECT id, status, attempts, enqueued_at, seq FROM {{s}}.jobs
            WHERE queue = l.queue AND lane = l.lane AND lane IS NOT NULL AND {_PENDING_IN_LANE}
            ORDER BY seq LIMIT 1)
      ) AS x ORDER BY seq LIMIT 1
  ) AS h
  CROSS JOIN LATERAL (
      SELECT (SELECT count(*) FROM {{s}}.jobs
               WHERE token = l.held AND status = 'running' AND queue = l.queue AND lane = l.lane)
           + (SELECT count(*) FROM {{s}}.jobs
               WHERE queue = l.queue AND lane = l.lane AND lane IS NOT NULL AND {_PENDING_IN_LANE}) AS depth
  ) AS d
"""

_DUE_IN = """
SELECT extract(epoch FROM min(d.run_at) - clock_timestamp())::float8
  FROM unnest(%s::text[]) AS q(name)
 CROSS JOIN LATERAL (SELECT run_at FROM {s}.jobs
                      WHERE queue = q.name AND status IN ('waiting', 'retrying')
                      ORDER BY run_at LIMIT 1) AS d
"""

_PROMOTE_ALL = """
SELECT {s}.promote(ARRAY(SELECT DISTINCT queue FROM {s}.jobs WHERE status IN ('waiting', 'retrying')), %s)
"""


@dataclass(frozen=True, slots=True)
class Queries:
    """The statements of one namespace's schema."""

    enqueue: sql.Composed
    claim_tick: sql.Composed
    claim: sql.Composed
    extend: sql.Composed
    finish: sql.Composed
    finish_and_claim: sql.Composed
    sweep: sql.Composed
    prune: sql.Composed
    promote: sql.Composed
    promote_all: sql.Composed
    due_in: sql.Composed
    get_job: sql.Composed
    list_jobs: sql.Composed
    cancel: sql.Composed
    retry: sql.Composed
    purge: sql.Composed
    stats: sql.Composed
    lanes: sql.Composed
    put_meta: sql.Composed
    del_meta: sql.Composed
    get_meta: sql.Composed
    notify: sql.Composed

    @classmethod
    def for_schema(cls, schema: str) -> Queries:
        """Compose every statement for ``schema``."""
        s = sql.Identifier(schema)

        def q(text: str) -> sql.Composed:
            return sql.SQL(text).format(s=s)

        return cls(
            enqueue=q(f"SELECT job_id, created FROM {{s}}.enqueue({ENQUEUE_ARGS}, %s)"),
            claim_tick=q(f"SELECT {{s}}.claim_tick(%s, %s, {ENQUEUE_ARGS})"),
            claim=q(f"SELECT {JOB_COLUMNS} FROM {{s}}.claim(%s::text[], %s, %s, %s, %s, %s) AS j"),
            extend=q("SELECT {s}.extend(%s::bigint[], %s)"),
            finish=q(f"SELECT {{s}}.finish({FINISH_ARGS})"),
            finish_and_claim=q(
                f"SELECT f.accepted, {job_columns('(f.job)')} "
                f"FROM {{s}}.finish_and_claim({FINISH_ARGS}, %s::text[], %s, %s, %s, %s) AS f"
            ),
            sweep=q("SELECT {s}.sweep(%s, %s)"),
            prune=q("SELECT {s}.prune(%s)"),
            promote=q("SELECT {s}.promote(%s::text[], %s)"),
            promote_all=q(_PROMOTE_ALL),
            due_in=q(_DUE_IN),
            get_job=q(f"SELECT {JOB_COLUMNS} FROM {{s}}.jobs AS j WHERE j.id = %s"),
            list_jobs=q(f"SELECT {JOB_COLUMNS} FROM {{s}}.jobs AS j"),
            cancel=q("SELECT {s}.cancel(%s)"),
            retry=q("SELECT {s}.retry(%s)"),
            purge=q("SELECT {s}.purge(%s, %s, %s)"),
            stats=q(_STATS),
            lanes=q(_LANES),
            put_meta=q(
                "INSERT INTO {s}.meta (key, value) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
            ),
            del_meta=q("DELETE FROM {s}.meta WHERE key = %s"),
            get_meta=q("SELECT key, value FROM {s}.meta WHERE starts_with(key, %s)"),
            notify=q("SELECT pg_notify(%s, %s)"),
        )
