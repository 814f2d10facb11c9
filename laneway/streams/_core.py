"""The single-threaded bookkeeping shared by the thread and asyncio processors.

Nothing here locks or blocks: the owning processor serialises every call (a lock for
threads, the event loop for asyncio). The core tracks, per key, the queue of items waiting
behind the one that runs; per partition, the submitted offsets that are not yet below the
contiguous watermark; and a ready queue of keys whose head item may start.
"""

from __future__ import annotations

import heapq
import operator
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

from laneway.streams._types import Action, ErrorPolicy, Record, Stats

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
P = TypeVar("P", bound=Hashable)

READY, RUNNING, WAITING, HALTED = range(4)


class Partition:
    """Offsets of one partition, from submit until the watermark passes them.

    ``last`` and ``pending`` are owned by the core; ``acked`` and ``ack_open`` are owned by
    whoever delivers acks (under its own serialisation), so that a slow ``ack`` never holds
    up the core.
    """

    __slots__ = ("ack_open", "acked", "done", "last", "live", "pending", "running", "watermark")

    def __init__(self) -> None:
        self.pending: deque[int] = deque()
        self.done: set[int] = set()
        self.last: int | None = None
        self.watermark: int | None = None
        self.running = 0
        self.live = True
        self.acked: int | None = None
        self.ack_open = True


class Job(Generic[K, T, P]):
    """One accepted item plus the partition generation it belongs to."""

    __slots__ = ("attempt", "item", "key", "offset", "part", "partition")

    def __init__(self, key: K, item: T, partition: P, offset: int, part: Partition) -> None:
        self.key = key
        self.item = item
        self.partition = partition
        self.offset = offset
        self.part = part
        self.attempt = 1

    def record(self) -> Record[K, T, P]:
        """Return the public, immutable view of this job."""
        return Record(self.key, self.item, self.partition, self.offset, self.attempt)


class KeyState(Generic[K, T, P]):
    """Per-key queue; exists only while the key has queued or running work."""

    __slots__ = ("key", "phase", "queue")

    def __init__(self, key: K) -> None:
        self.key = key
        self.queue: deque[Job[K, T, P]] = deque()
        self.phase = READY


Ack = tuple[Partition, P, int]


