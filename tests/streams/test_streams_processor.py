"""Behaviour of the threaded KeyedProcessor: ordering, watermarks, backpressure, policies."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import pytest

from laneway.streams import (
    ErrorPolicy,
    KeyedProcessor,
    ProcessorClosedError,
    ProcessorStoppedError,
    Record,
)

pytestmark = pytest.mark.timeout(30)


class Acks:
    """Collects ack calls and checks they only ever grow per partition."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def __call__(self, partition: str, offset: int) -> None:
        with self.lock:
            self.calls.append((partition, offset))

    def last(self, partition: str) -> int | None:
        with self.lock:
            offsets = [o for p, o in self.calls if p == partition]
        return offsets[-1] if offsets else None


class Gates:
    """Per-item events that work waits on, so a test decides when each item finishes."""

    def __init__(self) -> None:
        self.events: dict[object, threading.Event] = defaultdict(threading.Event)
        self.started: list[object] = []
        self.lock = threading.Lock()

    def work(self, item: object) -> object:
        with self.lock:
            self.started.append(item)
            event = self.events[item]
        assert event.wait(10), f"item {item!r} never released"
        return item

    def release(self, item: object) -> None:
        with self.lock:
            event = self.events[item]
        event.set()

    def wait_started(self, item: object) -> None:
        deadline = time.monotonic() + 5
        while item not in self.started:
            assert time.monotonic() < deadline, f"{item!r} never started"
            time.sleep(0.005)


def test_same_key_items_complete_in_submit_order() -> None:
    seen: dict[str, list[int]] = defaultdict(list)

    def work(item: tuple[str, int]) -> None:
        time.sleep(0.0005 * (item[1] % 3))
        seen[item[0]].append(item[1])

    with KeyedProcessor(work, Acks(), workers=8) as processor:
        for offset in range(600):
            key = f"k{offset % 5}"
            processor.submit(key, (key, offset), "p", offset)
        assert processor.flush(10)
    for key, offsets in seen.items():
        assert offsets == sorted(offsets), key
    assert sum(map(len, seen.values())) == 600


def test_different_keys_run_in_parallel() -> None:
    both_running = threading.Barrier(2, timeout=5)

    def work(item: str) -> None:
        both_running.wait()  # only passes if the two keys run at the same time

    with KeyedProcessor(work, Acks(), workers=2) as processor:
        processor.submit("a", "a", "p", 0)
        processor.submit("b", "b", "p", 1)
        assert processor.flush(5)
    assert not both_running.broken


def test_same_key_never_runs_two_items_at_once() -> None:
    running = {"a": 0}
    overlaps = []

    def work(item: int) -> None:
        running["a"] += 1
        if running["a"] > 1:
            overlaps.append(item)
        time.sleep(0.001)
        running["a"] -= 1

    with KeyedProcessor(work, Acks(), workers=8) as processor:
        for offset in range(50):
            processor.submit("a", offset, "p", offset)
        assert processor.flush(5)
    assert overlaps == []


def test_ack_waits_for_the_gap_below_to_fill() -> None:
    gates, acks = Gates(), Acks()
    with KeyedProcessor(gates.work, acks, workers=3) as processor:
        for offset, key in enumerate("abc"):
            processor.submit(key, offset, "p", offset)
        gates.release(1)
        gates.release(2)
        time.sleep(0.1)
        assert acks.last("p") is None  # offset 0 is unfinished, so nothing may be acked
        gates.release(0)
        assert processor.flush(5)
    assert acks.calls == [("p", 2)]


def test_acks_are_tracked_per_partition() -> None:
    gates, acks = Gates(), Acks()
    with KeyedProcessor(gates.work, acks, workers=2) as processor:
        processor.submit("a", "x0", "x", 0)
        processor.submit("b", "y0", "y", 0)
        gates.release("y0")
        deadline = time.monotonic() + 5
        while acks.last("y") is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert acks.last("y") == 0 and acks.last("x") is None
        gates.release("x0")
        assert processor.flush(5)
    assert acks.last("x") == 0


def test_offsets_may_have_gaps_like_a_compacted_topic() -> None:
    acks = Acks()
    with KeyedProcessor(lambda item: None, acks, workers=2) as processor:
        for offset in (3, 7, 8, 20):
            processor.submit(f"k{offset}", offset, "p", offset)
        assert processor.flush(5)
    assert acks.last("p") == 20


