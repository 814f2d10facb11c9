"""KeyedProcessor: ordered-per-key, parallel-across-keys processing on worker threads."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from types import TracebackType
from typing import Generic, TypeVar

from laneway.streams._core import Ack, Core, Job, Partition, close_acks, deliver_ack
from laneway.streams._types import (
    Action,
    ErrorPolicy,
    ProcessorClosedError,
    ProcessorStoppedError,
    Record,
    Stats,
)

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
P = TypeVar("P", bound=Hashable)

logger = logging.getLogger("laneway.streams")


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


class KeyedProcessor(Generic[K, T, P]):
    """Run ``work`` on items in parallel across keys and strictly in order within a key.

    Items are submitted with a key, a partition and an offset (as read from a partitioned
    log). Items of one key run one at a time in submit order; items of different keys run
    concurrently on ``workers`` threads. ``ack(partition, offset)`` is called whenever the
    partition's *contiguous watermark* moves: every item of that partition submitted at or
    below ``offset`` is finished (succeeded, or skipped by the error policy). Acks per
    partition are strictly increasing and may skip values (only the newest matters).

    Offsets of one partition must be submitted in increasing order (gaps are fine, as in a
    compacted Kafka topic). An offset not above the last one accepted for its partition is a
    redelivery of work the processor already holds: ``submit`` returns False, nothing runs,
    and the ``duplicates`` counter grows. After ``revoke`` the partition starts afresh.

    Backpressure is global: ``submit`` blocks while ``max_in_flight`` items (queued, running
    or waiting for a retry, across all keys and partitions) are unfinished. One slow key can
    therefore fill the budget and hold up every other key's submits.

    Callbacks run on worker threads: ``on_done(record, result)`` after ``work`` returns (an
    exception from it counts as a failure of the item); ``on_error(record, exc)`` after each
    failed attempt, before the policy acts (its own exceptions are logged and ignored);
    ``ack`` outside the internal lock but serialised with other acks. None of them may block
    on this processor's capacity (``submit`` from inside ``work`` can deadlock).

    Args:
        work: Called with each item; its return value is passed to ``on_done``.
        ack: Called with ``(partition, offset)`` as the partition's watermark moves.
        on_done: Optional success callback ``(record, result)``.
        on_error: Optional failure callback ``(record, exception)``.
        max_in_flight: Upper bound on unfinished items; ``submit`` blocks at it.
        workers: Number of worker threads (the parallelism across keys).
        error_policy: Retry/skip/stop policy for failing items (default: 3 retries, then stop).
        name: Prefix of the worker thread names.
    """

    def __init__(
        self,
        work: Callable[[T], object],
        ack: Callable[[P, int], object],
        on_done: Callable[[Record[K, T, P], object], object] | None = None,
        on_error: Callable[[Record[K, T, P], BaseException], object] | None = None,
        max_in_flight: int = 1000,
        *,
        workers: int = 8,
        error_policy: ErrorPolicy | None = None,
        name: str = "laneway-streams",
    ) -> None:
        if max_in_flight < 1 or workers < 1:
            raise ValueError("max_in_flight and workers must be >= 1")
        self._work = work
        self._ack = ack
        self._on_done = on_done
        self._on_error = on_error
        self.max_in_flight = max_in_flight
        self._core: Core[K, T, P] = Core(error_policy or ErrorPolicy())
        self._lock = threading.Lock()
        self._ack_lock = threading.Lock()
        self._work_ready = threading.Condition(self._lock)
        self._space = threading.Condition(self._lock)
        self._progress = threading.Condition(self._lock)
        self._closing = False
        self._threads = [
            threading.Thread(target=self._worker, name=f"{name}-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def __enter__(self) -> KeyedProcessor[K, T, P]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(drain=exc_type is None)

    @property
    def in_flight(self) -> int:
        """Items accepted and not yet finished (what ``max_in_flight`` bounds)."""
        return self._core.in_flight

    @property
    def failure(self) -> ProcessorStoppedError | None:
        """The error that stopped the processor, or None while it runs."""
        with self._lock:
            return self._stopped_error()

    def stats(self) -> Stats:
        """Return a consistent snapshot of the counters."""
        with self._lock:
            return self._core.stats()

    def submit(self, key: K, item: T, partition: P, offset: int, timeout: float | None = None) -> bool:
        """Queue ``item`` behind earlier items of ``key``; block while the processor is full.

        Args:
            key: Ordering key; items with equal keys run one at a time, in submit order.
            item: Passed to ``work``.
            partition: Partition of ``offset`` (any hashable, e.g. ``(topic, number)``).
            offset: Position in ``partition``; must increase per partition.
            timeout: Seconds to wait for capacity; None waits forever, 0 never waits.

        Returns:
            True if accepted, False if refused as a duplicate (offset not above the
            partition's last accepted offset).

        Raises:
            TimeoutError: No capacity freed up within ``timeout``.
            ProcessorStoppedError: An item failed under a ``"stop"`` policy.
            ProcessorClosedError: ``close`` was called.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                self._raise_if_unusable()
                if self._core.duplicate(partition, offset):  # refused at once, full or not
                    return False
                if self._core.in_flight < self.max_in_flight:
                    break
                remaining = _remaining(deadline)
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"no capacity within {timeout} s")
                self._space.wait(remaining)
            accepted, became_ready = self._core.add(key, item, partition, offset)
            if became_ready:
                self._work_ready.notify()
            return accepted

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every accepted item has finished.

        Returns:
            True once nothing is in flight, False if ``timeout`` elapsed first.

        Raises:
            ProcessorStoppedError: An item failed under a ``"stop"`` policy (raised as soon as
                no other item is still running).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._core.in_flight:
                stopped = self._stopped_error()
                if stopped is not None and not self._core.running:
                    raise stopped
                remaining = _remaining(deadline)
                if remaining is not None and remaining <= 0:
                    return False
                self._progress.wait(remaining)
            return True

    def revoke(self, partitions: Iterable[P], timeout: float | None = None) -> dict[P, int | None]:
        """Stop work on ``partitions`` and ack their final watermarks.

        Queued items of those partitions are dropped unrun (they will be redelivered to
        whoever owns the partition next). Running ones are waited for up to ``timeout``
        seconds; any still running then are abandoned: they finish in the background but are
        never acked. The final watermark is passed to ``ack`` (if it moved) before this
        returns, and no ack for these partitions follows afterwards. Submitting to the same
        partition later starts a fresh generation (offsets may start anywhere).

        Returns:
            The final watermark of each revoked partition this processor tracked (None if
            nothing of it finished).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            detached = self._core.detach(partitions)
            while any(part.running for part in detached.values()):
                remaining = _remaining(deadline)
                if remaining is not None and remaining <= 0:
                    break
                self._progress.wait(remaining)
            self._core.seal(detached)
            self._work_ready.notify_all()  # a key whose head was dropped may run its next item
            self._space.notify_all()
            self._progress.notify_all()
        with self._ack_lock:
            return {p: self._close_acks(part, p) for p, part in detached.items()}

    def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop the workers; later ``submit`` calls raise ``ProcessorClosedError``.

        Args:
            drain: Finish all accepted items first (unless the processor has stopped on a
                failure). With False, queued items are discarded unrun and only running
                ones complete.
            timeout: Overall seconds to wait for draining and for the threads to exit.
                Threads still busy afterwards are left running as daemons.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if drain:
            try:
                self.flush(timeout)
            except ProcessorStoppedError:
                pass
        with self._lock:
            self._closing = True
            self._core.drop_all_queued()
            self._work_ready.notify_all()
            self._space.notify_all()
            self._progress.notify_all()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(_remaining(deadline))

    def _stopped_error(self) -> ProcessorStoppedError | None:
        failure = self._core.failure
        if failure is None:
            return None
        record, cause = failure
        return ProcessorStoppedError(record, cause)

    def _raise_if_unusable(self) -> None:
        if self._closing:
            raise ProcessorClosedError("processor is closed")
        stopped = self._stopped_error()
        if stopped is not None:
            raise stopped

    def _worker(self) -> None:
        while True:
            with self._lock:
                job = self._next_job()
            if job is None:
                return
            self._execute(job)

    def _next_job(self) -> Job[K, T, P] | None:
        while not self._closing:
            now = time.monotonic()
            job = self._core.take(now)
            if job is not None:
                return job
            due = None if self._core.failure else self._core.next_due()
            self._work_ready.wait(None if due is None else max(due - now, 0.0))
        return None

    def _execute(self, job: Job[K, T, P]) -> None:
        try:
            result = self._work(job.item)
            if self._on_done is not None:
                self._on_done(job.record(), result)
        except BaseException as exc:  # noqa: BLE001 - even SystemExit must not strand the key
            self._fail(job, exc)
            return
        with self._lock:
            ack = self._core.succeed(job)
            self._finished()
        if ack is not None:
            self._deliver(ack)

    def _fail(self, job: Job[K, T, P], exc: BaseException) -> None:
        if self._on_error is not None:
            try:
                self._on_error(job.record(), exc)
            except Exception:
                logger.exception("on_error callback raised; ignoring")
        with self._lock:
            action, ack = self._core.fail(job, exc, time.monotonic())
            if action is Action.STOP:
                logger.error("stopping: %s", self._stopped_error())
            # Failures are rare: wake everyone (idle workers re-arm their retry timers,
            # flush/submit waiters re-check for a stop or freed capacity).
            self._work_ready.notify_all()
            self._space.notify_all()
            self._progress.notify_all()
        if ack is not None:
            self._deliver(ack)

    def _finished(self) -> None:
        self._space.notify()
        self._progress.notify_all()

    def _close_acks(self, part: Partition, partition: P) -> int | None:
        try:
            return close_acks(self._ack, part, partition)
        except Exception:
            logger.exception("ack callback raised for %r", partition)
            part.ack_open = False
            return part.watermark

    def _deliver(self, ack: Ack[P]) -> None:
        part, partition, offset = ack
        with self._ack_lock:
            try:
                deliver_ack(self._ack, part, partition, offset)
            except Exception:
                logger.exception("ack callback raised for %r offset %d", partition, offset)
