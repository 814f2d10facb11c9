"""The records that cross the backend contract: what is stored, claimed and reported."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum


class Status(str, Enum):
    """Where a job is in its life."""

    SCHEDULED = "scheduled"
    """Delayed: invisible until ``run_at``; joins its lane when due."""
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    """Failed an attempt and waits for its backoff; its lane waits too."""
    DEAD = "dead"
    CANCELLED = "cancelled"

    @property
    def pending(self) -> bool:
        """True while the job may still run (scheduled, queued, running, retrying)."""
        return self in _PENDING

    @property
    def final(self) -> bool:
        """True once the job will not run again by itself."""
        return self not in _PENDING


_PENDING = frozenset({Status.SCHEDULED, Status.QUEUED, Status.RUNNING, Status.RETRYING})


class Priority(IntEnum):
    """Named priority levels. Any int from 0 to 255 works; higher is claimed first."""

    BULK = 0
    LOW = 1
    NORMAL = 2
    HIGH = 3


class OnDead(str, Enum):
    """What a lane does when one of its jobs goes dead."""

    SKIP = "skip"
    """The lane moves on to its next job (default)."""
    BLOCK = "block"
    """The lane waits until an operator retries, cancels or purges the dead job."""


class Verdict(str, Enum):
    """How a worker finished a claimed job."""

    SUCCEEDED = "succeeded"
    RETRY = "retry"
    DEAD = "dead"
    RELEASE = "release"
    """Give the job back without spending an attempt (graceful shutdown)."""


@dataclass(frozen=True, slots=True)
class NewJob:
    """One job to store, built and validated by the app layer.

    ``payload`` is opaque to backends. ``run_at`` is an absolute epoch time; when
    it is None the job is due ``delay_s`` seconds after the backend's clock says now.
    """

    id: str
    task: str
    queue: str
    lane: str | None
    priority: int
    payload: bytes
    max_attempts: int
    timeout_s: float | None
    unique: str | None
    result_ttl_s: float
    on_dead: OnDead
    delay_s: float = 0.0
    run_at: float | None = None

    @property
    def delayed(self) -> bool:
        """True when the job must wait before it joins its lane."""
        return self.run_at is not None or self.delay_s > 0


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """What ``enqueue`` stored: the job's id, or that of the unique job it matched."""

    id: str
    created: bool


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~7 us per record; never mutated
class JobRecord:
    """A stored job as a backend reports it. Times are the backend's epoch seconds."""

    id: str
    task: str
    queue: str
    lane: str | None
    priority: int
    payload: bytes
    status: Status
    attempts: int
    max_attempts: int
    timeout_s: float | None
    unique: str | None
    result_ttl_s: float
    on_dead: OnDead
    enqueued_at: float
    run_at: float
    seq: int | None = None
    """Position in its lane (set once the job has joined it)."""
    token: int | None = None
    """Fencing token of the lease the job is running under."""
    worker: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    result: bytes | None = None
    error: str | None = None
    traceback: str | None = None


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~7 us per record; never mutated
class Outcome:
    """A worker's report on one claimed job, checked against its fencing token."""

    job_id: str
    token: int
    verdict: Verdict
    result: bytes | None = None
    error: str | None = None
    traceback: str | None = None
    delay_s: float = 0.0
    """For ``RETRY``: seconds from the backend's now until the job is due again."""


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Counts for one queue."""

    queue: str
    scheduled: int
    queued: int
    running: int
    retrying: int
    succeeded: int
    dead: int
    cancelled: int
    lanes: int
    """Lanes with pending work."""
    oldest_queued_age_s: float | None
    """Age of the oldest job that is ready and waiting, if any."""


@dataclass(frozen=True, slots=True)
class LaneInfo:
    """One lane with pending work, as operators see it."""

    queue: str
    lane: str
    depth: int
    """Jobs waiting in the lane (queued, retrying, running, or dead and blocking)."""
    head_id: str
    head_status: Status
    head_attempts: int
    head_age_s: float
    held: bool
    """A worker holds the lane right now."""
    blocked: bool
    """The head is dead with ``on_dead=block`` and waits for an operator."""