def test_submit_blocks_at_max_in_flight_until_an_item_finishes() -> None:
    gates = Gates()
    with KeyedProcessor(gates.work, Acks(), max_in_flight=2, workers=4) as processor:
        processor.submit("a", "a", "p", 0)
        processor.submit("b", "b", "p", 1)
        with pytest.raises(TimeoutError):
            processor.submit("c", "c", "p", 2, timeout=0.1)
        unblocked = threading.Event()

        def submit_third() -> None:
            processor.submit("c", "c", "p", 2)
            unblocked.set()

        thread = threading.Thread(target=submit_third)
        thread.start()
        assert not unblocked.wait(0.1)
        gates.release("a")
        assert unblocked.wait(5)
        gates.release("b")
        gates.release("c")
        thread.join(5)
        assert processor.flush(5)


def test_backpressure_is_global_across_keys() -> None:
    gates = Gates()
    with KeyedProcessor(gates.work, Acks(), max_in_flight=3, workers=4) as processor:
        for offset in range(3):
            processor.submit("slow", offset, "p", offset)  # one key fills the whole budget
        with pytest.raises(TimeoutError):
            processor.submit("other", "other", "p", 3, timeout=0.1)
        for offset in range(3):
            gates.release(offset)
        processor.submit("other", "other", "p", 3, timeout=5)
        gates.release("other")
        assert processor.flush(5)


def test_duplicate_and_regressing_offsets_are_refused_without_running() -> None:
    runs: list[int] = []
    acks = Acks()
    with KeyedProcessor(runs.append, acks, workers=2) as processor:
        assert processor.submit("a", 5, "p", 5)
        assert not processor.submit("a", 5, "p", 5)  # duplicate
        assert not processor.submit("b", 3, "p", 3)  # regression
        assert processor.submit("b", 6, "p", 6)
        assert processor.flush(5)
        stats = processor.stats()
    assert sorted(runs) == [5, 6]
    assert stats.duplicates == 2 and stats.submitted == 2
    assert acks.last("p") == 6


def test_idle_keys_hold_no_state() -> None:
    with KeyedProcessor(lambda item: None, Acks(), workers=4) as processor:
        for offset in range(2000):
            processor.submit(f"key-{offset}", offset, "p", offset)
        assert processor.flush(5)
        stats = processor.stats()
    assert stats.active_keys == 0 and stats.in_flight == 0 and stats.done == 2000


def test_failing_item_is_retried_with_backoff_while_other_keys_continue() -> None:
    attempts: dict[object, list[float]] = defaultdict(list)
    finished: list[object] = []
    lock = threading.Lock()

    def work(item: str) -> None:
        with lock:
            attempts[item].append(time.monotonic())
            if item == "a0" and len(attempts[item]) < 3:
                raise RuntimeError("transient")
            finished.append(item)

    errors: list[tuple[Record[str, str, str], BaseException]] = []
    policy = ErrorPolicy.retry(3, backoff=0.05, backoff_factor=2)
    with KeyedProcessor(
        work, Acks(), on_error=lambda r, e: errors.append((r, e)), workers=2, error_policy=policy
    ) as processor:
        processor.submit("a", "a0", "p", 0)
        processor.submit("a", "a1", "p", 1)
        processor.submit("b", "b0", "p", 2)
        assert processor.flush(5)
        stats = processor.stats()
    tries = attempts["a0"]
    assert len(tries) == 3
    assert tries[1] - tries[0] >= 0.045 and tries[2] - tries[1] >= 0.095
    assert finished.index("b0") < finished.index("a0") < finished.index("a1")
    assert [r.attempt for r, _ in errors] == [1, 2]
    assert stats.failed == 2 and stats.retried == 2 and stats.done == 3


def test_skip_policy_acks_past_the_failed_item() -> None:
    acks = Acks()
    errors: list[Record[str, int, str]] = []

    def work(item: int) -> None:
        if item == 1:
            raise ValueError("poison")

    with KeyedProcessor(
        work,
        acks,
        on_error=lambda r, e: errors.append(r),
        workers=2,
        error_policy=ErrorPolicy.skip(),
    ) as processor:
        for offset in range(3):
            processor.submit("a", offset, "p", offset)
        assert processor.flush(5)
        stats = processor.stats()
    assert acks.last("p") == 2
    assert [r.offset for r in errors] == [1]
    assert stats.skipped == 1 and stats.done == 2


