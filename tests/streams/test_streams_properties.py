"""Property-based checks: random keys and completion orders never break order or watermarks."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from laneway.streams import ErrorPolicy, KeyedProcessor
from laneway.streams._core import Core, Job

KEYS = ["a", "b", "c", "d", "e"]
PARTITIONS = [0, 1, 2]


class Model:
    """Reference bookkeeping that the core's behaviour is checked against."""

    def __init__(self) -> None:
        self.core: Core[str, int, int] = Core(ErrorPolicy.retry(1, backoff=0.0, then="skip"))
        self.clock = 0.0
        self.next_offset = dict.fromkeys(PARTITIONS, 0)
        self.submitted: dict[int, list[int]] = defaultdict(list)  # current generation only
        self.finished: dict[int, set[int]] = defaultdict(set)
        self.acked: dict[int, int] = {}
        self.key_submits: dict[str, list[int]] = defaultdict(list)  # item ids in submit order
        self.key_taken: dict[str, list[int]] = defaultdict(list)
        self.running: list[Job[str, int, int]] = []
        self.item = 0

    def submit(self, key: str, partition: int, gap: int) -> None:
        offset = self.next_offset[partition] + gap
        self.next_offset[partition] = offset + 1
        self.item += 1
        accepted, _ = self.core.add(key, self.item, partition, offset)
        assert accepted
        self.submitted[partition].append(offset)
        self.key_submits[key].append(self.item)

    def take(self) -> None:
        self.clock += 1
        job = self.core.take(self.clock)
        if job is None:
            return
        assert all(r.key != job.key for r in self.running), "two items of one key running"
        self.running.append(job)
        taken = self.key_taken[job.key]
        if not taken or taken[-1] != job.item:  # a retry re-takes the same item
            taken.append(job.item)

    def complete(self, index: int, fail: bool) -> None:
        job = self.running.pop(index % len(self.running))
        final_attempt = job.attempt > 1  # the policy allows one retry, then skips
        if fail:
            _, ack = self.core.fail(job, RuntimeError("x"), self.clock)
        else:
            ack = self.core.succeed(job)
        if job.part.live and (not fail or final_attempt):
            self.finished[job.partition].add(job.offset)  # done, or skipped after its retry
        if ack is not None:
            self.check_ack(ack[1], ack[2])

    def revoke(self, partition: int) -> None:
        detached = self.core.detach([partition])
        self.core.seal(detached)
        self.submitted.pop(partition, None)
        self.finished.pop(partition, None)
        self.acked.pop(partition, None)
        self.next_offset[partition] = 0  # redelivery may restart anywhere in a new generation

    def check_ack(self, partition: int, offset: int) -> None:
        assert offset > self.acked.get(partition, -1), "ack went backwards"
        self.acked[partition] = offset
        offsets, finished = self.submitted[partition], self.finished[partition]
        contiguous = None
        for o in offsets:
            if o not in finished:
                break
            contiguous = o
        assert offset == contiguous, f"ack {offset} but contiguous watermark is {contiguous}"

    def drain(self) -> None:
        for _ in range(10_000):
            if not self.core.in_flight:
                break
            self.take()
            if self.running:
                self.complete(0, fail=False)
        assert self.core.in_flight == 0 and not self.core.keys


def _check_key_order(model: Model) -> None:
    for key, taken in model.key_taken.items():
        order = {item: i for i, item in enumerate(model.key_submits[key])}
        positions = [order[item] for item in taken]
        assert positions == sorted(positions), f"key {key} ran out of submit order"


@pytest.mark.timeout(120)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_interleavings_keep_key_order_and_exact_monotonic_watermarks(data: st.DataObject) -> None:
    model = Model()
    steps = data.draw(st.integers(10, 120), label="steps")
    for _ in range(steps):
        op = data.draw(st.sampled_from(["submit", "submit", "take", "complete", "revoke"]))
        if op == "submit":
            key = data.draw(st.sampled_from(KEYS))
            partition = data.draw(st.sampled_from(PARTITIONS))
            model.submit(key, partition, data.draw(st.integers(0, 2)))
        elif op == "take":
            model.take()
        elif op == "complete" and model.running:
            model.complete(data.draw(st.integers(0, 50)), data.draw(st.booleans()))
        elif op == "revoke" and data.draw(st.integers(0, 9)) == 0:
            model.revoke(data.draw(st.sampled_from(PARTITIONS)))
    model.drain()
    _check_key_order(model)
    for partition, offsets in model.submitted.items():
        if offsets:
            assert model.acked[partition] == offsets[-1]


@pytest.mark.timeout(120)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=st.lists(
        st.tuples(st.integers(0, 7), st.integers(0, 2), st.integers(0, 3)), min_size=1, max_size=60
    ),
    workers=st.integers(1, 6),
    max_in_flight=st.integers(1, 20),
)
def test_threads_with_random_completion_order_hold_key_order_and_ack_only_finished_work(
    items: list[tuple[int, int, int]], workers: int, max_in_flight: int
) -> None:
    """Each item sleeps a random 0-1.5 ms, so items of different keys finish in random order."""
    lock = threading.Lock()
    done: set[tuple[int, int]] = set()
    ran: dict[int, list[int]] = defaultdict(list)
    submitted: dict[int, list[int]] = defaultdict(list)
    acked: dict[int, list[int]] = defaultdict(list)
    problems: list[str] = []

    def work(item: tuple[int, int, int, int]) -> None:
        index, key, partition, offset = item
        time.sleep(items[index][2] * 0.0005)
        with lock:
            ran[key].append(index)
            done.add((partition, offset))

    def ack(partition: int, offset: int) -> None:
        with lock:
            if acked[partition] and offset <= acked[partition][-1]:
                problems.append(f"ack {offset} not above {acked[partition][-1]}")
            unfinished = [o for o in submitted[partition] if o <= offset and (partition, o) not in done]
            if unfinished:
                problems.append(f"ack {offset} on {partition} before {unfinished} finished")
            acked[partition].append(offset)

    processor = KeyedProcessor(work, ack, max_in_flight=max_in_flight, workers=workers)
    for index, (key, partition, _) in enumerate(items):
        offset = len(submitted[partition])
        with lock:
            submitted[partition].append(offset)
        processor.submit(key, (index, key, partition, offset), partition, offset)
    assert processor.flush(30)
    processor.close()
    assert problems == []
    for key, indexes in ran.items():
        assert indexes == sorted(indexes), f"key {key} out of order"
    assert sum(map(len, ran.values())) == len(items)
    for partition, offsets in submitted.items():
        assert acked[partition][-1] == offsets[-1]
