"""A worker's default slots follow where its tasks run: 16 threads, or 64 coroutines when
every task runs on the event loop. A Postgres pool grows to fit a worker's slots."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import laneway
from laneway import _constants as C
from tests.conftest import drop_backend, make_backend


def _app(**kwargs: Any) -> laneway.App:
    return laneway.App("memory://", namespace="defaults", **kwargs)


def test_a_worker_with_a_sync_task_defaults_to_16_slots() -> None:
    app = _app()

    @app.task
    def work() -> None: ...

    assert app.worker().concurrency == C.CONCURRENCY == 16


def test_a_worker_whose_tasks_are_all_async_defaults_to_64_slots() -> None:
    app = _app()

    @app.task
    async def work() -> None: ...

    @app.task
    async def more() -> None: ...

    assert app.worker().concurrency == C.CONCURRENCY_ASYNC == 64


def test_one_sync_task_among_async_ones_keeps_16_slots() -> None:
    app = _app()

    @app.task
    async def work() -> None: ...

    @app.task
    def blocking() -> None: ...

    assert app.worker().concurrency == C.CONCURRENCY


def test_an_async_transactional_task_keeps_16_slots_since_it_runs_in_a_thread() -> None:
    app = _app()

    @app.task
    async def work() -> None: ...

    @app.task(transactional=True)
    async def booked(connection: Any) -> None: ...

    assert app.worker().concurrency == C.CONCURRENCY


def test_a_middleware_layer_without_acall_keeps_16_slots_since_async_jobs_then_use_threads() -> None:
    def sync_only(job: laneway.Job, call_next: Any) -> Any:
        return call_next(job)

    app = _app(middleware=[sync_only])

    @app.task
    async def work() -> None: ...

    assert app.worker().concurrency == C.CONCURRENCY


def test_laneways_own_tasks_do_not_change_an_async_apps_default() -> None:
    app = _app()

    @app.task
    async def work() -> None: ...

    app.lane("orders").send({"id": 1})  # registers the built-in laneway.message task

    assert C.MESSAGE_TASK in app.tasks
    assert app.worker().concurrency == C.CONCURRENCY_ASYNC


def test_an_app_with_no_tasks_defaults_to_16_slots() -> None:
    assert _app().worker().concurrency == C.CONCURRENCY


def test_an_explicit_concurrency_wins_over_either_default() -> None:
    app = _app()

    @app.task
    async def work() -> None: ...

    assert app.worker(concurrency=3).concurrency == 3


def test_a_postgres_pool_grows_to_a_workers_slots_plus_its_own_connections(tmp_path: Path) -> None:
    from laneway.backends.postgres import PostgresBackend
    from laneway.backends.postgres._backend import WORKER_CONNECTIONS

    backend = make_backend("postgres", tmp_path)
    assert isinstance(backend, PostgresBackend)
    try:
        assert backend._pool.max_size == 16
        backend.reserve(8)
        assert backend._pool.max_size == 16  # room already
        backend.reserve(40)
        assert backend._pool.max_size == 40 + WORKER_CONNECTIONS
        backend.reserve(16)
        assert backend._pool.max_size == 40 + WORKER_CONNECTIONS  # never shrunk
    finally:
        drop_backend(backend)


def test_a_worker_reserves_its_slots_on_the_backend_when_it_runs(tmp_path: Path) -> None:
    app = laneway.App(f"sqlite:///{tmp_path / 'q.db'}", namespace="reserve")
    seen: list[int] = []
    app.backend.reserve = seen.append  # type: ignore[method-assign]

    @app.task
    def work() -> None: ...

    app.worker(concurrency=5).run(burst=True)
    assert seen == [5]


def test_a_worker_of_async_tasks_starts_a_few_executor_threads_not_one_per_slot() -> None:
    app = _app()
    seen: list[int] = []

    def executors() -> int:  # other tests' workers may leave daemon threads behind: count ours
        return sum(1 for t in threading.enumerate() if t.name.startswith("laneway-exec-"))

    before = executors()

    @app.task
    async def work() -> None:
        seen.append(executors() - before)

    work.enqueue()
    worker = app.worker()
    worker.run(burst=True)
    assert worker.concurrency == C.CONCURRENCY_ASYNC
    assert seen and seen[0] <= C.LOOP_EXECUTORS  # 4, not one per slot (64)


def test_a_job_of_an_unknown_task_still_gets_a_thread_on_an_async_worker() -> None:
    app = _app()

    @app.task
    async def work() -> None: ...

    ghost = laneway.App(backend=app.backend)  # the same queues, but not the same tasks

    @ghost.task(name="ghost", max_attempts=1)
    def gone() -> None: ...

    gone.enqueue()
    stats = app.worker().run(burst=True)
    assert stats.dead == 1  # run (as a failed attempt) in an executor thread, not lost
