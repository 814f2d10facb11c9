"""OpenTelemetry: the producer's span is the parent of the job's span, across the backend."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import laneway
from laneway._otel import instrument_tracing
from laneway.testing import memory_app
from tests.support.workers import abandon_async_runs


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def by_name(exporter: InMemorySpanExporter, name: str):
    found = [s for s in exporter.get_finished_spans() if s.name == name]
    assert found, f"no span {name!r} in {[s.name for s in exporter.get_finished_spans()]}"
    return found


def test_producer_span_is_the_parent_of_the_job_span(spans):
    provider, exporter = spans
    app = memory_app()
    instrument_tracing(app, provider)
    seen = []

    @app.task(name="resize")
    def resize(image_id: int) -> None:
        seen.append(image_id)

    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("web request"):
        job = resize.options(lane="user:42").enqueue(7)
    app.run_until_idle()

    assert seen == [7]
    assert "traceparent" in app.get_job(job.id).headers
    (request,) = by_name(exporter, "web request")
    (send,) = by_name(exporter, "send resize")
    (process,) = by_name(exporter, "process resize")
    assert send.kind is SpanKind.PRODUCER and process.kind is SpanKind.CONSUMER
    assert send.parent.span_id == request.context.span_id
    assert process.parent.span_id == send.context.span_id
    assert process.context.trace_id == request.context.trace_id
    assert process.attributes["messaging.destination.name"] == "default"
    assert process.attributes["laneway.lane"] == "user:42"
    assert process.attributes["messaging.message.id"] == job.id


def test_trace_context_crosses_a_worker_thread(spans):
    provider, exporter = spans
    app = memory_app()
    instrument_tracing(app, provider)

    @app.task(name="t")
    def t() -> None: ...

    t.enqueue()
    app.worker(idle_wait_s=0.01).run(burst=True)

    (send,) = by_name(exporter, "send t")
    (process,) = by_name(exporter, "process t")
    assert process.parent.span_id == send.context.span_id


def test_every_attempt_is_a_child_span_and_failures_are_marked_as_errors(spans):
    provider, exporter = spans
    app = memory_app(backoff_s=0.0, backoff_max_s=0.0)
    instrument_tracing(app, provider)

    @app.task(name="flaky", max_attempts=2)
    def flaky() -> None:
        raise ValueError("broken")

    flaky.enqueue()
    app.run_until_idle()
    app.run_until_idle()

    (send,) = by_name(exporter, "send flaky")
    attempts = by_name(exporter, "process flaky")
    assert [a.attributes["laneway.attempt"] for a in attempts] == [1, 2]
    assert all(a.parent.span_id == send.context.span_id for a in attempts)
    assert all(a.status.status_code is StatusCode.ERROR for a in attempts)
    assert attempts[0].events[0].name == "exception"


def test_a_requested_retry_is_an_event_not_an_error(spans):
    provider, exporter = spans
    app = memory_app()
    instrument_tracing(app, provider)

    @app.task(name="later")
    def later() -> None:
        raise laneway.Retry(delay=60)

    later.enqueue()
    app.run_until_idle()

    (process,) = by_name(exporter, "process later")
    assert process.status.status_code is StatusCode.UNSET
    assert [e.name for e in process.events] == ["laneway.retry"]


def test_a_job_enqueued_without_tracing_still_runs_in_a_root_span(spans):
    provider, exporter = spans
    app = memory_app()

    @app.task(name="t")
    def t() -> None: ...

    t.enqueue()
    instrument_tracing(app, provider)
    instrument_tracing(app, provider)
    app.run_until_idle()

    (process,) = by_name(exporter, "process t")
    assert process.parent is None
    assert len(app.middleware) == 1


def test_an_async_run_abandoned_at_shutdown_is_a_release_not_an_error(spans):
    import asyncio

    provider, exporter = spans
    app = memory_app()
    instrument_tracing(app, provider)

    @app.task(name="long")
    async def long() -> None:
        await asyncio.sleep(5)

    job = long.enqueue()
    abandon_async_runs(app)
    assert job.refresh().status is laneway.Status.QUEUED
    (process,) = by_name(exporter, "process long")
    assert process.status.status_code is not StatusCode.ERROR
    assert [e.name for e in process.events] == ["laneway.released"]


def test_attempts_failing_outside_the_handler_get_an_error_span(spans):
    import datetime

    provider, exporter = spans
    app = memory_app(backoff_s=0.0, backoff_max_s=0.0)
    instrument_tracing(app, provider)

    def before(job) -> None:
        raise RuntimeError("before hook failed")

    @app.task(name="hooked", before=before, max_attempts=1)
    def hooked() -> int:
        return 1

    @app.task(name="bad_result", max_attempts=3)
    def bad_result() -> object:
        return datetime.datetime.now()  # not JSON: the job goes dead

    @app.task(name="ctor", max_attempts=1)
    class Ctor:
        def __init__(self) -> None:
            raise KeyError("constructor failed")

        def process(self) -> None: ...

    hooked.enqueue()
    bad_result.enqueue()
    Ctor.enqueue()
    app.send_task("nobody.knows", max_attempts=1)
    app.run_until_idle()

    for name, error in [
        ("hooked", "RuntimeError"),
        ("bad_result", "EncodeError"),
        ("ctor", "KeyError"),
        ("nobody.knows", "UnknownTask"),
    ]:
        (send,) = by_name(exporter, f"send {name}")
        (process,) = by_name(exporter, f"process {name}")
        assert process.parent.span_id == send.context.span_id
        assert process.status.status_code is StatusCode.ERROR, name
        assert process.status.description.startswith(error), (name, process.status.description)


@pytest.mark.parametrize("is_async", [False, True])
def test_spans_opened_in_hooks_are_children_of_the_job_span(spans, is_async):
    provider, exporter = spans
    app = memory_app()
    instrument_tracing(app, provider)
    tracer = provider.get_tracer("test")

    def hook(name):
        def opens_a_span(job) -> None:
            with tracer.start_as_current_span(f"in {name}"):
                pass

        return opens_a_span

    hooks = {name: hook(name) for name in ("before", "after", "success")}
    if is_async:

        @app.task(name="t", **hooks)
        async def t() -> None: ...

    else:

        @app.task(name="t", **hooks)
        def t() -> None: ...

    t.enqueue()
    app.worker(idle_wait_s=0.01).run(burst=True)

    (process,) = by_name(exporter, "process t")
    for name in hooks:
        (inner,) = by_name(exporter, f"in {name}")
        assert inner.parent is not None and inner.parent.span_id == process.context.span_id, name


def test_a_periodic_tick_gets_no_producer_span_from_the_workers_that_build_it(spans):
    from laneway.testing import Clock

    provider, exporter = spans
    app = memory_app(clock=Clock(1_000_000.0))
    instrument_tracing(app, provider)
    enqueued = []

    @app.periodic(every=60, name="tick", enqueue=lambda job: enqueued.append(job.id))
    def tick() -> None: ...

    workers = [app.worker(idle_wait_s=0.01) for _ in range(3)]
    for w in workers:
        w._tick_schedules()  # all three see the tick; claim_tick lets one store it

    assert len(enqueued) == 1
    assert not [s for s in exporter.get_finished_spans() if s.name == "send tick"]
    app.run_until_idle()
    (process,) = by_name(exporter, "process tick")
    assert process.parent is None
