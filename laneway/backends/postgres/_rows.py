"""Rows in and out: the select list a job record is read with, and the arrays jobs and
outcomes are sent as (one array per column, so a whole batch is one call)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..._records import JobRecord, NewJob, OnDead, Outcome, Status


def job_columns(alias: str) -> str:
    """Select list of a ``JobRecord`` over a ``jobs`` row named ``alias``: a stored job that
    is waiting to join its lane reads as scheduled until due and queued after."""
    a = alias
    return (
        f"{a}.id, {a}.task, {a}.queue, {a}.lane, {a}.priority, {a}.payload, "
        f"CASE WHEN {a}.status <> 'waiting' THEN {a}.status "
        f"WHEN {a}.run_at > clock_timestamp() THEN 'scheduled' ELSE 'queued' END, "
        f"{a}.attempts, {a}.max_attempts, {a}.timeout_s, {a}.uniq, {a}.result_ttl_s, {a}.on_dead, "
        f"extract(epoch FROM {a}.enqueued_at)::float8, extract(epoch FROM {a}.run_at)::float8, "
        f"{a}.seq, {a}.token, {a}.worker, extract(epoch FROM {a}.started_at)::float8, "
        f"extract(epoch FROM {a}.finished_at)::float8, {a}.result, {a}.error, {a}.traceback"
    )


JOB_COLUMNS = job_columns("j")
"""``job_columns`` over ``jobs AS j``."""


def to_record(row: Sequence[Any]) -> JobRecord:
    """A ``JobRecord`` from a row selected with ``JOB_COLUMNS``."""
    return JobRecord(
        id=row[0], task=row[1], queue=row[2], lane=row[3], priority=row[4], payload=bytes(row[5]),
        status=Status(row[6]), attempts=row[7], max_attempts=row[8], timeout_s=row[9], unique=row[10],
        result_ttl_s=row[11], on_dead=OnDead(row[12]), enqueued_at=row[13], run_at=row[14], seq=row[15],
        token=row[16], worker=row[17], started_at=row[18], finished_at=row[19],
        result=None if row[20] is None else bytes(row[20]), error=row[21], traceback=row[22],
    )  # fmt: skip


ENQUEUE_ARGS = (
    "%s::text[], %s::text[], %s::text[], %s::text[], %s::int[], %s::bytea[], %s::int[], "
    "%s::float8[], %s::text[], %s::float8[], %s::text[], %s::float8[], %s::float8[]"
)
"""Placeholders of the 13 column arrays ``enqueue_params`` returns."""


def enqueue_params(jobs: Sequence[NewJob]) -> list[list[Any]]:
    """The column arrays of ``jobs`` for the ``enqueue`` function, in its argument order."""
    return [
        [j.id for j in jobs],
        [j.task for j in jobs],
        [j.queue for j in jobs],
        [j.lane for j in jobs],
        [j.priority for j in jobs],
        [j.payload for j in jobs],
        [j.max_attempts for j in jobs],
        [j.timeout_s for j in jobs],
        [j.unique for j in jobs],
        [j.result_ttl_s for j in jobs],
        [j.on_dead.value for j in jobs],
        [float(j.delay_s) for j in jobs],
        [j.run_at for j in jobs],
    ]


FINISH_ARGS = "%s::text[], %s::bigint[], %s::text[], %s::bytea[], %s::text[], %s::text[], %s::float8[]"
"""Placeholders of the 7 column arrays ``finish_params`` returns."""


def finish_params(outcomes: Sequence[Outcome]) -> list[list[Any]]:
    """The column arrays of ``outcomes`` for the ``finish`` function."""
    return [
        [o.job_id for o in outcomes],
        [o.token for o in outcomes],
        [o.verdict.value for o in outcomes],
        [o.result for o in outcomes],
        [o.error for o in outcomes],
        [o.traceback for o in outcomes],
        [float(o.delay_s) for o in outcomes],
    ]


def claim_params(
    queues: Sequence[str], worker: str, limit: int, batch: int, max_lanes: int | None, lease_s: float
) -> list[Any]:
    """The arguments of the ``claim`` function (a queue named twice is walked once: the
    function's second pass would pick its still-queued solo jobs again and raise)."""
    return [list(dict.fromkeys(queues)), worker, limit, max(batch, 1), max_lanes, lease_s]
