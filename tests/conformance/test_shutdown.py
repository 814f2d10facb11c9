"""SPEC §5: graceful stop finishes running jobs within the grace period and gives the rest
back without spending an attempt."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import laneway
from laneway._records import Status

from .conftest import wait_for


@pytest.mark.parametrize("handler", ["sync", "async"])
def test_stop_lets_running_jobs_finish_and_releases_unstarted_batch_jobs(
    app: laneway.App, handler: str
) -> None:
    started = threading.Event()
    finished: list[int] = []

    if handler == "sync":

        @app.task(name="slow")
        def slow(i: int) -> None:
            started.set()
            time.sleep(0.3)
            finished.append(i)

    else:  # runs on the event loop, with no executor thread

        @app.task(name="slow")
        async def slow(i: int) -> None:
            started.set()
            await asyncio.sleep(0.3)
            finished.append(i)

    jobs = [slow.options(lane="x").enqueue(i) for i in range(3)]
    w = app.worker(concurrency=3, batch=3, grace_s=5, idle_wait_s=0.05)
    t = threading.Thread(target=w.run)
    t.start()
    assert started.wait(5)
    w.stop()
    t.join(10)
    assert finished == [0]
    assert jobs[0].refresh().status is Status.SUCCEEDED
    for job in jobs[1:]:
        rec = job.refresh().record
        assert rec is not None and rec.status is Status.QUEUED and rec.attempts == 0


def test_jobs_still_running_after_the_grace_period_are_released_without_an_attempt(app: laneway.App) -> None:
    started = threading.Event()

    @app.task(name="stuck")
    def stuck() -> None:
        started.set()
        time.sleep(3)

    job = stuck.enqueue()
    w = app.worker(concurrency=1, grace_s=0.3, idle_wait_s=0.05)
    t = threading.Thread(target=w.run)
    t.start()
    assert started.wait(5)
    begun = time.monotonic()
    w.stop()
    t.join(10)
    assert time.monotonic() - begun < 0.3 + 2
    rec = job.refresh().record
    assert rec is not None and rec.status is Status.QUEUED and rec.attempts == 0


def test_released_work_is_picked_up_by_the_next_worker(app: laneway.App) -> None:
    done: list[int] = []

    @app.task(name="t")
    def t(i: int) -> None:
        time.sleep(0.01)
        done.append(i)

    t.options(lane="x").enqueue_many([((i,), {}) for i in range(20)])
    w = app.worker(concurrency=2, batch=5, grace_s=2, idle_wait_s=0.05)
    th = threading.Thread(target=w.run)
    th.start()
    wait_for(lambda: len(done) >= 3, 5, "some progress")
    w.stop()
    th.join(10)
    app.worker(concurrency=2, batch=5, idle_wait_s=0.05).run(burst=True)
    assert done == list(range(20))
