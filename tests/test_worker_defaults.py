"""A worker's default slots follow what its tasks are: threads for sync, coroutines for async."""

from __future__ import annotations

import laneway
from laneway import _constants as C


def _app() -> laneway.App:
    return laneway.App("memory://", namespace="defaults")


def test_a_worker_of_sync_tasks_gets_one_thread_slot_per_default_concurrency() -> None:
    app = _app()

    @app.task
    def work() -> None: ...

    assert app.worker().concurrency == C.CONCURRENCY == 16


def test_a_worker_whose_tasks_are_all_async_gets_the_larger_coroutine_default() -> None:
    app = _app()

    @app.task
    async def work() -> None: ...

    @app.task
    async def more() -> None: ...

    assert app.worker().concurrency == C.CONCURRENCY_ASYNC == 64


def test_one_sync_task_among_async_ones_keeps_the_thread_default() -> None:
    app = _app()

    @app.task
    async def work() -> None: ...

    @app.task
    def blocking() -> None: ...

    assert app.worker().concurrency == C.CONCURRENCY


def test_an_app_sending_lane_messages_keeps_the_thread_default_of_their_sync_task() -> None:
    app = _app()
    app.lane("orders").send({"id": 1})

    assert app.worker().concurrency == C.CONCURRENCY


def test_an_explicit_concurrency_wins_over_either_default() -> None:
    app = _app()

    @app.task
    async def work() -> None: ...

    assert app.worker(concurrency=3).concurrency == 3