def test_stop_policy_halts_and_never_acks_the_failed_offset() -> None:
    acks = Acks()

    def work(item: int) -> None:
        if item == 2:
            raise ValueError("fatal")

    processor = KeyedProcessor(work, acks, workers=1, error_policy=ErrorPolicy.stop())
    for offset in range(5):
        processor.submit("a", offset, "p", offset)
    with pytest.raises(ProcessorStoppedError) as raised:
        processor.flush(5)
    assert raised.value.record.offset == 2
    assert isinstance(raised.value.__cause__, ValueError)
    with pytest.raises(ProcessorStoppedError):
        processor.submit("b", 9, "p", 9)
    assert acks.last("p") == 1
    assert processor.stats().done == 2
    processor.close()


def test_exception_in_on_done_counts_as_a_failure_of_the_item() -> None:
    acks = Acks()

    def on_done(record: Record[str, int, str], result: object) -> None:
        raise RuntimeError("downstream write failed")

    processor = KeyedProcessor(lambda item: item, acks, on_done=on_done, error_policy=ErrorPolicy.stop())
    processor.submit("a", 0, "p", 0)
    with pytest.raises(ProcessorStoppedError):
        processor.flush(5)
    assert acks.calls == []
    processor.close()


def test_on_done_receives_the_record_and_the_result() -> None:
    done: list[tuple[Record[str, int, str], object]] = []
    with KeyedProcessor(
        lambda item: item * 10, Acks(), on_done=lambda r, res: done.append((r, res))
    ) as processor:
        processor.submit("k", 4, "p", 7)
        assert processor.flush(5)
    assert done == [(Record("k", 4, "p", 7, 1), 40)]


def test_revoke_drops_queued_items_and_acks_the_final_watermark() -> None:
    gates, acks = Gates(), Acks()
    with KeyedProcessor(gates.work, acks, workers=2) as processor:
        processor.submit("a", "a0", "p", 0)
        processor.submit("a", "a1", "p", 1)  # queued behind a0
        processor.submit("b", "q0", "q", 0)
        gates.wait_started("a0")
        releaser = threading.Timer(0.1, gates.release, args=("a0",))
        releaser.start()
        finals = processor.revoke(["p"], timeout=5)
        releaser.join()
        gates.release("q0")
        assert processor.flush(5)
        stats = processor.stats()
    assert finals == {"p": 0}
    assert "a1" not in gates.started
    assert acks.last("p") == 0
    assert stats.discarded == 1


def test_revoke_abandons_a_running_item_after_the_deadline_and_never_acks_it() -> None:
    gates, acks = Gates(), Acks()
    processor = KeyedProcessor(gates.work, acks, workers=2)
    processor.submit("a", "a0", "p", 0)
    processor.submit("b", "b1", "p", 1)
    gates.release("b1")
    gates.wait_started("a0")
    finals = processor.revoke(["p"], timeout=0.1)
    gates.release("a0")
    assert processor.flush(5)
    assert finals == {"p": None}
    assert acks.calls == []  # b1 finished but a0 below it never did
    assert processor.stats().abandoned == 1
    processor.close()


def test_a_key_waits_for_its_abandoned_item_before_running_newer_work() -> None:
    gates = Gates()
    processor = KeyedProcessor(gates.work, Acks(), workers=2)
    processor.submit("a", "old", "p", 0)
    gates.wait_started("old")
    processor.revoke(["p"], timeout=0.05)
    processor.submit("a", "new", "p", 0)  # a fresh generation of p, redelivered
    time.sleep(0.1)
    assert "new" not in gates.started
    gates.release("old")
    gates.release("new")
    assert processor.flush(5)
    assert gates.started == ["old", "new"]
    processor.close()


def test_resubmitting_after_revoke_starts_a_fresh_generation() -> None:
    acks = Acks()
    with KeyedProcessor(lambda item: None, acks) as processor:
        processor.submit("a", 0, "p", 10)
        assert processor.flush(5)
        processor.revoke(["p"])
        assert processor.submit("a", 0, "p", 4)
        assert processor.flush(5)
    assert acks.calls == [("p", 10), ("p", 4)]


def test_close_without_drain_discards_queued_items() -> None:
    gates = Gates()
    processor = KeyedProcessor(gates.work, Acks(), workers=1)
    processor.submit("a", "a0", "p", 0)
    processor.submit("a", "a1", "p", 1)
    gates.wait_started("a0")
    threading.Timer(0.05, gates.release, args=("a0",)).start()
    processor.close(drain=False, timeout=5)
    assert gates.started == ["a0"]
    assert processor.stats().discarded == 1
    with pytest.raises(ProcessorClosedError):
        processor.submit("a", "a2", "p", 2)


