"""AsyncKeyedProcessor: the keyed processor for ``async def`` work on one event loop."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterable
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


async def _maybe_await(value: object) -> None:
    if inspect.isawaitable(value):
        await value


class AsyncKeyedProcessor(Generic[K, T, P]):
    """The asyncio twin of :class:`KeyedProcessor`: same ordering, acks and policies.

    ``work`` is an ``async def`` taking the item. Up to ``concurrency`` items (of distinct
    keys) run as tasks on the running event loop; items of one key run one after another in
    submit order. ``ack`` is a plain function called on the loop with strictly increasing
    offsets per partition. ``on_done``/``on_error`` may be plain or ``async`` functions.

    Differences from the threaded processor: every method must be called from the event loop
    that runs the processor, and ``revoke``/``close`` *cancel* items still running after their
    timeout (counted as ``discarded``) instead of leaving them running in the background.

    Args:
        work: Coroutine function called with each item.
        ack: Called with ``(partition, offset)`` as the partition's watermark moves.
        on_done: Optional success callback ``(record, result)``, plain or async.
        on_error: Optional failure callback ``(record, exception)``, plain or async.
        max_in_flight: Upper bound on unfinished items (global); ``submit`` waits at it.
        concurrency: Most items running at once (default: ``max_in_flight``).
        error_policy: Retry/skip/stop policy (default: 3 retries, then stop).
    """

    def __init__(
        self,
        work: Callable[[T], Awaitable[object]],
        ack: Callable[[P, int], object],
        on_done: Callable[[Record[K, T, P], object], object] | None = None,
        on_error: Callable[[Record[K, T, P], BaseException], object] | None = None,
        max_in_flight: int = 1000,
        *,
        concurrency: int | None = None,
        error_policy: ErrorPolicy | None = None,
    ) -> None:
        if max_in_flight < 1 or (concurrency is not None and concurrency < 1):
            raise ValueError("max_in_flight and concurrency must be >= 1")
        self._work = work
        self._ack = ack
        self._on_done = on_done
        self._on_error = on_error
        self.max_in_flight = max_in_flight
        self._concurrency = concurrency or max_in_flight
        self._core: Core[K, T, P] = Core(error_policy or ErrorPolicy())
        self._changed = asyncio.Event()
        self._tasks: dict[asyncio.Task[None], Job[K, T, P]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False

    async def __aenter__(self) -> AsyncKeyedProcessor[K, T, P]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close(drain=exc_type is None)

    @property
    def in_flight(self) -> int:
        """Items accepted and not yet finished (what ``max_in_flight`` bounds)."""
        return self._core.in_flight

    @property
    def failure(self) -> ProcessorStoppedError | None:
        """The error that stopped the processor, or None while it runs."""
        failure = self._core.failure
        return None if failure is None else ProcessorStoppedError(*failure)

    def stats(self) -> Stats:
        """Return a snapshot of the counters."""
        return self._core.stats()

    async def submit(self, key: K, item: T, partition: P, offset: int, timeout: float | None = None) -> bool:
        """Queue ``item`` behind earlier items of ``key``; wait while the processor is full.

        Same contract as :meth:`KeyedProcessor.submit`: returns False for a duplicate offset,
        raises ``TimeoutError``, ``ProcessorStoppedError`` or ``ProcessorClosedError``.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        # Re-check after every wake-up: another submitter may have taken the freed slot.
        while not self._can_submit():
            if self._core.duplicate(partition, offset):  # refused at once, full or not
                return False
            remaining = None if deadline is None else max(deadline - loop.time(), 0.0)
            if remaining == 0.0 or not await self._wait_until(self._can_submit, remaining):
                raise TimeoutError(f"no capacity within {timeout} s")
        self._raise_if_unusable()
        accepted, _ = self._core.add(key, item, partition, offset)
        self._pump()
        return accepted

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every accepted item finished; False on timeout.

        Raises:
            ProcessorStoppedError: An item failed under a ``"stop"`` policy.
        """
        if not await self._wait_until(self._drained, timeout):
            return False
        failure = self.failure
        if failure is not None and self._core.in_flight:
            raise failure
        return True

    async def revoke(self, partitions: Iterable[P], timeout: float | None = None) -> dict[P, int | None]:
        """Drop queued items of ``partitions``, await (then cancel) running ones, ack finals.

        Same contract as :meth:`KeyedProcessor.revoke`, except that items still running
        after ``timeout`` are cancelled.
        """
        detached = self._core.detach(partitions)
        self._signal()

        def settled() -> bool:
            return not any(part.running for part in detached.values())

        if not await self._wait_until(settled, timeout):
            doomed = {id(part) for part in detached.values()}
            await self._cancel(lambda job: id(job.part) in doomed)
        self._core.seal(detached)
        self._pump()
        return {p: self._close_acks(part, p) for p, part in detached.items()}

    async def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop taking work; with ``drain`` finish accepted items first, else cancel them.

        After ``close``, ``submit`` raises ``ProcessorClosedError``. Items still running when
        draining times out (or with ``drain=False``) are cancelled.
        """
        if drain:
            try:
                await self.flush(timeout)
            except ProcessorStoppedError:
                pass
        self._closing = True
        self._core.drop_all_queued()
        if self._timer is not None:
            self._timer.cancel()
        await self._cancel(lambda job: True)
        self._signal()

    def _can_submit(self) -> bool:
        return self._closing or self._core.failure is not None or self._core.in_flight < self.max_in_flight

    def _drained(self) -> bool:
        return not self._core.in_flight or (self._core.failure is not None and not self._core.running)

    def _raise_if_unusable(self) -> None:
        if self._closing:
            raise ProcessorClosedError("processor is closed")
        failure = self.failure
        if failure is not None:
            raise failure

    async def _wait_until(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        async def wait() -> None:
            while not ready():
                await self._changed.wait()

        try:
            await asyncio.wait_for(wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def _signal(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _cancel(self, doomed: Callable[[Job[K, T, P]], bool]) -> None:
        tasks = [task for task, job in self._tasks.items() if doomed(job)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _pump(self) -> None:
        if self._closing:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()  # one reading: a retry due after take() looked must still get its timer
        while self._core.running < self._concurrency:
            job = self._core.take(now)
            if job is None:
                break
            task = loop.create_task(self._run(job))
            self._tasks[task] = job
            task.add_done_callback(self._forget)
        due = None if self._core.failure else self._core.next_due()
        # A retry already due waits for a slot, and a finishing task pumps again: a timer
        # for a time already past would fire at once, again and again, until then.
        if due is not None and due > now and (self._timer is None or self._timer.when() > due):
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._pump()

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    async def _run(self, job: Job[K, T, P]) -> None:
        settled = False
        try:
            try:
                result = await self._work(job.item)
                if self._on_done is not None:
                    await _maybe_await(self._on_done(job.record(), result))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a failing item goes to the error policy
                await self._call_on_error(job, exc)
                action, ack = self._core.fail(job, exc, asyncio.get_running_loop().time())
                settled = True
                if action is Action.STOP:
                    logger.error("stopping: %s", self.failure)
            else:
                ack = self._core.succeed(job)
                settled = True
            self._deliver(ack)
        finally:
            if not settled:
                self._core.abandon(job)
            self._signal()
        self._pump()

    async def _call_on_error(self, job: Job[K, T, P], exc: Exception) -> None:
        if self._on_error is not None:
            try:
                await _maybe_await(self._on_error(job.record(), exc))
            except Exception:
                logger.exception("on_error callback raised; ignoring")

    def _deliver(self, ack: Ack[P] | None) -> None:
        if ack is None:
            return
        part, partition, offset = ack
        try:
            deliver_ack(self._ack, part, partition, offset)
        except Exception:
            logger.exception("ack callback raised for %r offset %d", partition, offset)

    def _close_acks(self, part: Partition, partition: P) -> int | None:
        try:
            return close_acks(self._ack, part, partition)
        except Exception:
            logger.exception("ack callback raised for %r", partition)
            part.ack_open = False
            return part.watermark
