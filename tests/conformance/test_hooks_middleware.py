"""SPEC §5: class jobs, hooks, the two middleware stacks, priority_map, exception_reporter."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import laneway
from laneway.backends import Backend

from .conftest import drain


def test_class_task_runs_process_with_its_hooks_in_order(app: laneway.App) -> None:
    calls: list[str] = []

    @app.task(name="Resize")
    class Resize:
        def __init__(self, image: int) -> None:
            self.image = image

        def enqueue(self, job: laneway.Job) -> None:
            calls.append(f"enqueue:{job.args[0]}")

        def before(self, job: laneway.Job) -> None:
            calls.append("before")

        def process(self) -> int:
            calls.append(f"process:{self.image}")
            return self.image * 2

        def success(self, job: laneway.Job) -> None:
            calls.append("success")

        def after(self, job: laneway.Job) -> None:
            calls.append("after")

    job = Resize.enqueue(7)
    drain(app)
    assert job.result(timeout=5) == 14
    assert calls == ["enqueue:7", "before", "process:7", "after", "success"]


def test_class_task_takes_the_hooks_it_lacks_as_keywords(app: laneway.App) -> None:
    calls: list[str] = []

    @app.task(
        name="Charge",
        max_attempts=1,
        enqueue=lambda job: calls.append("kw enqueue"),
        error=lambda job, exc: calls.append("kw error"),
        failure=lambda job: calls.append("kw failure"),
    )
    class Charge:
        def process(self) -> None:
            raise RuntimeError("declined")

        def failure(self, job: laneway.Job) -> None:  # its own hook wins over the keyword
            calls.append("own failure")

    Charge.enqueue()
    drain(app)
    assert calls == ["kw enqueue", "kw error", "own failure"]


def test_an_enqueue_hook_that_raises_is_logged_and_the_job_stays_enqueued(
    app: laneway.App, caplog: pytest.LogCaptureFixture
) -> None:
    built: list[int] = []

    @app.task(name="Picky")
    class Picky:  # no enqueue hook: the producer never builds one
        def __init__(self, n: int) -> None:
            built.append(n)

        def process(self) -> None: ...

    def broken(job: laneway.Job) -> None:
        raise RuntimeError("hook bug")

    @app.task(name="hooked", enqueue=broken)
    def hooked() -> None: ...

    Picky.enqueue(1)
    job = hooked.enqueue()  # no exception: the job is stored, a retry would store it twice
    assert built == []
    assert "hook bug" in caplog.text
    assert {r.task for r in app.backend.list_jobs()} == {"Picky", "hooked"} and job.id


def test_failure_hooks_see_each_error_and_the_final_failure(app: laneway.App) -> None:
    calls: list[str] = []

    @app.task(
        name="bad",
        max_attempts=1,
        error=lambda job, exc: calls.append(f"error:{type(exc).__name__}"),
        failure=lambda job: calls.append("failure"),
        after=lambda job: calls.append("after"),
    )
    def bad() -> None:
        raise KeyError("k")

    bad.enqueue()
    drain(app)
    assert calls == ["error:KeyError", "failure", "after"]


def test_async_task_runs_on_the_event_loop(app: laneway.App) -> None:
    @app.task(name="a")
    async def a(x: int) -> int:
        job = laneway.current_job()
        assert job is not None and job.args == [x]
        return x + 1

    job = a.enqueue(1)
    drain(app)
    assert job.result(timeout=5) == 2


def test_execution_middleware_wraps_every_job_outermost_first(backend: Backend) -> None:
    order: list[str] = []

    class Tag:
        def __init__(self, name: str) -> None:
            self.name = name

        def __call__(self, job: laneway.Job, call_next: Any) -> Any:
            order.append(f"{self.name}>")
            value = call_next(job)
            order.append(f"<{self.name}")
            return value

    app = laneway.App(backend=backend, middleware=[Tag("outer"), Tag("inner")])

    @app.task(name="t")
    def t() -> None:
        order.append("run")

    t.enqueue()
    drain(app)
    assert order == ["outer>", "inner>", "run", "<inner", "<outer"]


def test_enqueue_middleware_can_add_headers_and_refuse(backend: Backend) -> None:
    def stamp(env: laneway.Envelope, call_next: Any) -> Any:
        if env.args and env.args[0] == "forbidden":
            raise laneway.ConfigError("refused by middleware")
        env.headers["trace"] = "abc"
        return call_next(env)

    app = laneway.App(backend=backend, enqueue_middleware=[stamp])

    @app.task(name="t")
    def t(x: str) -> str:
        job = laneway.current_job()
        assert job is not None
        return job.headers["trace"]

    job = t.enqueue("ok")
    with pytest.raises(laneway.ConfigError):
        t.enqueue("forbidden")
    drain(app)
    assert job.result(timeout=5) == "abc"
    assert len(backend.list_jobs()) == 1


def test_priority_map_maps_legacy_numbers_to_levels(backend: Backend) -> None:
    app = laneway.App(backend=backend, priority_map={1: laneway.BULK, 10: laneway.HIGH})

    @app.task(name="t")
    def t() -> None: ...

    low = t.options(priority=1).enqueue()
    high = t.options(priority=10).enqueue()
    assert low.refresh().record is not None and low.record.priority == laneway.BULK
    assert high.refresh().record is not None and high.record.priority == laneway.HIGH
    # laneway's own levels are not legacy numbers: LOW (1) stays LOW
    level = t.options(priority=laneway.LOW).enqueue()
    assert level.refresh().record is not None and level.record.priority == laneway.LOW


def test_exception_reporter_gets_every_failed_attempt(backend: Backend) -> None:
    reported: list[tuple[str, str]] = []
    app = laneway.App(
        backend=backend, exception_reporter=lambda exc, job: reported.append((type(exc).__name__, job.id))
    )

    @app.task(name="t", max_attempts=1)
    def t() -> None:
        raise ZeroDivisionError

    job = t.enqueue()
    drain(app)
    assert reported == [("ZeroDivisionError", job.id)]


def test_exception_reporter_also_gets_failures_outside_the_handler(backend: Backend) -> None:
    reported: list[tuple[str, str]] = []
    app = laneway.App(
        backend=backend, exception_reporter=lambda exc, job: reported.append((job.task_name, repr(exc)))
    )

    def before(job: laneway.Job) -> None:
        raise RuntimeError("before")

    @app.task(name="hooked", max_attempts=1, before=before)
    def hooked() -> None: ...

    @app.task(name="unencodable", max_attempts=1)
    def unencodable() -> object:
        return {1, 2}

    @app.task(name="Ctor", max_attempts=1)
    class Ctor:
        def __init__(self) -> None:
            raise RuntimeError("ctor")

        def process(self) -> None: ...

    for task in (hooked, unencodable, Ctor):
        task.enqueue()
    app.send_task("nowhere", max_attempts=1)
    drain(app)
    assert sorted(name for name, _ in reported) == ["Ctor", "hooked", "nowhere", "unencodable"]


def test_failures_are_logged_under_laneway(app: laneway.App, caplog: pytest.LogCaptureFixture) -> None:
    @app.task(name="t", max_attempts=1)
    def t() -> None:
        raise RuntimeError("logged")

    with caplog.at_level(logging.WARNING, logger="laneway"):
        t.enqueue()
        drain(app)
    assert any(r.name.startswith("laneway") and "logged" in r.getMessage() for r in caplog.records)


def test_calling_a_task_runs_it_here(app: laneway.App) -> None:
    @app.task(name="t")
    def t(x: int) -> int:
        return x * 3

    assert t(2) == 6
    assert app.backend.list_jobs() == []
