"""Middleware: one onion style for both stacks.

A layer is any callable ``layer(item, call_next)``. The enqueue stack receives an
``Envelope`` for each job about to be stored and returns it (layers may add headers,
change options, or raise to refuse); storing follows in one round trip for the whole
batch. The execution stack receives the ``Job`` being run and returns the handler's
value; exceptions travel back out through every layer.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import JobTimeout, Retry
from ._timeouts import Watchdog

if TYPE_CHECKING:
    from ._job import Job
    from ._task import Options, Task

log = logging.getLogger("laneway.worker")


@dataclass(slots=True)
class Envelope:
    """A call on its way into the queue, as enqueue middleware sees it."""

    id: str
    task: Task
    args: Sequence[Any]
    kwargs: dict[str, Any]
    options: Options
    headers: dict[str, str] = field(default_factory=dict)


class Middleware(Protocol):
    """A layer: do something, call ``call_next(item)``, do something with its result."""

    def __call__(self, item: Any, call_next: Callable[[Any], Any], /) -> Any: ...


def compose(layers: Sequence[Middleware], inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Wrap ``inner`` in ``layers``; the first layer is the outermost."""
    call = inner
    for layer in reversed(layers):
        call = _bind(layer, call)
    return call


def _bind(layer: Middleware, call_next: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda item: layer(item, call_next)


def compose_async(
    layers: Sequence[Middleware], inner: Callable[[Any], Awaitable[Any]]
) -> Callable[[Any], Awaitable[Any]] | None:
    """The async twin of ``compose`` for ``async def`` handlers, or None when a layer has
    no async form.

    A layer takes part by also defining ``async def acall(self, job, call_next)``, the
    same layer with ``await call_next(job)``; the built-in layers all do. Async handlers
    then run on the worker's event loop with no thread of their own. When any layer lacks
    ``acall``, they run through the sync stack instead: an executor thread per running
    job waits while the handler runs on the loop (what a sync layer needs to wrap it).
    """
    acalls: list[Middleware] = []
    for layer in layers:
        acall = getattr(layer, "acall", None)
        if acall is None:
            return None
        acalls.append(acall)
    return compose(acalls, inner)


class ContextLayer(ABC):
    """A layer whose work around the run is one context manager, ``around(job)``: it
    serves as the sync form (``__call__``) and the async form (``acall``) alike."""

    @abstractmethod
    def around(self, job: Job) -> AbstractContextManager[object]:
        """What to do before the run, and after it or around its exception."""

    def __call__(self, job: Job, call_next: Callable[[Job], Any]) -> Any:
        with self.around(job):
            return call_next(job)

    async def acall(self, job: Job, call_next: Callable[[Job], Awaitable[Any]]) -> Any:
        with self.around(job):
            return await call_next(job)


class ErrorReporting(ContextLayer):
    """Hands every exception but ``Retry`` to ``reporter(exc, job)``, then re-raises. (The
    runner reports the failures that happen outside the stack, such as a ``before`` hook's,
    and skips the one this layer has reported.)"""

    def __init__(self, reporter: Callable[[BaseException, Job], Any]) -> None:
        self.reporter = reporter

    @contextmanager
    def around(self, job: Job) -> Iterator[None]:
        try:
            yield
        except (Retry, GeneratorExit):  # a retry asked for; a run abandoned at shutdown
            raise
        except BaseException as exc:
            job._reported = exc
            try:
                self.reporter(exc, job)
            except Exception:
                log.exception("exception_reporter failed for job %s", job.id)
            raise


class Logging(ContextLayer):
    """Logs each run under ``laneway.worker``: start and end at DEBUG, failures at WARNING."""

    @contextmanager
    def around(self, job: Job) -> Iterator[None]:
        start = time.perf_counter()
        log.debug("job %s %s started (attempt %s)", job.id, job.task_name, job.attempts)
        try:
            yield
        except Retry as exc:
            log.info("job %s %s asked for a retry: %s", job.id, job.task_name, exc)
            raise
        except GeneratorExit:  # abandoned at shutdown, the job released: not a failure
            raise
        except BaseException as exc:
            log.warning("job %s %s failed: %s: %s", job.id, job.task_name, type(exc).__name__, exc)
            raise
        log.debug("job %s %s done in %.1f ms", job.id, job.task_name, (time.perf_counter() - start) * 1e3)


class Timeout:
    """Interrupts a sync handler that runs past its job's ``timeout`` (async ones are
    cancelled by the runner itself)."""

    def __init__(self, watchdog: Watchdog, is_async: Callable[[str], bool]) -> None:
        self.watchdog = watchdog
        self.is_async = is_async

    def __call__(self, job: Job, call_next: Callable[[Job], Any]) -> Any:
        rec = job.record
        if rec is None or rec.timeout_s is None or self.is_async(rec.task):
            return call_next(job)
        alarm = self.watchdog.arm(rec.timeout_s)
        try:
            value = call_next(job)
        finally:
            fired = self.watchdog.disarm(alarm)
        if fired:  # the handler caught the interruption (``except Exception``) and went on
            raise JobTimeout(
                f"handler exceeded its timeout of {rec.timeout_s} s (and caught the interruption)"
            )
        return value

    async def acall(self, job: Job, call_next: Callable[[Job], Awaitable[Any]]) -> Any:
        """Async handlers are cancelled by the runner at their timeout: nothing to arm."""
        return await call_next(job)