class Core(Generic[K, T, P]):
    """Key queues, partition watermarks and counters; callers serialise access."""

    def __init__(self, policy: ErrorPolicy) -> None:
        self.policy = policy
        self.keys: dict[K, KeyState[K, T, P]] = {}
        self.parts: dict[P, Partition] = {}
        self.ready: deque[KeyState[K, T, P]] = deque()
        self.delayed: list[tuple[float, int, KeyState[K, T, P], Job[K, T, P]]] = []
        self.seq = 0
        self.failure: tuple[Record[K, T, P], BaseException] | None = None
        self.in_flight = 0
        self.running = 0
        self.counts = dict.fromkeys(("submitted", "done", "failed", "retried", "skipped", "duplicates"), 0)
        self.counts.update(discarded=0, abandoned=0)

    def add(self, key: K, item: T, partition: P, offset: int) -> tuple[bool, bool]:
        """Accept an item; return ``(accepted, key_became_ready)``.

        An offset not above the last one accepted for its partition is refused (a redelivery
        of work this generation of the partition already holds). An unhashable key or
        partition, or an offset that is not an int, raises ``TypeError`` and changes nothing.
        """
        state = self.keys.get(key)  # hashes the key before anything changes
        offset = operator.index(offset)
        if self.duplicate(partition, offset):
            return False, False
        part = self.parts.get(partition)
        if part is None:
            part = self.parts[partition] = Partition()
        part.last = offset
        part.pending.append(offset)
        job: Job[K, T, P] = Job(key, item, partition, offset, part)
        self.in_flight += 1
        self.counts["submitted"] += 1
        if state is None:
            state = self.keys[key] = KeyState(key)
            state.queue.append(job)
            self.ready.append(state)
            return True, True
        state.queue.append(job)
        return True, False

    def duplicate(self, partition: P, offset: int) -> bool:
        """Whether ``add`` would refuse ``offset`` as a duplicate (counted as one if so)."""
        part = self.parts.get(partition)
        if part is None or part.last is None or offset > part.last:
            return False
        self.counts["duplicates"] += 1
        return True

    def take(self, now: float) -> Job[K, T, P] | None:
        """Start the head item of the next ready key, or return None if none may start."""
        if self.failure is not None:
            return None
        self._promote_due(now)
        while self.ready:
            state = self.ready.popleft()
            if state.phase != READY or self.keys.get(state.key) is not state or not state.queue:
                continue
            state.phase = RUNNING
            job = state.queue[0]
            job.part.running += 1
            self.running += 1
            return job
        return None

    def next_due(self) -> float | None:
        """Return the monotonic time of the earliest pending retry, if any."""
        return self.delayed[0][0] if self.delayed else None

    def _promote_due(self, now: float) -> None:
        while self.delayed and self.delayed[0][0] <= now:
            _, _, state, job = heapq.heappop(self.delayed)
            current = self.keys.get(state.key) is state
            if current and state.phase == WAITING and state.queue and state.queue[0] is job:
                state.phase = READY
                self.ready.append(state)

    def succeed(self, job: Job[K, T, P]) -> Ack[P] | None:
        """Finish a job that succeeded; return the partition's new watermark if it moved."""
        self._stop_running(job)
        self.counts["done"] += 1
        self.in_flight -= 1
        self._release_key(job)
        return self._mark_done(job)

    def fail(self, job: Job[K, T, P], exc: BaseException, now: float) -> tuple[Action, Ack[P] | None]:
        """Apply the error policy to a failed attempt; return the action and any new watermark.

        An item of a partition being revoked (or revoked) is dropped instead, as its queued
        items were: the partition's next owner runs it again, so it is neither retried here
        nor allowed to stop the processor (returned as ``SKIP`` with no watermark).
        """
        self._stop_running(job)
        self.counts["failed"] += 1
        if self.parts.get(job.partition) is not job.part:  # detached: a new owner has it
            self.in_flight -= 1  # counted as failed (and as abandoned if it outlived the revoke)
            self._release_key(job)
            return Action.SKIP, None
        action, delay = self.policy.decide(job.attempt)
        state = self.keys[job.key]
        if action is Action.RETRY:
            self.counts["retried"] += 1
            job.attempt += 1
            state.phase = WAITING
            self.seq += 1
            heapq.heappush(self.delayed, (now + delay, self.seq, state, job))
            return action, None
        if action is Action.SKIP:
            self.counts["skipped"] += 1
            self.in_flight -= 1
            self._release_key(job)
            return action, self._mark_done(job)
        state.phase = HALTED
        if self.failure is None:
            self.failure = (job.record(), exc)
        return action, None

    def abandon(self, job: Job[K, T, P]) -> None:
        """Forget a running job that will never finish (a cancelled asyncio task)."""
        self._stop_running(job)
        self.in_flight -= 1
        self.counts["discarded"] += 1
        self._release_key(job)

    def _stop_running(self, job: Job[K, T, P]) -> None:
        self.running -= 1
        job.part.running -= 1

    def _release_key(self, job: Job[K, T, P]) -> None:
        state = self.keys[job.key]
        state.queue.popleft()
        if state.queue:
            state.phase = READY
            self.ready.append(state)
        else:
            del self.keys[job.key]

    def _mark_done(self, job: Job[K, T, P]) -> Ack[P] | None:
        part = job.part
        if not part.live:
            return None
        part.done.add(job.offset)
        pending, done = part.pending, part.done
        moved = False
        while pending and pending[0] in done:
            part.watermark = pending.popleft()
            done.discard(part.watermark)
            moved = True
        if moved and part.watermark is not None:
            return part, job.partition, part.watermark
        return None

    def detach(self, partitions: Iterable[P]) -> dict[P, Partition]:
        """Begin revoking partitions: drop their queued items and return their trackers.

        Running items stay; they keep advancing the detached trackers until ``seal``. A later
        ``add`` for the same partition starts a fresh tracker (a new generation).
        """
        detached = {p: part for p in partitions if (part := self.parts.pop(p, None)) is not None}
        if detached:
            parts = set(map(id, detached.values()))
            self._drop_queued(lambda job: id(job.part) in parts)
        return detached

    def seal(self, detached: dict[P, Partition]) -> None:
        """Finish revoking: completions of still-running items no longer move the watermark."""
        for part in detached.values():
            part.live = False
            self.counts["abandoned"] += part.running

    def drop_all_queued(self) -> None:
        """Drop every item that is not running (used by ``close(drain=False)``)."""
        self._drop_queued(lambda job: True)
        self.delayed.clear()

    def _drop_queued(self, doomed: Callable[[Job[K, T, P]], bool]) -> None:
        for key, state in list(self.keys.items()):
            head = state.queue[0]
            keep_head = state.phase == RUNNING
            kept = deque(j for j in state.queue if (keep_head and j is head) or not doomed(j))
            dropped = len(state.queue) - len(kept)
            if not dropped:
                continue
            self.in_flight -= dropped
            self.counts["discarded"] += dropped
            state.queue = kept
            if not kept:
                del self.keys[key]
            elif kept[0] is not head and state.phase in (WAITING, HALTED):
                state.phase = READY
                self.ready.append(state)

    def stats(self) -> Stats:
        """Return a snapshot of the counters."""
        return Stats(
            **self.counts,
            in_flight=self.in_flight,
            running=self.running,
            waiting_retry=sum(1 for s in self.keys.values() if s.phase == WAITING),
            active_keys=len(self.keys),
            partitions=len(self.parts),
        )


def deliver_ack(ack: Callable[[P, int], object], part: Partition, partition: P, offset: int) -> bool:
    """Call ``ack`` if ``offset`` is above what this tracker last acked; caller serialises.

    Returns whether ``ack`` was called. Values computed before a revoke finished but delivered
    after it are dropped (the revoke already acked the final watermark).
    """
    if not part.ack_open or (part.acked is not None and offset <= part.acked):
        return False
    part.acked = offset
    ack(partition, offset)
    return True


def close_acks(ack: Callable[[P, int], object], part: Partition, partition: P) -> int | None:
    """Deliver a sealed tracker's final watermark (if new) and refuse any later ack."""
    if part.watermark is not None:
        deliver_ack(ack, part, partition, part.watermark)
    part.ack_open = False
    return part.watermark
