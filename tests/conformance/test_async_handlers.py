"""``async def`` handlers run as asyncio tasks on the worker's event loop, with no executor
thread of their own, and keep every rule sync handlers keep: lane order, retries, the
middleware stack, graceful stop."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any

import laneway
from laneway._records import Status
from laneway.backends import Backend

from .conftest import Trace, Workers, drain, wait_for


def test_async_handlers_run_on_the_event_loop_thread_concurrently(app: laneway.App) -> None:
    threads: list[str] = []

    @app.task(name="nap")
    async def nap() -> None:
        threads.append(threading.current_thread().name)
        await asyncio.sleep(0.4)

    for _ in range(8):
        nap.enqueue()
    start = time.monotonic()
    stats = drain(app, concurrency=8)
    assert stats.succeeded == 8
    assert set(threads) == {"laneway-async"}
    assert time.monotonic() - start < 0.4 * 8 / 2  # overlapped, not one after another


def test_async_lane_jobs_run_one_at_a_time_in_send_order_across_workers(
    app: laneway.App, trace: Trace, workers: Workers
) -> None:
    @app.task(name="astep")
    async def astep(lane: int, seq: int) -> None:
        trace.add("start", lane, seq)
        await asyncio.sleep(random.uniform(0, 0.003))
        trace.add("end", lane, seq)

    for seq in range(15):
        for lane in range(6):
            astep.options(lane=f"L{lane}").enqueue(lane, seq)
    workers.start(app, concurrency=4, batch=3)
    workers.start(app, concurrency=4)
    wait_for(lambda: len(trace.of("end")) == 90, 30, "90 jobs")
    trace.assert_lanes_serial()
    for lane in range(6):
        assert [s for ln, s in trace.of("start") if ln == lane] == list(range(15))


def test_an_async_retry_in_a_lane_batch_gives_back_the_rest_and_order_holds(
    app: laneway.App, trace: Trace, workers: Workers
) -> None:
    failed: set[int] = set()

    @app.task(name="aflaky", max_attempts=3)
    async def aflaky(seq: int) -> None:
        trace.add("start", "x", seq)
        try:
            if seq == 2 and seq not in failed:
                failed.add(seq)
                raise RuntimeError("first attempt fails")
        finally:
            trace.add("end", "x", seq)

    jobs = [aflaky.options(lane="x").enqueue(i) for i in range(6)]
    w = workers.start(app, concurrency=6, batch=6)  # one claim takes the whole lane
    wait_for(lambda: len(trace.of("end")) == 7, 10, "6 jobs and one retry")
    assert [s for _, s in trace.of("start")] == [0, 1, 2, 2, 3, 4, 5]
    wait_for(lambda: w.stats.succeeded == 6, 5, "the last ack")
    assert w.stats.retried == 1
    assert w.stats.released == 3  # 3, 4 and 5 went back when 2 asked for a retry
    for job in jobs:
        assert job.refresh().status is Status.SUCCEEDED


def test_a_layer_with_an_async_form_wraps_async_handlers_on_the_loop(backend: Backend) -> None:
    seen: list[str] = []

    class Both:
        def __call__(self, job: laneway.Job, call_next: Any) -> Any:
            seen.append("sync")
            return call_next(job)

        async def acall(self, job: laneway.Job, call_next: Any) -> Any:
            seen.append(f"async>{threading.current_thread().name}")
            value = await call_next(job)
            seen.append(f"<async:{value}")
            return value

    app = laneway.App(backend=backend, middleware=[Both()])

    @app.task(name="a")
    async def a(x: int) -> int:
        job = laneway.current_job()
        assert job is not None and job.args == [x]
        return x + 1

    @app.task(name="s")
    def s() -> None: ...

    job = a.enqueue(1)
    drain(app)
    assert job.result(timeout=5) == 2
    assert seen == ["async>laneway-async", "<async:2"]
    s.enqueue()
    drain(app)
    assert seen[-1] == "sync"  # sync handlers keep the sync form


def test_a_layer_without_an_async_form_still_wraps_async_handlers(backend: Backend) -> None:
    seen: list[str] = []

    def sync_only(job: laneway.Job, call_next: Any) -> Any:
        seen.append(f"layer:{threading.current_thread().name.rstrip('0123456789')}")
        value = call_next(job)
        seen.append(f"value:{value}")
        return value

    app = laneway.App(backend=backend, middleware=[sync_only])

    @app.task(name="a")
    async def a(x: int) -> int:
        seen.append(f"run:{threading.current_thread().name}")
        return x * 3

    job = a.enqueue(2)
    drain(app)
    assert job.result(timeout=5) == 6
    # the sync layer runs in an executor thread, which waits while the loop runs the handler
    assert seen == ["layer:laneway-exec-", "run:laneway-async", "value:6"]


def test_async_hooks_errors_and_timeouts_give_the_same_verdicts_as_sync(
    app: laneway.App, workers: Workers
) -> None:
    calls: dict[str, list[str]] = {"slow": [], "fail": []}

    def note(event: str) -> Any:
        return lambda job, *exc: calls[job.args[0]].append(
            f"{event}:{type(exc[0]).__name__}" if exc else event
        )

    @app.task(
        name="abad",
        max_attempts=2,
        timeout=0.2,
        before=note("before"),
        error=note("error"),
        failure=note("failure"),
        after=note("after"),
    )
    async def abad(kind: str) -> None:
        if kind == "slow":
            await asyncio.sleep(5)
        raise laneway.Fail("no")

    slow, failing = abad.enqueue("slow"), abad.enqueue("fail")
    workers.start(app, concurrency=1)
    wait_for(lambda: slow.refresh().status is Status.DEAD, 10, "the slow job's second timeout")
    assert "JobTimeout" in (slow.error or "")
    wait_for(lambda: failing.refresh().status is Status.DEAD, 10, "the failing job")  # it may run last
    assert "no" in (failing.error or "")
    assert calls["slow"] == [
        *["before", "error:JobTimeout", "after"],
        *["before", "error:JobTimeout", "failure", "after"],
    ]
    assert calls["fail"] == ["before", "error:Fail", "failure", "after"]
