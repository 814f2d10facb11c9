"""Shared helpers for the streams tests: a history checker and librdkafka mock-cluster tools."""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import Consumer, Producer, TopicPartition

PARTITIONS = 4  # what the mock cluster gives an auto-created topic


@dataclass(frozen=True)
class Produced:
    """One produced message: where it landed and its place in its key's sequence."""

    key: str
    seq: int
    partition: int
    offset: int


@dataclass
class History:
    """Thread-safe record of handler completions, in completion order."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    completed: list[tuple[str, int, int]] = field(default_factory=list)  # key, partition, offset
    done: set[tuple[int, int]] = field(default_factory=set)  # partition, offset

    def record(self, key: str, partition: int, offset: int) -> None:
        with self.lock:
            self.completed.append((key, partition, offset))
            self.done.add((partition, offset))

    def count(self) -> int:
        with self.lock:
            return len(self.done)


def order_violations(produced: Sequence[Produced], completed: Iterable[tuple[str, int, int]]) -> list[str]:
    """Return every completion of a key's message before all its earlier messages completed.

    ``completed`` is ``(key, partition, offset)`` in completion order; repeats (at-least-once
    redeliveries) are allowed.
    """
    seq_of = {(p.partition, p.offset): p.seq for p in produced}
    finished: dict[str, set[int]] = defaultdict(set)
    problems = []
    for key, partition, offset in completed:
        seq = seq_of[(partition, offset)]
        missing = [s for s in range(seq) if s not in finished[key]]
        if missing:
            problems.append(f"key {key} seq {seq} completed before seq {missing[0]}")
        finished[key].add(seq)
    return problems


def missing(produced: Sequence[Produced], completed: Iterable[tuple[str, int, int]]) -> list[Produced]:
    """Return produced messages that never completed."""
    done = {(partition, offset) for _, partition, offset in completed}
    return [p for p in produced if (p.partition, p.offset) not in done]


def commit_violations(commits: Iterable[tuple[int, int, frozenset[tuple[int, int]]]]) -> list[str]:
    """Return commits whose offset passes a message that had not completed at commit time.

    Each commit is ``(partition, next_offset, done snapshot)``.
    """
    problems = []
    for partition, next_offset, done in commits:
        for offset in range(next_offset):
            if (partition, offset) not in done:
                problems.append(f"partition {partition} committed {next_offset} before {offset} was done")
                break
    return problems


class MockCluster:
    """A librdkafka in-process mock cluster, alive as long as this object is."""

    def __init__(self) -> None:
        self.producer = Producer({"test.mock.num.brokers": 1, "log_level": 3})
        brokers = self.producer.list_topics(timeout=10).brokers
        self.bootstrap = ",".join(f"{b.host}:{b.port}" for b in brokers.values())

    def produce(self, topic: str, keys: int, per_key: int) -> list[Produced]:
        """Produce ``per_key`` messages for each of ``keys`` keys, interleaved, and wait."""
        landed: list[Produced] = []
        errors: list[object] = []

        def delivered(err: object, msg: object) -> None:
            if err is not None:
                errors.append(err)

        for seq in range(per_key):
            for k in range(keys):
                self.producer.produce(topic, key=f"k{k}", value=str(seq).encode(), on_delivery=delivered)
        assert self.producer.flush(30) == 0 and not errors, errors
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "inspect", "log_level": 3})
        try:
            consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
            total = keys * per_key
            deadline = time.monotonic() + 30
            while len(landed) < total and time.monotonic() < deadline:
                for msg in consumer.consume(total - len(landed), 1):
                    assert msg.error() is None, msg.error()
                    key = (msg.key() or b"").decode()
                    landed.append(
                        Produced(key, int(msg.value() or b"0"), msg.partition() or 0, msg.offset() or 0)
                    )
        finally:
            consumer.close()
        return landed

    def committed(self, topic: str, group: str) -> dict[int, int]:
        """Return the group's committed next offset per partition (absent if none)."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group, "log_level": 3})
        try:
            parts = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        finally:
            consumer.close()
        return {tp.partition: tp.offset for tp in parts if tp.offset >= 0}

    def config(self, group: str, **extra: object) -> dict[str, object]:
        """Consumer config for this cluster with test-friendly timings."""
        return {
            "bootstrap.servers": self.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "log_level": 3,
            "session.timeout.ms": 3000,
            "heartbeat.interval.ms": 300,
            **extra,
        }


def unique(prefix: str) -> str:
    """A fresh topic or group name."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
