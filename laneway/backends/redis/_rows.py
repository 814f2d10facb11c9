"""Turning ``NewJob``/``Outcome`` into script arguments and job hashes back into records.

Job hash fields are listed in ``lib.lua``; scripts return them in the order of
``FIELDS`` there (an ``HMGET``), which ``record`` reads by position.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..._records import JobRecord, NewJob, OnDead, Outcome, Status, Verdict

US = 1_000_000
BAND = 2**45
"""Ready scores are ``(255 - priority) * BAND + seq`` (``lib.lua``)."""

STATUS_OF: dict[bytes, Status] = {
    b"S": Status.SCHEDULED,
    b"Q": Status.QUEUED,
    b"R": Status.RUNNING,
    b"D": Status.SUCCEEDED,
    b"Y": Status.RETRYING,
    b"X": Status.DEAD,
    b"C": Status.CANCELLED,
}
CODE_OF = {status: code.decode() for code, status in STATUS_OF.items()}
VERDICT_CODE = {Verdict.SUCCEEDED: "D", Verdict.RETRY: "Y", Verdict.DEAD: "X", Verdict.RELEASE: "L"}

Row = Sequence[Any]
"""A job id and its fields as a script or HMGET returns them (bytes or None; numbers set
by the same script come back as integers)."""

FIELD_NAMES = ("k", "q", "l", "p", "P", "s", "a", "m", "o", "u", "x", "B", "e", "r", "n", "t", "w", "g",
               "f", "R", "E", "T")  # fmt: skip
"""Job hash fields in the order ``record`` reads them (``FIELDS`` in ``lib.lua``)."""


_RUNNING, _BLOCK, _SKIP = Status.RUNNING, OnDead.BLOCK, OnDead.SKIP


def _opt_text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def record(row: Row) -> JobRecord:
    """A ``JobRecord`` from the job id followed by an ``HMGET`` of FIELDS (``lib.lua``).

    Text fields are always bytes (or None); numbers are bytes from a read, or integers
    when the same script just set them: ``int()`` takes both. This runs for every claimed
    job, so it stays flat.
    """
    (job_id, task, queue, lane, prio, payload, status, attempts, max_attempts, timeout, unique, ttl,
     block, enqueued, run_at, seq, lease, worker, started, finished, result, error, tb) = row  # fmt: skip
    state = STATUS_OF[status]
    return JobRecord(
        job_id.decode(), task.decode(), queue.decode(), None if lane is None else lane.decode(),
        int(prio), payload or b"", state, int(attempts), int(max_attempts),
        None if timeout is None else float(timeout), None if unique is None else unique.decode(),
        int(ttl) / US, _BLOCK if block else _SKIP, int(enqueued) / US, int(run_at) / US,
        None if seq is None else int(seq),
        int(lease) if lease is not None and state is _RUNNING else None,
        _opt_text(worker), None if started is None else int(started) / US,
        None if finished is None else int(finished) / US, result, _opt_text(error), _opt_text(tb),
    )  # fmt: skip


def job_args(job: NewJob) -> list[str | bytes | int]:
    """The 13 per-job arguments of ``enqueue.lua``."""
    return [
        job.id,
        job.task,
        job.queue,
        job.lane or "",
        job.priority,
        job.payload,
        job.max_attempts,
        "" if job.timeout_s is None else repr(float(job.timeout_s)),
        job.unique or "",
        round(job.result_ttl_s * US),
        "1" if job.on_dead is OnDead.BLOCK else "",
        round(job.delay_s * US),
        "" if job.run_at is None else round(job.run_at * US),
    ]


def outcome_args(out: Outcome) -> list[str | bytes | int]:
    """The 8 per-outcome arguments of ``finish.lua``."""
    flags = "".join("0" if v is None else "1" for v in (out.result, out.error, out.traceback))
    return [
        out.job_id,
        out.token,
        VERDICT_CODE[out.verdict],
        flags,
        out.result or b"",
        out.error or "",
        out.traceback or "",
        max(0, round(out.delay_s * US)),
    ]
