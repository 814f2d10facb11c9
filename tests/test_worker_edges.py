"""Worker and runner edges that need no particular backend: a second Ctrl-C, async runs
abandoned at shutdown, async handlers behind a plain decorator, and the testing helpers."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import laneway
from laneway.testing import assert_enqueued, enqueued, memory_app
from tests.support.workers import abandon_async_runs


def test_a_second_ctrl_c_ends_the_grace_period_at_once() -> None:
    app = memory_app()

    @app.task(name="slow")
    def slow() -> None:
        time.sleep(4)

    job = slow.enqueue()
    worker = app.worker(concurrency=1, grace_s=10, idle_wait_s=0.05)

    def press_twice() -> None:
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=press_twice, daemon=True).start()
    started = time.monotonic()
    worker.run()  # in the main thread, so it installs its signal handlers
    assert time.monotonic() - started < 3  # not the job's 4 s, nor the 10 s grace
    assert job.refresh().status is laneway.Status.QUEUED  # released, its attempt not spent


def test_a_job_released_after_the_grace_period_is_counted_and_told_to_listeners() -> None:
    app = memory_app()
    finished: list[tuple[str, bool]] = []

    class Listener:
        def on_claim(self, records: object) -> None: ...

        def on_finish(self, outcome: Any, accepted: bool) -> None:
            finished.append((outcome.verdict.value, accepted))

    @app.task(name="slow")
    def slow() -> None:
        time.sleep(2)

    job = slow.enqueue()
    worker = app.worker(concurrency=1, grace_s=0.1, idle_wait_s=0.05, listener=Listener())
    thread = threading.Thread(target=worker.run)
    thread.start()
    time.sleep(0.3)
    worker.stop()
    thread.join(10)
    assert job.refresh().status is laneway.Status.QUEUED
    assert worker.stats.released == 1  # was 0: the release skipped the worker's count
    assert finished[:1] == [("release", True)]  # metrics' laneway_jobs_released_total listens here


def test_an_async_run_abandoned_at_shutdown_fires_no_hooks() -> None:
    app = memory_app()
    fired: list[str] = []

    @app.task(
        name="waits",
        max_attempts=1,
        error=lambda job, exc: fired.append("error"),
        failure=lambda job: fired.append("failure"),
        after=lambda job: fired.append("after"),
    )
    async def waits() -> None:
        await asyncio.sleep(5)

    job = waits.enqueue()
    abandon_async_runs(app)
    assert job.refresh().status is laneway.Status.QUEUED
    assert fired == []  # the job was released, not failed


def _logged(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


def test_an_async_handler_behind_a_sync_decorator_is_awaited() -> None:
    app = memory_app()

    @app.task(name="doubled")
    @_logged
    async def doubled(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    job = doubled.enqueue(21)
    app.run_until_idle()
    assert job.result(timeout=1) == 42


def test_testing_helpers_compare_calls_as_stored_and_accept_bound_tasks() -> None:
    app = memory_app()

    @app.task(name="t")
    def t(point: object, tags: object = None) -> None: ...

    t.enqueue((1, 2), tags={"a": (3,)})
    assert assert_enqueued(app, t, (1, 2), tags={"a": (3,)})  # tuples are stored as lists
    assert len(enqueued(app, t.options(queue="default"))) == 1


def test_a_timeout_firing_inside_laneways_own_work_is_raised_when_that_work_ends() -> None:
    import pytest

    from laneway._timeouts import Watchdog, shielded

    watchdog = Watchdog()
    steps: list[str] = []
    alarm = watchdog.arm(0.05)
    with pytest.raises(laneway.JobTimeout):
        with shielded():
            time.sleep(0.3)  # the alarm fires meanwhile
            sum(range(10_000))  # bytecodes: unshielded, the exception would land here
            steps.append("finished")
    assert steps == ["finished"]
    assert watchdog.disarm(alarm)  # it did fire
    with shielded():  # and nothing is left pending for the thread's next job
        time.sleep(0.05)


def test_a_handler_that_caught_its_timeout_can_still_enqueue_without_a_second_one(tmp_path: Any) -> None:
    app = laneway.App(f"sqlite:///{tmp_path / 't.db'}", namespace="t")
    log: list[str] = []

    @app.task(name="cleanup")
    def cleanup() -> None: ...

    @app.task(name="slow", timeout=0.2, max_attempts=1)
    def slow() -> None:
        try:
            while True:
                time.sleep(0.01)
        except laneway.JobTimeout:
            try:
                cleanup.enqueue()  # laneway's own work, shielded: it must not raise it again
                log.append("enqueued")
            except laneway.JobTimeout:
                log.append("raised again")
            raise

    slow.enqueue()
    app.worker(concurrency=1, idle_wait_s=0.05).run(burst=True)
    assert log == ["enqueued"]
    assert [j.task for j in app.backend.list_jobs()].count("cleanup") == 1  # stored once
    app.close()
