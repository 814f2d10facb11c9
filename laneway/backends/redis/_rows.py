"""Turning ``NewJob``/``Outcome`` into script arguments and job hashes back into records.

Job hash fields are listed in ``lib.lua``; scripts return them in the order of
``FIELDS`` there (an ``HMGET``), which ``record`` reads by position.
"""

from __future__ import annotations

from collections.abc import Sequence

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

Row = Sequence[bytes | int | None]
"""A job id and its fields as a script or HMGET returns them (numbers set in the same
script come back as integers)."""

FIELD_NAMES = ("k", "q", "l", "p", "P", "s", "a", "m", "o", "u", "x", "B", "e", "r", "n", "t", "w", "g",
               "f", "R", "E", "T")  # fmt: skip
"""Job hash fields in the order ``record`` reads them (``FIELDS`` in ``lib.lua``)."""


def _text(value: bytes | int | None) -> str | None:
    return None if value is None else value.decode() if isinstance(value, bytes) else str(value)


def _time(value: bytes | int | None) -> float | None:
    return None if value is None else int(value) / US


def _str(value: bytes | int | None) -> str:
    text = _text(value)
    assert text is not None, "a job hash is missing a required field"
    return text


def _bytes(value: bytes | int | None) -> bytes | None:
    return value if value is None or isinstance(value, bytes) else str(value).encode()


def record(row: Row) -> JobRecord:
    """A ``JobRecord`` from the job id followed by an ``HMGET`` of FIELDS (``lib.lua``)."""
    (job_id, task, queue, lane, prio, payload, status, attempts, max_attempts, timeout, unique, ttl,
     block, enqueued, run_at, seq, lease, worker, started, finished, result, error, tb) = row  # fmt: skip
    state = STATUS_OF[status if isinstance(status, bytes) else _str(status).encode()]
    return JobRecord(
        id=_str(job_id),
        task=_str(task),
        queue=_str(queue),
        lane=_text(lane),
        priority=int(prio or 0),
        payload=_bytes(payload) or b"",
        status=state,
        attempts=int(attempts or 0),
        max_attempts=int(max_attempts or 0),
        timeout_s=None if timeout is None else float(timeout),
        unique=_text(unique),
        result_ttl_s=int(ttl or 0) / US,
        on_dead=OnDead.BLOCK if block else OnDead.SKIP,
        enqueued_at=int(enqueued or 0) / US,
        run_at=int(run_at or 0) / US,
        seq=None if seq is None else int(seq),
        token=int(lease) if lease is not None and state is Status.RUNNING else None,
        worker=_text(worker),
        started_at=_time(started),
        finished_at=_time(finished),
        result=_bytes(result),
        error=_text(error),
        traceback=_text(tb),
    )


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
