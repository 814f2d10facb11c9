"""Public value types of the keyed processor: records, error policy, counters, errors."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, Literal, TypeVar

K = TypeVar("K")
T = TypeVar("T")
P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class Record(Generic[K, T, P]):
    """One submitted item, as handed to ``on_done`` and ``on_error`` callbacks.

    Attributes:
        key: The ordering key the item was submitted under.
        item: The item itself (what ``work`` receives).
        partition: The partition the offset belongs to.
        offset: The item's offset within ``partition``.
        attempt: Which attempt this is, starting at 1 (retries increase it).
    """

    key: K
    item: T
    partition: P
    offset: int
    attempt: int


class Action(Enum):
    """What the processor does with an item whose attempt just failed."""

    RETRY = "retry"
    """Run the item again after a backoff; the key waits, other keys go on."""
    SKIP = "skip"
    """Give up on the item and count it as finished, so the watermark moves past it."""
    STOP = "stop"
    """Stop dispatching anything; the item stays unfinished and is never acked."""


@dataclass(frozen=True, slots=True)
class ErrorPolicy:
    """How failures of ``work`` are handled.

    An item that raises is retried up to ``retries`` times, waiting ``backoff`` seconds before
    the first retry and multiplying the wait by ``backoff_factor`` each time (capped at
    ``max_backoff``). While an item waits for its retry, later items of the same key wait too
    (per-key order is never broken); other keys keep running. When the retries are used up,
    ``then`` decides: ``"skip"`` treats the item as finished (its offset is acked past) and
    ``"stop"`` halts the processor without ever acking that offset.

    The default retries three times with 0.1 s, 0.2 s, 0.4 s waits and then stops, which never
    loses an item silently.

    Attributes:
        retries: How many extra attempts a failing item gets.
        backoff: Seconds to wait before the first retry.
        backoff_factor: Multiplier applied to the wait after each retry.
        max_backoff: Upper bound of any single wait, in seconds.
        then: What to do once the retries are used up: ``"skip"`` or ``"stop"``.
    """

    retries: int = 3
    backoff: float = 0.1
    backoff_factor: float = 2.0
    max_backoff: float = 30.0
    then: Literal["skip", "stop"] = "stop"

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError("retries must be >= 0")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoff and max_backoff must be >= 0")
        if self.backoff_factor < 1:
            raise ValueError("backoff_factor must be >= 1")
        if self.then not in ("skip", "stop"):
            raise ValueError("then must be 'skip' or 'stop'")

    @classmethod
    def stop(cls) -> ErrorPolicy:
        """Policy that halts the processor on the first failure, without retrying."""
        return cls(retries=0, then="stop")

    @classmethod
    def skip(cls) -> ErrorPolicy:
        """Policy that skips a failing item at once (it is counted and acked past)."""
        return cls(retries=0, then="skip")

    @classmethod
    def retry(
        cls,
        retries: int = 3,
        *,
        backoff: float = 0.1,
        backoff_factor: float = 2.0,
        max_backoff: float = 30.0,
        then: Literal["skip", "stop"] = "stop",
    ) -> ErrorPolicy:
        """Policy that retries with exponential backoff, then skips or stops."""
        return cls(retries, backoff, backoff_factor, max_backoff, then)

    def decide(self, attempt: int) -> tuple[Action, float]:
        """Return the action for a failed ``attempt`` (1-based) and the retry delay in seconds."""
        if attempt <= self.retries:
            delay = self.backoff * self.backoff_factor ** (attempt - 1)
            return Action.RETRY, min(delay, self.max_backoff)
        return (Action.SKIP if self.then == "skip" else Action.STOP), 0.0


@dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of a processor's counters.

    Attributes:
        submitted: Items accepted by ``submit``.
        done: Items whose ``work`` (and ``on_done``) succeeded.
        failed: Failed attempts (an item retried twice and then skipped counts 3).
        retried: Retries scheduled.
        skipped: Items given up on by the ``"skip"`` policy (they count as finished).
        duplicates: Submits refused because the offset was not above the partition's last one.
        discarded: Queued items dropped, unrun, by ``revoke`` or ``close(drain=False)``.
        abandoned: Running items whose partition was revoked before they finished; their
            completion is not acked.
        in_flight: Items accepted and not yet finished, skipped or discarded; this is what
            ``max_in_flight`` bounds.
        running: Items executing right now.
        waiting_retry: Items waiting for their retry backoff.
        active_keys: Keys that currently have queued or running work (idle keys cost nothing).
        partitions: Partitions currently tracked.
    """

    submitted: int
    done: int
    failed: int
    retried: int
    skipped: int
    duplicates: int
    discarded: int
    abandoned: int
    in_flight: int
    running: int
    waiting_retry: int
    active_keys: int
    partitions: int


class ProcessorStoppedError(RuntimeError):
    """Raised by ``submit``/``flush`` after an item failed under a ``"stop"`` policy.

    The failing item's exception is the ``__cause__``; ``record`` is the failing item.
    """

    def __init__(self, record: Record[Any, Any, Any], cause: BaseException) -> None:
        super().__init__(
            f"processor stopped: item at partition {record.partition!r} offset {record.offset} "
            f"(key {record.key!r}) failed after {record.attempt} attempt(s): {cause!r}"
        )
        self.record = record
        self.__cause__ = cause


class ProcessorClosedError(RuntimeError):
    """Raised by ``submit`` once ``close`` has been called."""
