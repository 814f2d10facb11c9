"""The Kafka loop against librdkafka's real in-process mock cluster (no Python mocks)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from laneway.kafka import KafkaStreamConsumer
from laneway.streams import ErrorPolicy, ProcessorStoppedError, Stats
from tests.streams.streams_support import (
    History,
    MockCluster,
    Produced,
    commit_violations,
    missing,
    order_violations,
    unique,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)


@dataclass
class Member:
    """One KafkaStreamConsumer running in a thread, with what it processed and committed."""

    consumer: KafkaStreamConsumer
    thread: threading.Thread
    history: History
    commits: list[tuple[int, int, frozenset[tuple[int, int]]]] = field(default_factory=list)
    stats: list[Stats] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def stop(self) -> None:
        self.consumer.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "consumer did not stop"


def start_member(
    cluster: MockCluster,
    topic: str,
    group: str,
    shared: History,
    delay: float = 0.001,
    gate: Callable[[Any], None] | None = None,
    **options: Any,
) -> Member:
    """Start a consumer whose handler sleeps ``delay`` and records into ``shared`` and its own."""
    own = History()

    def handler(message: Any) -> None:
        if gate is not None:
            gate(message)
        time.sleep(delay)
        key = message.key().decode()
        own.record(key, message.partition(), message.offset())
        shared.record(key, message.partition(), message.offset())

    def on_commit(topic_: str, partition: int, offset: int) -> None:
        with shared.lock:
            member.commits.append((partition, offset, frozenset(shared.done)))

    consumer = KafkaStreamConsumer(
        handler,
        topics=[topic],
        config=cluster.config(group),
        on_commit=on_commit,
        commit_interval=0.2,
        **options,
    )

    def run() -> None:
        try:
            member.stats.append(consumer.run())
        except BaseException as exc:
            member.errors.append(exc)

    member = Member(consumer, threading.Thread(target=run, daemon=True), own)
    member.thread.start()
    return member


def end_offsets(produced: list[Produced]) -> dict[int, int]:
    ends: dict[int, int] = {}
    for p in produced:
        ends[p.partition] = max(ends.get(p.partition, 0), p.offset + 1)
    return ends


def assert_complete_and_ordered(produced: list[Produced], history: History) -> None:
    assert missing(produced, history.completed) == []
    assert order_violations(produced, history.completed) == []


def test_consumer_processes_every_message_in_key_order_and_commits_the_end(cluster: MockCluster) -> None:
    topic, group = unique("single"), unique("g")
    produced = cluster.produce(topic, keys=20, per_key=20)
    history = History()
    member = start_member(cluster, topic, group, history, workers=8)
    wait_until(lambda: history.count() == len(produced), 30, "all messages processed")
    member.stop()
    assert member.errors == []
    assert_complete_and_ordered(produced, history)
    assert len(history.completed) == len(produced)  # no rebalance, so exactly once
    assert commit_violations(member.commits) == []
    assert cluster.committed(topic, group) == end_offsets(produced)
    assert member.stats[0].done == len(produced)


def test_two_consumers_in_one_group_share_the_partitions(cluster: MockCluster) -> None:
    topic, group = unique("pair"), unique("g")
    produced = cluster.produce(topic, keys=40, per_key=10)
    history = History()
    members = [start_member(cluster, topic, group, history, delay=0.01, workers=4) for _ in range(2)]
    wait_until(lambda: history.count() == len(produced), 60, "all messages processed")
    for member in members:
        member.stop()
    assert all(m.errors == [] for m in members)
    assert all(m.history.completed for m in members), "one member processed nothing"
    assert_complete_and_ordered(produced, history)
    assert commit_violations([c for m in members for c in m.commits]) == []
    assert cluster.committed(topic, group) == end_offsets(produced)


def test_rebalance_mid_stream_hands_over_without_loss_or_premature_commits(cluster: MockCluster) -> None:
    topic, group = unique("rebalance"), unique("g")
    produced = cluster.produce(topic, keys=40, per_key=20)
    history = History()
    first = start_member(cluster, topic, group, history, delay=0.01, workers=2)
    wait_until(lambda: history.count() >= 100, 30, "the first member to make progress")
    second = start_member(cluster, topic, group, history, delay=0.01, workers=2)
    wait_until(lambda: history.count() == len(produced), 60, "all messages processed")
    first.stop()
    second.stop()
    assert first.errors == [] and second.errors == []
    assert second.history.completed, "the partitions were never handed over"
    assert_complete_and_ordered(produced, history)
    assert commit_violations(first.commits + second.commits) == []
    assert cluster.committed(topic, group) == end_offsets(produced)


def test_revocation_abandons_stuck_work_and_never_commits_past_it(cluster: MockCluster) -> None:
    topic, group = unique("stuck"), unique("g")
    produced = cluster.produce(topic, keys=12, per_key=10)
    stuck = next(p for p in produced if p.key == "k0" and p.seq == 3)
    release = threading.Event()
    first_run = threading.Event()

    def gate(message: Any) -> None:
        if (message.partition(), message.offset()) == (stuck.partition, stuck.offset):
            first_run.set()
            release.wait(30)

    blocked = [p for p in produced if p.key == "k0" and p.seq >= stuck.seq]  # behind it, in order
    history = History()
    first = start_member(cluster, topic, group, history, gate=gate, workers=4, revoke_timeout=0.3)
    wait_until(first_run.is_set, 30, "the stuck message to start")
    second = start_member(cluster, topic, group, history, gate=gate, workers=4)
    wait_until(lambda: bool(second.consumer.assignment), 30, "the rebalance")
    wait_until(lambda: history.count() == len(produced) - len(blocked), 30, "all unblocked messages")
    time.sleep(0.5)  # let periodic commits run while the stuck message is unfinished
    assert cluster.committed(topic, group).get(stuck.partition, 0) <= stuck.offset
    release.set()
    wait_until(lambda: history.count() == len(produced), 30, "the stuck message to finish")
    first.stop()
    second.stop()
    assert first.stats[0].abandoned >= 1
    assert_complete_and_ordered(produced, history)
    assert commit_violations(first.commits + second.commits) == []


def test_fetching_pauses_under_backpressure_and_resumes_without_loss(cluster: MockCluster) -> None:
    topic, group = unique("pause"), unique("g")
    produced = cluster.produce(topic, keys=4, per_key=5)
    history = History()
    member = start_member(
        cluster,
        topic,
        group,
        history,
        delay=0.12,
        workers=1,
        max_in_flight=2,
        max_buffered=2,
        poll_timeout=0.05,
    )
    wait_until(lambda: history.count() == len(produced), 30, "all messages processed")
    member.stop()
    assert member.consumer.pauses >= 1
    assert len(history.completed) == len(produced)
    assert_complete_and_ordered(produced, history)
    assert commit_violations(member.commits) == []


def test_partitions_paused_under_backpressure_are_read_again_after_a_rebalance(cluster: MockCluster) -> None:
    """librdkafka keeps a pause across revoke and re-assign; the member must resume them."""
    topic, group = unique("repause"), unique("g")
    produced = cluster.produce(topic, keys=20, per_key=10)
    release = threading.Event()
    history = History()
    first = start_member(
        cluster, topic, group, history, gate=lambda m: release.wait(30),
        workers=1, max_in_flight=2, max_buffered=4, revoke_timeout=0.3, poll_timeout=0.05,
    )  # fmt: skip
    wait_until(lambda: first.consumer.pauses >= 1, 30, "backpressure to pause the first member")
    second = start_member(cluster, topic, group, history, workers=2)
    wait_until(lambda: bool(second.consumer.assignment), 30, "the rebalance")
    release.set()
    second.stop()  # every partition goes back to the first member
    produced += cluster.produce(topic, keys=20, per_key=5)
    wait_until(lambda: not missing(produced, history.completed), 60, "every message, before and after")
    first.stop()
    assert first.errors == [] and second.errors == []


def test_stop_policy_raises_and_commits_only_below_the_failed_message(cluster: MockCluster) -> None:
    topic, group = unique("poison"), unique("g")
    produced = cluster.produce(topic, keys=8, per_key=10)
    poison = next(p for p in produced if p.key == "k2" and p.seq == 4)

    def gate(message: Any) -> None:
        if (message.partition(), message.offset()) == (poison.partition, poison.offset):
            raise ValueError("poison message")

    history = History()
    member = start_member(
        cluster, topic, group, history, gate=gate, workers=4, error_policy=ErrorPolicy.stop()
    )
    member.thread.join(30)
    assert len(member.errors) == 1 and isinstance(member.errors[0], ProcessorStoppedError)
    assert member.errors[0].record.offset == poison.offset
    assert cluster.committed(topic, group).get(poison.partition, 0) <= poison.offset
    assert commit_violations(member.commits) == []
    assert order_violations(produced, history.completed) == []
