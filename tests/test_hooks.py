"""Hooks on the paths that leave the handler early or late: a failing class constructor,
and the commit of a transactional task."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

import laneway
from laneway.testing import memory_app


def test_a_failing_class_constructor_calls_the_error_hook_on_each_attempt() -> None:
    calls: list[Any] = []
    app = memory_app(backoff_s=0.0, backoff_max_s=0.0)

    @app.task(
        name="ctor",
        max_attempts=2,
        error=lambda job, exc: calls.append(("error", type(exc).__name__)),
        failure=lambda job: calls.append(("failure",)),
    )
    class Ctor:
        def __init__(self, x: int) -> None:
            raise KeyError("constructor failed")

        def process(self) -> None: ...

    Ctor.enqueue(1)
    while app.run_until_idle():
        pass

    assert calls == [("error", "KeyError"), ("error", "KeyError"), ("failure",)]


def test_a_failing_constructor_of_an_async_class_task_calls_the_error_hook_on_the_loop() -> None:
    calls: list[Any] = []
    app = memory_app(backoff_s=0.0, backoff_max_s=0.0)

    @app.task(name="actor", max_attempts=1, error=lambda job, exc: calls.append(type(exc).__name__))
    class ACtor:
        def __init__(self) -> None:
            raise KeyError("constructor failed")

        async def process(self) -> None: ...

    job = ACtor.enqueue()
    worker = app.worker(idle_wait_s=0.01)
    assert worker._runner.runs_on_loop([app.backend.get_job(job.id)])  # arun, not run
    worker.run(burst=True)

    assert job.refresh().status is laneway.Status.DEAD
    assert calls == ["KeyError"]


@pytest.fixture
def sqlite_app(tmp_path: Path) -> laneway.App:
    app = laneway.App(f"sqlite:///{tmp_path / 'hooks.db'}", namespace="hooks")
    with sqlite3.connect(tmp_path / "hooks.db") as conn:
        conn.execute("CREATE TABLE side (x)")
    return app


def rows(app: laneway.App) -> int:
    path = app.url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM side").fetchone()[0])


def test_the_success_hook_of_a_transactional_task_runs_after_the_commit(sqlite_app: laneway.App) -> None:
    app = sqlite_app
    seen: list[Any] = []

    @app.task(
        name="tx",
        transactional=True,
        after=lambda job: seen.append(("after", rows(app))),
        success=lambda job: seen.append(("success", rows(app))),  # read from another connection
    )
    def tx(connection: Any = None) -> None:
        connection.execute("INSERT INTO side VALUES (1)")

    job = tx.enqueue()
    app.run_until_idle()

    assert job.refresh().status is laneway.Status.SUCCEEDED
    assert seen == [("after", 0), ("success", 1)]  # after: in the transaction; success: committed


def test_a_transactional_completion_refused_at_commit_calls_error_not_success(
    sqlite_app: laneway.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = sqlite_app
    seen: list[Any] = []

    @app.task(
        name="tx",
        transactional=True,
        after=lambda job: seen.append("after"),
        success=lambda job: seen.append("success"),
        error=lambda job, exc: seen.append(("error", type(exc).__name__)),
    )
    def tx(connection: Any = None) -> None:
        connection.execute("INSERT INTO side VALUES (1)")

    tx.enqueue()
    backend = app.backend
    monkeypatch.setattr(backend, "finish", lambda outcomes, connection=None: [False] * len(outcomes))
    app.run_until_idle()

    assert rows(app) == 0  # rolled back: the job will run again
    assert seen == ["after", ("error", "LeaseLost")]