def test_counters_describe_work_in_flight() -> None:
    gates = Gates()
    processor = KeyedProcessor(gates.work, Acks(), workers=1)
    processor.submit("a", "a0", "p", 0)
    processor.submit("a", "a1", "p", 1)
    gates.wait_started("a0")
    stats = processor.stats()
    assert (stats.submitted, stats.in_flight, stats.running, stats.active_keys) == (2, 2, 1, 1)
    gates.release("a0")
    gates.release("a1")
    assert processor.flush(5)
    stats = processor.stats()
    assert (stats.done, stats.in_flight, stats.running, stats.active_keys) == (2, 0, 0, 0)
    processor.close()


def test_error_policy_backoff_grows_and_is_capped() -> None:
    policy = ErrorPolicy.retry(5, backoff=1.0, backoff_factor=3.0, max_backoff=5.0, then="skip")
    decisions = [policy.decide(attempt) for attempt in range(1, 7)]
    assert [round(delay, 3) for _, delay in decisions[:5]] == [1.0, 3.0, 5.0, 5.0, 5.0]
    assert decisions[5][0].value == "skip"
    with pytest.raises(ValueError):
        ErrorPolicy(retries=-1)


def test_work_raising_system_exit_fails_the_item_without_killing_the_worker() -> None:
    def work(item: int) -> None:
        if item == 0:
            raise SystemExit(3)

    acks = Acks()
    with KeyedProcessor(work, acks, workers=1, error_policy=ErrorPolicy.skip()) as processor:
        processor.submit("a", 0, "p", 0)
        processor.submit("a", 1, "p", 1)
        assert processor.flush(5)
        stats = processor.stats()
    assert (stats.skipped, stats.done) == (1, 1)
    assert acks.last("p") == 1


def test_an_item_failing_while_its_partition_is_revoked_is_dropped_not_retried() -> None:
    attempts: list[str] = []
    started = threading.Event()

    def work(item: str) -> None:
        attempts.append(item)
        if item == "m0":
            started.set()
            time.sleep(0.2)
            raise RuntimeError("boom")

    policy = ErrorPolicy(retries=2, backoff=0.01, then="stop")
    with KeyedProcessor(work, Acks(), workers=2, error_policy=policy) as processor:
        processor.submit("k", "m0", "p0", 0)
        assert started.wait(5)
        assert processor.revoke(["p0"], timeout=5) == {"p0": None}
        time.sleep(0.2)  # a retry would have started by now
        assert processor.submit("k", "m1", "p1", 0)  # not stopped by a partition it gave up
        assert processor.flush(5)
        stats = processor.stats()
    assert attempts == ["m0", "m1"]
    assert (stats.failed, stats.retried, stats.discarded, stats.in_flight) == (1, 0, 0, 0)


def test_a_submit_that_raises_for_its_key_changes_nothing() -> None:
    acks = Acks()
    with KeyedProcessor(lambda item: None, acks, workers=2) as processor:
        processor.submit("a", "x0", "p", 0)
        with pytest.raises(TypeError):
            processor.submit(["unhashable"], "x1", "p", 1)  # type: ignore[arg-type]
        assert processor.submit("a", "x1", "p", 1)  # the offset was not taken
        assert processor.flush(5)
        assert processor.stats().in_flight == 0
    assert acks.last("p") == 1


def test_a_duplicate_offset_is_refused_at_once_when_the_processor_is_full() -> None:
    gates = Gates()
    with KeyedProcessor(gates.work, Acks(), max_in_flight=1, workers=1) as processor:
        processor.submit("a", "a0", "p", 0)
        started = time.monotonic()
        assert processor.submit("a", "again", "p", 0, timeout=1) is False
        assert time.monotonic() - started < 0.5
        gates.release("a0")


def test_revoking_a_partition_lets_the_key_run_its_item_of_another_partition_at_once() -> None:
    runs: list[str] = []

    def work(item: str) -> None:
        runs.append(item)
        if item == "a@p1":
            raise RuntimeError("retried in 30 s")

    policy = ErrorPolicy(retries=1, backoff=30, then="skip")
    with KeyedProcessor(work, Acks(), workers=2, error_policy=policy) as processor:
        processor.submit("A", "a@p1", "p1", 0)
        processor.submit("A", "a@p2", "p2", 0)  # waits behind a@p1's retry
        deadline = time.monotonic() + 5
        while processor.stats().waiting_retry == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        processor.revoke(["p1"], timeout=1)
        assert processor.flush(2)  # not after the 30 s backoff of the dropped item
    assert runs == ["a@p1", "a@p2"]
