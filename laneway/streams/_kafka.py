"""A Kafka consumer-group loop that feeds a KeyedProcessor and commits only its watermarks."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from laneway.streams._processor import KeyedProcessor
from laneway.streams._types import ErrorPolicy, Record, Stats

if TYPE_CHECKING:
    KafkaMessage: TypeAlias = Message[Any, Any]
else:
    KafkaMessage = Message

TP: TypeAlias = tuple[str, int]
"""A partition as the processor sees it: ``(topic, partition number)``."""

logger = logging.getLogger("laneway.kafka")


def topic_partition(message: KafkaMessage) -> TP:
    """Return ``(topic, partition)`` of a consumed (non-error) message."""
    topic, partition = message.topic(), message.partition()
    if topic is None or partition is None:
        raise ValueError("message has no topic/partition (is it an error event?)")
    return topic, partition


def default_key(message: KafkaMessage) -> Hashable:
    """Order by the message key; keyless messages are ordered per partition."""
    key = message.key()
    return key if key is not None else topic_partition(message)


class KafkaStreamConsumer:
    """Consume topics as a group member, process keys in parallel, commit only what is done.

    Each message goes to a :class:`KeyedProcessor` under ``key(message)`` (default: the
    message key) and partition ``(topic, partition)``. Offsets are committed (``offset + 1``
    of each partition's contiguous watermark) every ``commit_interval`` seconds, on
    revocation and on shutdown, and never beyond an unfinished message: after a crash the
    group re-reads from the first unfinished offset (at-least-once, per-key order kept).

    Backpressure: at most ``max_in_flight`` messages are in the processor and at most
    ``max_buffered`` more wait in a local buffer; the loop reads only as many as fit, leaving
    the rest in librdkafka's prefetch queue (bounded by its ``queued.max.messages.kbytes``).
    If the buffer is full and the processor took nothing for ``poll_timeout`` seconds,
    fetching is paused on every assigned partition until the buffer is half empty
    (librdkafka drops what it had prefetched for a paused partition and re-fetches it on
    resume, so the loop pauses only when processing really stalls). The loop keeps polling
    while paused, so group membership and rebalances stay live.

    On revocation (a rebalance, or ``close``) queued messages of the revoked partitions are
    dropped, running ones are awaited for up to ``revoke_timeout`` seconds (then abandoned:
    never acked, never committed), and the final watermark is committed before the partition
    is handed over. Lost partitions (the member was fenced) are abandoned without a commit.

    ``enable.auto.commit`` is always turned off. ``run`` is meant for one thread; ``stop``
    may be called from any thread or a signal handler.

    Args:
        handler: Called with each ``confluent_kafka.Message`` on a worker thread.
        topics: Topics to subscribe to.
        config: librdkafka consumer configuration; needs ``bootstrap.servers`` and
            ``group.id``.
        workers: Worker threads (parallelism across keys).
        max_in_flight: Most unfinished messages inside the processor (global, all keys).
        error_policy: What to do with failing messages (default: 3 retries, then stop).
        key: Maps a message to its ordering key.
        on_error: Called with ``(record, exception)`` after each failed attempt.
        on_commit: Called with ``(topic, partition, next_offset)`` after each commit.
        revoke_timeout: Seconds to wait for running messages of a revoked partition.
        drain_timeout: Seconds ``run`` spends finishing accepted messages when stopped.
        commit_interval: Seconds between periodic commits.
        poll_timeout: Seconds each poll waits for messages.
        batch_size: Most messages taken per poll.
        max_buffered: Messages read ahead of the processor before fetching pauses
            (default: ``max_in_flight``).
    """

    def __init__(
        self,
        handler: Callable[[KafkaMessage], object],
        *,
        topics: Sequence[str],
        config: Mapping[str, Any],
        workers: int = 8,
        max_in_flight: int = 1000,
        error_policy: ErrorPolicy | None = None,
        key: Callable[[KafkaMessage], Hashable] = default_key,
        on_error: Callable[[Record[Hashable, KafkaMessage, TP], BaseException], object] | None = None,
        on_commit: Callable[[str, int, int], object] | None = None,
        revoke_timeout: float = 30.0,
        drain_timeout: float = 30.0,
        commit_interval: float = 1.0,
        poll_timeout: float = 0.1,
        batch_size: int = 500,
        max_buffered: int | None = None,
    ) -> None:
        self._handler = handler
        self._topics = list(topics)
        self._config = {**config, "enable.auto.commit": False}
        self._workers = workers
        self._max_in_flight = max_in_flight
        self._error_policy = error_policy
        self._key = key
        self._on_error = on_error
        self._on_commit = on_commit
        self._revoke_timeout = revoke_timeout
        self._drain_timeout = drain_timeout
        self._commit_interval = commit_interval
        self._poll_timeout = poll_timeout
        self._batch_size = batch_size
        self._max_buffered = max_buffered or max_in_flight
        self._last_activity = time.monotonic()
        self._joined = False
        self.pauses = 0
        """How many times fetching was paused for backpressure."""
        self._stop = threading.Event()
        self._ack_lock = threading.Lock()
        self._acked: dict[TP, int] = {}
        self._committed: dict[TP, int] = {}
        self._unsaved: dict[TP, int] = {}  # final commits refused during the last revoke
        self._carried: dict[TP, int] = {}  # ... whose partition came back: commit them
        self._assigned: set[TP] = set()
        self._paused: set[TP] = set()
        self._backlog: deque[KafkaMessage] = deque()
        self._consumer: Consumer | None = None
        self._processor: KeyedProcessor[Hashable, KafkaMessage, TP] | None = None

    @property
    def assignment(self) -> frozenset[TP]:
        """The partitions this member currently owns."""
        return frozenset(self._assigned)

    def stop(self) -> None:
        """Ask ``run`` to finish: stop fetching, drain, commit and leave the group."""
        self._stop.set()

    def run(self, idle_timeout: float | None = None) -> Stats:
        """Consume until ``stop`` is called (or ``idle_timeout`` passes with nothing to do).

        Args:
            idle_timeout: If set, return once the member has joined the group, nothing is in
                flight, and neither a message nor an assignment arrived for this many seconds.

        Returns:
            The processor's final counters.

        Raises:
            ProcessorStoppedError: A message failed under a ``"stop"`` error policy; everything
                finished before it was committed first.
            KafkaException: A fatal consumer error.
            RuntimeError: ``run`` was already called on this instance.
        """
        if self._consumer is not None:
            raise RuntimeError("run() can only be called once per KafkaStreamConsumer")
        consumer = self._consumer = Consumer(self._config)
        processor = self._processor = KeyedProcessor(
            self._handler,
            self._record_ack,
            on_error=self._on_error,
            max_in_flight=self._max_in_flight,
            workers=self._workers,
            error_policy=self._error_policy,
            name="laneway-kafka",
        )
        try:
            consumer.subscribe(
                self._topics,
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            self._loop(consumer, processor, idle_timeout)
            self._drain(consumer, processor)
        finally:
            try:
                consumer.close()
            finally:
                processor.close(drain=False, timeout=self._revoke_timeout)
        return processor.stats()

    def _loop(
        self,
        consumer: Consumer,
        processor: KeyedProcessor[Hashable, KafkaMessage, TP],
        idle_timeout: float | None,
    ) -> None:
        self._last_activity = next_commit = time.monotonic()
        while not self._stop.is_set():
            failure = processor.failure
            if failure is not None:
                raise failure
            self._admit(processor, self._poll_timeout)
            self._apply_backpressure(consumer)
            self._fetch(consumer)
            self._admit(processor, 0.0)
            now = time.monotonic()
            if now >= next_commit:
                self._commit(consumer, self._assigned)
                next_commit = now + self._commit_interval
            idle = self._joined and not processor.in_flight and not self._backlog
            if idle_timeout is not None and idle and now - self._last_activity >= idle_timeout:
                return

    def _fetch(self, consumer: Consumer) -> None:
        room = max(1, min(self._batch_size, self._max_buffered - len(self._backlog)))
        messages = consumer.consume(room, 0)
        if not messages and not self._backlog:
            # Nothing buffered to hand over: block here, but return with the first message.
            message = consumer.poll(self._poll_timeout)
            messages = [] if message is None else [message]
        for message in messages:
            self._take(message)

    def _take(self, message: KafkaMessage) -> None:
        error = message.error()
        if error is None:
            self._backlog.append(message)
            self._last_activity = time.monotonic()
        elif error.fatal():
            raise KafkaException(error)
        elif error.code() != KafkaError._PARTITION_EOF:
            logger.warning("consumer error: %s", error)

    def _admit(self, processor: KeyedProcessor[Hashable, KafkaMessage, TP], wait: float) -> None:
        """Hand buffered messages to the processor; wait up to ``wait`` s for room for the first."""
        while self._backlog:
            message = self._backlog[0]
            offset = message.offset()
            if offset is None or offset < 0:
                raise ValueError(f"consumed message without an offset: {message!r}")
            try:
                processor.submit(self._key(message), message, topic_partition(message), offset, wait)
            except TimeoutError:
                return
            self._backlog.popleft()
            wait = 0.0

    def _apply_backpressure(self, consumer: Consumer) -> None:
        # Pausing discards what librdkafka prefetched and resuming re-fetches it, so pause
        # only when the local buffer is full and resume once it is half empty.
        if len(self._backlog) >= self._max_buffered:
            fresh = self._assigned - self._paused
            if fresh:
                consumer.pause([TopicPartition(t, p) for t, p in fresh])
                self._paused |= fresh
                self.pauses += 1
        elif self._paused and len(self._backlog) <= self._max_buffered // 2:
            consumer.resume([TopicPartition(t, p) for t, p in self._paused])
            self._paused.clear()

    def _drain(self, consumer: Consumer, processor: KeyedProcessor[Hashable, KafkaMessage, TP]) -> None:
        deadline = time.monotonic() + self._drain_timeout
        self._pause_all(consumer)
        self._backlog.clear()
        try:
            processor.flush(self._drain_timeout)
        finally:
            failed = self._commit(consumer, self._assigned)
            # A commit refused mid-rebalance is retried once this member rejoins.
            while (failed or self._unsaved) and time.monotonic() < deadline:
                consumer.consume(self._batch_size, self._poll_timeout)  # serves the rebalance only
                self._pause_all(consumer)
                failed = self._commit(consumer, self._assigned)

    def _pause_all(self, consumer: Consumer) -> None:
        fresh = self._assigned - self._paused
        if fresh:
            consumer.pause([TopicPartition(t, p) for t, p in fresh])
            self._paused |= fresh

    def _record_ack(self, partition: TP, offset: int) -> None:
        with self._ack_lock:
            self._acked[partition] = offset

    def _commit(self, consumer: Consumer, partitions: Iterable[TP]) -> dict[TP, int]:
        """Commit each partition's finished prefix; return what was due but not committed."""
        with self._ack_lock:
            due = {}
            for tp in partitions:
                offset = max(self._acked.get(tp, -1) + 1, self._carried.get(tp, 0))
                if offset > self._committed.get(tp, 0):
                    due[tp] = offset
        if not due:
            return {}
        offsets = [TopicPartition(t, p, offset) for (t, p), offset in due.items()]
        try:
            results = consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            logger.warning("commit of %s failed: %s", offsets, exc)
            return due
        failed = {}
        for result in results:
            tp = (result.topic, result.partition)
            if result.error is not None:
                logger.warning("commit of %s failed: %s", result, result.error)
                failed[tp] = due[tp]
                continue
            self._committed[tp] = result.offset
            self._carried.pop(tp, None)
            if self._on_commit is not None:
                self._on_commit(result.topic, result.partition, result.offset)
        return failed

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = {(p.topic, p.partition) for p in partitions}
        logger.info("assigned %s", sorted(tps))
        # librdkafka keeps a partition's pause across revoke and re-assign: one paused under
        # backpressure before a rebalance took it away would come back paused for good.
        # Each assigned partition starts in the state the loop is in.
        if self._paused:
            consumer.pause(partitions)
            self._paused |= tps
        else:
            consumer.resume(partitions)
        self._assigned |= tps
        self._joined = True
        # A final commit refused during the previous rebalance is still true if the partition
        # came straight back to this member (nobody else held it since): commit it now.
        self._carried.update({tp: off for tp, off in self._unsaved.items() if tp in tps})
        self._unsaved.clear()
        self._last_activity = time.monotonic()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = self._release(partitions, self._revoke_timeout)
        self._unsaved.update(self._commit(consumer, tps))
        self._forget(tps)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(self._release(partitions, 0.0))

    def _release(self, partitions: list[TopicPartition], timeout: float) -> set[TP]:
        tps = {(p.topic, p.partition) for p in partitions}
        logger.info("revoking %s", sorted(tps))
        self._backlog = deque(m for m in self._backlog if topic_partition(m) not in tps)
        if self._processor is not None:
            self._processor.revoke(tps, timeout)
        return tps

    def _forget(self, tps: set[TP]) -> None:
        self._assigned -= tps
        self._paused -= tps
        with self._ack_lock:
            for tp in tps:
                self._acked.pop(tp, None)
                self._committed.pop(tp, None)
                self._carried.pop(tp, None)
