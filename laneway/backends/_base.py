"""The backend contract: the one interface every storage engine implements.

A backend only stores work and moves it between states atomically. Everything else
(validation, encoding, size limits, ids, retry policy, middleware, hooks) lives above
it, once, in the app and worker layers.

The model every backend keeps:

- A job is *scheduled* (delayed) until due, then joins its **lane**: it is given the
  next sequence number ``seq`` and becomes *queued*. A job without a lane is a lane
  of its own. A lane's *head* is its pending job with the lowest ``seq``.
- A lane is **ready** when no lease holds it and its head is queued. Claims take ready
  lanes by (priority of the head, highest first; then ``seq``, oldest first), queue by
  queue in the order given. Finding the next ready lane must not cost more with more
  lanes, deeper lanes, or more delayed, retrying or blocked jobs.
- A claim takes a **lease** with a fresh, strictly increasing fencing ``token`` over
  every job it returns and holds their lanes until each of those jobs is finished.
  ``attempts`` is counted when the lease is taken.
- A retrying head stays at the head of its lane (its lane waits) until due. A dead
  head with ``on_dead=block`` keeps its lane blocked until an operator acts.
- Every deadline uses the backend's clock (``now()``), never a worker's.

Every method is safe to call from many threads and processes at once.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from .._checks import count
from .._errors import ConfigError
from .._records import (
    EnqueueResult,
    JobRecord,
    LaneInfo,
    NewJob,
    Outcome,
    QueueStats,
    Status,
)


def page_limit(limit: Any) -> int:
    """The checked ``limit`` of ``lanes`` (see ``page_args``)."""
    return count(limit, "limit", least=0)


def page_args(limit: Any, offset: Any = 0, status: Any = None) -> tuple[int, int, Status | None]:
    """The checked paging arguments of ``list_jobs`` and ``lanes``: ``ConfigError`` for a
    limit or offset that is not an int from 0 (each backend sliced or clamped such values
    its own way); a status may be given by its value (``"queued"``)."""
    if status is not None and not isinstance(status, Status):
        try:
            status = Status(status)
        except ValueError:
            raise ConfigError(
                f"unknown status {status!r}; one of: {', '.join(s.value for s in Status)}"
            ) from None
    return page_limit(limit), count(offset, "offset", least=0), status


class Backend(ABC):
    """Storage for laneway's queues. See the module docstring for the model."""

    # --- enqueue -----------------------------------------------------------------

    @abstractmethod
    def enqueue(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[EnqueueResult]:
        """Store ``jobs`` in one round trip, in order.

        Atomic for the whole call: all jobs are stored or none. Jobs to the same lane
        take ``seq`` in list order. A job whose ``unique`` key belongs to a pending job
        (scheduled, queued, running or retrying) is not stored; its result carries
        the existing job's id and ``created=False``. Two unique jobs in one call with
        the same key: the second matches the first. A job whose ``id`` is already stored
        (in any state) is not stored again either: ``created=False`` with that id, so an
        extension that derives ids deterministically can enqueue idempotently.

        Args:
            jobs: validated jobs with ids already assigned.
            connection: on SQL backends, a caller's open DB-API connection; the jobs are
                written inside its transaction and become visible only if it commits.
                Other backends raise ``ConfigError`` when it is given.
        """

    async def enqueue_async(self, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        """``enqueue`` for asyncio callers; backends with native async clients override it."""
        return await asyncio.to_thread(self.enqueue, jobs)

    @abstractmethod
    def claim_tick(self, name: str, tick: float, job: NewJob) -> bool:
        """Enqueue ``job`` for periodic schedule ``name``'s ``tick``, at most once.

        Atomic: records ``tick`` as the schedule's last tick and stores the job only if
        ``tick`` is later than the recorded one. Returns whether this call enqueued it.
        """

    # --- claim and lease ---------------------------------------------------------

    @abstractmethod
    def claim(
        self,
        queues: Sequence[str],
        *,
        worker: str,
        limit: int,
        batch: int = 1,
        max_lanes: int | None = None,
        lease_s: float,
    ) -> list[JobRecord]:
        """Lease up to ``limit`` jobs from ready lanes of ``queues``, in one round trip.

        Atomic: first promotes due scheduled jobs into their lanes and due retrying
        heads back to queued, then takes ready lanes in priority order (queues in the
        order given; within a queue by head priority, then age), up to ``batch``
        consecutive queued jobs per lane and at most ``max_lanes`` lanes. All returned
        jobs share one new fencing token, are *running*, have ``attempts`` incremented
        and are held until ``lease_s`` from now unless extended. Jobs of one lane are
        returned together in ``seq`` order. Returns an empty list when nothing is ready.
        """

    def finish_and_claim(
        self,
        outcomes: Sequence[Outcome],
        queues: Sequence[str],
        *,
        worker: str,
        limit: int,
        batch: int = 1,
        lease_s: float,
    ) -> tuple[list[bool], list[JobRecord]]:
        """``finish(outcomes)`` then ``claim(queues, ...)``, in one round trip where the
        backend can (the default makes two calls). The finish is applied first, so a worker
        reusing the slots it just freed never holds more than its slots. A failed claim
        after a successful finish returns no jobs rather than raising."""
        accepted = self.finish(outcomes) if outcomes else []
        if limit <= 0:
            return accepted, []
        try:
            return accepted, self.claim(queues, worker=worker, limit=limit, batch=batch, lease_s=lease_s)
        except Exception:  # noqa: BLE001 - the outcomes are applied; the next claim will retry
            return accepted, []

    @abstractmethod
    def extend(self, tokens: Sequence[int], lease_s: float) -> list[bool]:
        """Push the expiry of each live lease in ``tokens`` to ``lease_s`` from now.

        One round trip. Returns, per token, False when the lease is gone (expired,
        swept or finished); an expired lease is never revived.
        """

    @abstractmethod
    def finish(self, outcomes: Sequence[Outcome], *, connection: Any = None) -> list[bool]:
        """Apply workers' outcomes in one round trip; returns, per outcome, if accepted.

        With ``connection`` (SQL backends; one from ``transaction()``), the outcomes are
        written inside that open transaction and take effect only if it commits: this is
        how a ``transactional=True`` task's own writes and its completion commit together.

        Each outcome is atomic on its own and accepted only if its job is running under
        that token and the lease has not expired (fencing); a refused outcome changes
        nothing. Verdicts:

        - ``SUCCEEDED``: stores ``result``, keeps the job ``result_ttl_s``.
        - ``RETRY``: job goes *retrying*, due ``delay_s`` from now, stays its lane's head.
        - ``DEAD``: keeps error and traceback; with ``on_dead=block`` the lane stays
          blocked behind it, otherwise the lane moves on.
        - ``RELEASE``: back to the head of its lane as queued, the attempt given back.

        A lane is released, and becomes ready again if it has work, once every job its
        lease took has been finished.
        """

    def reserve(self, slots: int) -> None:
        """Make room for a worker with ``slots`` slots that is about to run here: a
        backend with a connection pool grows it so that transactional jobs, each holding
        a connection while it runs, never starve the worker's own calls. Default: nothing."""
        return None

    def transaction(self) -> AbstractContextManager[Any]:
        """A context manager yielding a DB-API connection inside an open transaction,
        committed on normal exit and rolled back on an exception (SQL backends only)."""
        raise ConfigError(f"{type(self).__name__} has no transactions (use an SQL backend)")

    @abstractmethod
    def sweep(self, *, worker: str | None = None) -> int:
        """Recover work from leases that ran out, and prune expired finished jobs.

        Atomic per lease: its running jobs go back to the head of their lanes as queued
        (the attempt stays counted), or dead when ``attempts >= max_attempts``, and its
        lanes are released. With ``worker`` given, that worker's leases are recovered at
        once whether expired or not (its supervisor saw it die). Returns the number of
        jobs recovered. Idempotent.
        """

    @abstractmethod
    def wait(self, queues: Sequence[str], timeout_s: float) -> None:
        """Block until work on ``queues`` may have become ready, or ``timeout_s`` passed.

        May return early or spuriously; callers claim again after it returns. Backends
        whose wake-up signal cannot see delayed jobs coming due return at the latest
        when the earliest such job is due.
        """

    def wait_and_claim(
        self,
        queues: Sequence[str],
        timeout_s: float,
        *,
        worker: str,
        limit: int,
        batch: int = 1,
        lease_s: float,
    ) -> list[JobRecord]:
        """``wait(queues, timeout_s)`` then ``claim(queues, ...)``: what an idle worker does.

        Backends that can send the claim behind the wake-up signal (Redis: the blocking
        read and the claim script in one pipeline, so the claim runs on the server the
        moment work arrives) override it to save a round trip on every pickup. The claim
        always follows the wait, woken or timed out, and may come back empty.
        """
        self.wait(queues, timeout_s)
        return self.claim(queues, worker=worker, limit=limit, batch=batch, lease_s=lease_s)

    # --- inspect and operate -------------------------------------------------------

    @abstractmethod
    def now(self) -> float:
        """The backend's clock, in epoch seconds: the one every deadline is measured on."""

    @abstractmethod
    def get_job(self, job_id: str) -> JobRecord | None:
        """The job, or None if it never existed or was pruned or purged."""

    @abstractmethod
    def list_jobs(
        self,
        *,
        queue: str | None = None,
        status: Status | None = None,
        lane: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[JobRecord]:
        """Jobs matching every filter given, newest first."""

    @abstractmethod
    def cancel(self, job_id: str) -> bool:
        """Cancel a scheduled, queued, retrying or dead job; False for any other state.

        Atomic. A cancelled job never runs; its lane moves on (a blocked lane unblocks).
        Running jobs cannot be cancelled.
        """

    @abstractmethod
    def retry(self, job_id: str) -> bool:
        """Put a dead or cancelled job back at the head of its lane with attempts reset.

        Atomic. False when the job is in any other state or does not exist.
        """

    @abstractmethod
    def purge(self, *, status: Status = Status.DEAD, queue: str | None = None) -> int:
        """Delete every job in final ``status`` (dead, cancelled or succeeded).

        Lanes blocked by purged dead jobs move on. Returns the number deleted.
        """

    @abstractmethod
    def stats(self) -> list[QueueStats]:
        """Counts per queue for every queue that has jobs."""

    @abstractmethod
    def lanes(self, queue: str, *, limit: int = 100) -> list[LaneInfo]:
        """Lanes of ``queue`` with pending work, oldest head first."""

    @abstractmethod
    def put_meta(self, key: str, value: bytes | None) -> None:
        """Store (or with None delete) a small value under ``key``, atomically."""

    @abstractmethod
    def get_meta(self, prefix: str) -> dict[str, bytes]:
        """Every stored meta value whose key starts with ``prefix``."""

    @abstractmethod
    def close(self) -> None:
        """Release connections. The backend must not be used afterwards."""
