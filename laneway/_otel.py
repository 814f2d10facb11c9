"""OpenTelemetry trace propagation from producer to worker (``pip install 'laneway[otel]'``).

```python
from laneway._otel import instrument_tracing

instrument_tracing(app)       # in producers and workers, before workers are built
```

At enqueue, a *producer* span ``send <task>`` is started as a child of whatever span is
current, and its context is written into the job's headers with the global propagator
(W3C ``traceparent``/``tracestate`` by default). The headers travel with the job through
the backend; in the worker, the execution layer extracts them and runs each attempt inside
a *consumer* span ``process <task>`` whose parent is the producer span, so one trace shows
the request that enqueued a job and every attempt that ran it. The consumer span covers the
whole attempt (the runner lifts the layer out of the stack: ``wraps_attempt``): hooks,
middleware, handler and the result's encoding, and it is marked as an error when any of
them fails, or the task is unknown, or the payload cannot be decoded.

A periodic tick's job gets no producer span: every worker builds the tick's job and only
the one that wins ``claim_tick`` stores it, so its consumer spans start a trace of their own.

Only ``opentelemetry-api`` is needed here; the application configures the SDK (tracer
provider, exporters) as usual. Without an SDK the spans are no-ops and cost almost nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

try:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind, StatusCode, Tracer, TracerProvider
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("laneway tracing needs opentelemetry-api: pip install 'laneway[otel]'") from exc

from ._errors import DecodeError, Retry
from ._middleware import ContextLayer

if TYPE_CHECKING:
    from ._app import App
    from ._job import Job
    from ._middleware import Envelope

__all__ = ["TraceEnqueue", "TraceExecution", "instrument_tracing"]

SYSTEM = "laneway"
"""Value of the ``messaging.system`` attribute."""


class TraceEnqueue:
    """Enqueue layer: a producer span per job, its context injected into the job's headers."""

    observes_enqueue = True
    """Left out when a worker builds a periodic tick's job, which another worker may store."""

    def __init__(self, tracer: Tracer, default_queue: str) -> None:
        self.tracer = tracer
        self.default_queue = default_queue

    def __call__(self, envelope: Envelope, call_next: Callable[[Envelope], Envelope]) -> Envelope:
        queue = envelope.options.queue or envelope.task.opts.queue or self.default_queue
        attributes: dict[str, str] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.destination.name": queue,
            "messaging.message.id": envelope.id,
            "laneway.task": envelope.task.name,
        }
        if envelope.options.lane is not None:
            attributes["laneway.lane"] = envelope.options.lane
        name = f"send {envelope.task.name}"
        with self.tracer.start_as_current_span(name, kind=SpanKind.PRODUCER, attributes=attributes):
            propagate.inject(envelope.headers)
            return call_next(envelope)


class TraceExecution(ContextLayer):
    """Execution layer: each attempt runs in a consumer span, child of the producer span."""

    wraps_attempt = True
    """The runner enters ``around`` for the whole attempt, not only the handler's call."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    @contextmanager
    def around(self, job: Job) -> Iterator[None]:
        rec = job.record
        try:
            headers = job.headers
        except DecodeError:  # the attempt fails for it; its span starts a trace of its own
            headers = {}
        parent = propagate.extract(headers)
        attributes: dict[str, str | int] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "process",
            "messaging.message.id": job.id,
        }
        name = "process"
        if rec is not None:
            name = f"process {rec.task}"
            attributes.update(
                {
                    "messaging.destination.name": rec.queue,
                    "laneway.task": rec.task,
                    "laneway.attempt": rec.attempts,
                }
            )
            if rec.lane is not None:
                attributes["laneway.lane"] = rec.lane
        with self.tracer.start_as_current_span(
            name,
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield
            except Retry as exc:
                span.add_event("laneway.retry", {"laneway.retry.reason": str(exc)})
                raise
            except GeneratorExit:  # an async run abandoned at shutdown: released, not failed
                span.add_event("laneway.released")
                raise
            except BaseException as exc:
                span.record_exception(exc)
                span.set_status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
                raise


def instrument_tracing(app: App, tracer_provider: TracerProvider | None = None) -> None:
    """Propagate trace context from producers to workers for ``app``.

    Adds ``TraceEnqueue`` as the outermost enqueue layer and ``TraceExecution``, which
    wraps each whole attempt (hooks and result encoding included), as the outermost
    execution layer. Call it before building workers; calling it again changes nothing.

    Args:
        app: the app to trace (in the producer process, the worker process, or both).
        tracer_provider: where spans go; default the global tracer provider.
    """
    if any(isinstance(layer, TraceExecution) for layer in app.middleware):
        return
    from . import __version__

    tracer = trace.get_tracer("laneway", __version__, tracer_provider=tracer_provider)
    app.enqueue_middleware.insert(0, TraceEnqueue(tracer, app.default_queue))
    app.middleware.insert(0, TraceExecution(tracer))
