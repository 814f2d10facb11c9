"""Behaviour of AsyncKeyedProcessor: the same contract on an asyncio event loop."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import pytest

from laneway.streams import (
    AsyncKeyedProcessor,
    ErrorPolicy,
    ProcessorClosedError,
    ProcessorStoppedError,
    Record,
)

pytestmark = pytest.mark.timeout(30)


def test_async_same_key_in_order_while_keys_overlap() -> None:
    seen: dict[str, list[int]] = defaultdict(list)
    running = 0
    peak = 0
    acks: list[tuple[str, int]] = []

    async def work(item: tuple[str, int]) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001 * (item[1] % 3))
        seen[item[0]].append(item[1])
        running -= 1

    async def main() -> None:
        processor: AsyncKeyedProcessor[str, tuple[str, int], str] = AsyncKeyedProcessor(
            work, lambda p, o: acks.append((p, o)), max_in_flight=50
        )
        for offset in range(300):
            key = f"k{offset % 10}"
            await processor.submit(key, (key, offset), "p", offset)
        assert await processor.flush(10)
        await processor.close()

    asyncio.run(main())
    for key, offsets in seen.items():
        assert offsets == sorted(offsets), key
    assert peak > 1
    assert acks[-1] == ("p", 299)
    assert [o for _, o in acks] == sorted({o for _, o in acks})


def test_async_submit_waits_at_max_in_flight() -> None:
    release = asyncio.Event()

    async def work(item: int) -> None:
        await release.wait()

    async def main() -> None:
        processor: AsyncKeyedProcessor[str, int, str] = AsyncKeyedProcessor(
            work, lambda p, o: None, max_in_flight=2
        )
        await processor.submit("a", 0, "p", 0)
        await processor.submit("b", 1, "p", 1)
        with pytest.raises(TimeoutError):
            await processor.submit("c", 2, "p", 2, timeout=0.05)
        release.set()
        await processor.submit("c", 2, "p", 2, timeout=5)
        assert await processor.flush(5)
        assert processor.stats().done == 3
        await processor.close()

    asyncio.run(main())


def test_async_retry_then_skip_acks_past_the_poison_item() -> None:
    attempts: dict[int, int] = defaultdict(int)
    errors: list[Record[str, int, str]] = []
    acks: list[int] = []

    async def work(item: int) -> None:
        attempts[item] += 1
        if item == 1:
            raise ValueError("poison")

    async def on_error(record: Record[str, int, str], exc: BaseException) -> None:
        errors.append(record)

    async def main() -> None:
        processor: AsyncKeyedProcessor[str, int, str] = AsyncKeyedProcessor(
            work,
            lambda p, o: acks.append(o),
            on_error=on_error,
            error_policy=ErrorPolicy.retry(2, backoff=0.01, then="skip"),
        )
        for offset in range(3):
            await processor.submit("a", offset, "p", offset)
        assert await processor.flush(5)
        assert processor.stats().skipped == 1
        await processor.close()

    asyncio.run(main())
    assert attempts == {0: 1, 1: 3, 2: 1}
    assert [r.attempt for r in errors] == [1, 2, 3]
    assert acks[-1] == 2


def test_async_stop_policy_raises_from_flush_and_submit() -> None:
    acks: list[int] = []

    async def work(item: int) -> None:
        if item == 1:
            raise KeyError(item)

    async def main() -> None:
        processor: AsyncKeyedProcessor[str, int, str] = AsyncKeyedProcessor(
            work, lambda p, o: acks.append(o), error_policy=ErrorPolicy.stop()
        )
        for offset in range(3):
            await processor.submit("a", offset, "p", offset)
        with pytest.raises(ProcessorStoppedError):
            await processor.flush(5)
        with pytest.raises(ProcessorStoppedError):
            await processor.submit("b", 5, "p", 5)
        await processor.close()

    asyncio.run(main())
    assert acks == [0]


def test_async_revoke_cancels_items_still_running_after_the_deadline() -> None:
    acks: list[tuple[str, int]] = []
    cancelled: list[int] = []

    async def work(item: int) -> None:
        try:
            await asyncio.sleep(0 if item else 60)
        except asyncio.CancelledError:
            cancelled.append(item)
            raise

    async def main() -> dict[str, int | None]:
        processor: AsyncKeyedProcessor[str, int, str] = AsyncKeyedProcessor(
            work, lambda p, o: acks.append((p, o))
        )
        await processor.submit("a", 0, "p", 0)  # hangs
        await processor.submit("b", 1, "p", 1)  # finishes, but sits above the hung one
        await asyncio.sleep(0.01)
        finals = await processor.revoke(["p"], timeout=0.05)
        assert processor.stats().in_flight == 0
        await processor.close()
        return finals

    finals = asyncio.run(main())
    assert cancelled == [0]
    assert finals == {"p": None}
    assert acks == []


def test_async_close_rejects_later_submits() -> None:
    async def work(item: int) -> None:
        return None

    async def main() -> None:
        processor: AsyncKeyedProcessor[str, int, str] = AsyncKeyedProcessor(work, lambda p, o: None)
        await processor.submit("a", 0, "p", 0)
        await processor.close()
        assert processor.stats().done == 1
        with pytest.raises(ProcessorClosedError):
            await processor.submit("a", 1, "p", 1)

    asyncio.run(main())


def test_async_concurrent_submitters_never_exceed_max_in_flight() -> None:
    peak = 0

    async def work(item: int) -> None:
        await asyncio.sleep(0.001)

    async def main() -> None:
        nonlocal peak
        processor: AsyncKeyedProcessor[str, int, int] = AsyncKeyedProcessor(
            work, lambda p, o: None, max_in_flight=3
        )

        async def submitter(partition: int) -> None:
            nonlocal peak
            for offset in range(20):
                await processor.submit(f"k{partition}", offset, partition, offset, timeout=5)
                peak = max(peak, processor.in_flight)

        await asyncio.gather(*(submitter(p) for p in range(10)))
        assert await processor.flush(5)
        assert processor.stats().done == 200
        await processor.close()

    asyncio.run(main())
    assert peak == 3


def test_async_an_item_failing_while_its_partition_is_revoked_is_dropped_not_retried() -> None:
    attempts: list[str] = []

    async def work(item: str) -> None:
        attempts.append(item)
        await asyncio.sleep(0.2)
        raise RuntimeError("boom")

    async def main() -> None:
        processor: AsyncKeyedProcessor[str, str, str] = AsyncKeyedProcessor(
            work, lambda p, o: None, error_policy=ErrorPolicy(retries=2, backoff=0.01, then="stop")
        )
        await processor.submit("k", "m0", "p0", 0)
        await asyncio.sleep(0.05)
        assert await processor.revoke(["p0"], timeout=5) == {"p0": None}
        await asyncio.sleep(0.2)
        assert processor.failure is None
        assert processor.stats().in_flight == 0
        await processor.close()

    asyncio.run(main())
    assert attempts == ["m0"]


def test_async_a_due_retry_waiting_for_a_slot_does_not_spin_the_loop() -> None:
    async def work(item: str) -> None:
        if item == "fails":
            raise RuntimeError("retried after 50 ms")
        await asyncio.sleep(0.3)

    async def main() -> int:
        policy = ErrorPolicy(retries=1, backoff=0.05, then="skip")
        processor: AsyncKeyedProcessor[str, str, str] = AsyncKeyedProcessor(
            work, lambda p, o: None, concurrency=1, error_policy=policy
        )
        fired = 0
        on_timer = processor._on_timer

        def counted() -> None:
            nonlocal fired
            fired += 1
            on_timer()

        processor._on_timer = counted  # type: ignore[method-assign]
        await processor.submit("a", "fails", "p", 0)
        await asyncio.sleep(0.01)  # it has failed; its retry is due in 50 ms ...
        await processor.submit("b", "slow", "p", 1)  # ... while this holds the only slot
        await asyncio.sleep(0.25)
        await processor.close()
        return fired

    assert asyncio.run(main()) < 10  # it fired tens of thousands of times before


def test_async_a_retry_falling_due_while_the_pump_runs_still_gets_its_timer() -> None:
    attempts: list[str] = []

    async def work(item: str) -> None:
        attempts.append(item)
        if len(attempts) == 1:
            raise RuntimeError("the first attempt fails; retried in 10 ms")

    async def main() -> bool:
        processor: AsyncKeyedProcessor[str, str, str] = AsyncKeyedProcessor(
            work, lambda p, o: None, error_policy=ErrorPolicy(retries=2, backoff=0.01, then="skip")
        )
        core, take = processor._core, processor._core.take

        def slow_take(now: float) -> object:
            job = take(now)
            if job is None and core.delayed:
                time.sleep(0.03)  # preempted here: the retry falls due before the pump arms its timer
            return job

        core.take = slow_take  # type: ignore[method-assign,assignment]
        await processor.submit("k", "x", "p", 0)
        flushed = await processor.flush(1.0)
        await processor.close(drain=False)
        return flushed

    assert asyncio.run(main()) and attempts == ["x", "x"]
