"""Running one claimed job: decode, hooks, middleware, handler, and the verdict.

Shared by the worker and by ``App.run_until_idle()``, so both follow the same rules:

- undecodable payload: dead at once (``DecodeError``), it will not decode next time;
- ``Fail``: dead at once; ``Retry(delay)``: retry after ``delay`` (or the backoff);
- any other exception, ``SystemExit``, ``MemoryError`` and timeouts included: retry
  with exponential backoff and jitter, dead once ``attempts`` reaches ``max_attempts``;
- an unknown task name counts as a failed attempt (a newer worker may know it).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import random
import threading
import traceback
from collections.abc import Coroutine, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeGuard

from . import _constants as C
from ._codec import Call
from ._errors import DecodeError, EncodeError, Fail, JobTimeout, LeaseLost, Retry, UnknownTask
from ._job import Job
from ._middleware import compose, compose_async
from ._records import JobRecord, Outcome, Verdict
from ._task import Hooks, Prepared

if TYPE_CHECKING:
    from ._app import App
    from ._middleware import ContextLayer, Middleware
    from ._task import Task

log = logging.getLogger("laneway.worker")
_TRACEBACK_MAX_CHARS = 16_000
_current: contextvars.ContextVar[Job | None] = contextvars.ContextVar("laneway_job", default=None)


def current_job() -> Job | None:
    """The ``Job`` being run by this handler (sync or async), or None outside one."""
    return _current.get()


def backoff_s(attempts: int, base_s: float, max_s: float) -> float:
    """Delay before retry number ``attempts``: base x 2^(attempts-1), capped, with jitter
    over the upper half ("equal jitter"), so retries of many jobs spread out."""
    ceiling = min(max_s, base_s * float(2 ** max(0, min(attempts - 1, 60))))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass(frozen=True, slots=True)
class Ran:
    """A run's verdict. ``applied`` outcomes were already finished in the task's own
    transaction (``transactional=True``); ``accepted`` then says whether that stuck."""

    outcome: Outcome
    applied: bool = False
    accepted: bool = True


class _Rollback(Exception):
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome


class _Attempt:
    """The ``around(job)`` contexts of the layers that wrap a whole attempt (the consumer
    span) rather than the handler alone: decoding, hooks, stack, result encoding and, for a
    transactional task, the commit. The runner turns a failure into a verdict instead of
    letting it propagate, noting it on the job (``Job._failure``); the contexts then see it
    on exit as if it had passed through them."""

    _exits: ExitStack

    def __init__(self, layers: Sequence[ContextLayer], job: Job) -> None:
        self._layers = layers
        self._job = job

    def __enter__(self) -> _Attempt:
        with ExitStack() as stack:
            for layer in self._layers:
                stack.enter_context(layer.around(self._job))
            self._exits = stack.pop_all()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None and self._job._failure is not None:
            exc = self._job._failure
            exc_type, tb = type(exc), exc.__traceback__
        self._exits.__exit__(exc_type, exc, tb)  # does not raise the exception it is shown


def _wraps_attempt(layer: Middleware) -> TypeGuard[ContextLayer]:
    return bool(getattr(layer, "wraps_attempt", False))


class AsyncLoop:
    """One event loop in a daemon thread where every ``async def`` handler runs."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Future[None]] = set()

    def _get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=loop.run_forever, name="laneway-async", daemon=True)
                self._thread.start()
                self._loop = loop
            return self._loop

    def run(self, coro: Coroutine[Any, Any, Any], timeout_s: float | None) -> Any:
        """Run ``coro`` on the loop and wait; cancels it after ``timeout_s``."""
        job = _current.get()

        async def guarded() -> Any:
            _current.set(job)
            return await _bounded(coro, timeout_s)

        return asyncio.run_coroutine_threadsafe(guarded(), self._get()).result()

    def spawn(self, coros: list[Coroutine[Any, Any, None]]) -> None:
        """Start ``coros`` as tasks on the loop without waiting for them: one wake-up of
        the loop thread for the whole list. A coroutine that raises is logged."""
        loop = self._get()
        loop.call_soon_threadsafe(self._start, coros)

    def _start(self, coros: list[Coroutine[Any, Any, None]]) -> None:
        for coro in coros:
            task = asyncio.ensure_future(coro)
            self._tasks.add(task)  # the loop keeps only weak references to its tasks
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a job unit failed on the event loop", exc_info=task.exception())

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the loop (handlers still running on it are abandoned) and close it."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout_s)
        if not thread.is_alive():
            loop.close()


async def _bounded(coro: Coroutine[Any, Any, Any], timeout_s: float | None) -> Any:
    """Await ``coro``, cancelled after ``timeout_s`` with ``JobTimeout``."""
    if timeout_s is None:  # wait_for would wrap it in a task of its own
        return await coro
    try:
        return await asyncio.wait_for(coro, timeout_s)
    except asyncio.TimeoutError:
        raise JobTimeout(f"async handler exceeded its timeout of {timeout_s} s") from None


def _call_handler(job: Job) -> Any:
    """The innermost layer of the execution stack: the handler itself."""
    assert job._run is not None
    return job._run()


def _describe(exc: BaseException) -> str:
    text = _storable(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _format_tb(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return _storable(text[-_TRACEBACK_MAX_CHARS:])


def _storable(text: str) -> str:
    """``text`` with lone surrogates and NULs escaped (``\\udce9``, ``\\x00``), which SQLite
    and PostgreSQL text refuse: an error about a non-UTF-8 file name or a C string must not
    make the backend refuse the whole batch of outcomes it travels in."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _on_loop(task: Task) -> bool:
    return task.is_async and not task.transactional


def _hook(fn: Any, *args: Any) -> None:
    if fn is None:
        return
    try:
        fn(*args)
    except Exception:
        log.exception("hook %r failed", fn)


class Runner:
    """Turns claimed ``JobRecord``s into ``Outcome``s for one app.

    An execution layer that is a ``ContextLayer`` with ``wraps_attempt = True`` (the
    consumer span of ``instrument_tracing``) is taken out of the stack and wraps the whole
    attempt instead, outermost, so that it also sees what fails outside the stack.
    """

    def __init__(self, app: App, loop: AsyncLoop | None = None) -> None:
        self.app = app
        self.loop = loop or AsyncLoop()
        layers = app._execution_layers()
        self._outer: list[ContextLayer] = []
        inner: list[Middleware] = []
        for layer in layers:
            if _wraps_attempt(layer):
                self._outer.append(layer)
            else:
                inner.append(layer)
        layers = inner
        self._stack = compose(layers, _call_handler)
        self._astack = compose_async(layers, _call_handler)

    def runs_on_loop(self, unit: Sequence[JobRecord]) -> bool:
        """Whether ``unit`` runs as a coroutine on the event loop (``arun``), with no
        thread of its own: every job's task is ``async def`` and not transactional, and
        every execution layer has an async form (``acall``)."""
        if self._astack is None:
            return False
        tasks = self.app.tasks
        for rec in unit:
            task = tasks.get(rec.task)
            if task is None or not _on_loop(task):
                return False
        return True

    def all_on_loop(self) -> bool:
        """Whether every task of the app registered so far (laneway's own ``laneway.*``
        tasks aside) runs on the event loop: ``runs_on_loop`` for any job of theirs."""
        if self._astack is None:
            return False
        mine = [t for t in self.app.tasks.values() if not t.name.startswith(C.RESERVED_PREFIX)]
        return bool(mine) and all(_on_loop(t) for t in mine)

    def _open(self, rec: JobRecord, job: Job) -> Ran | tuple[Call, Task]:
        """Decode ``rec`` and find its task, or the verdict when either fails."""
        try:
            call = job._decoded()  # cached on the job: the tracing layer may have read its headers
        except DecodeError as exc:
            return Ran(self._dead(rec, exc, None, job))
        task = self.app.tasks.get(rec.task)
        if task is None:
            unknown = UnknownTask(f"no task named {rec.task!r} on this worker")
            return Ran(self._failed(rec, unknown, job, Hooks(), None))
        return call, task

    def run(self, rec: JobRecord) -> Ran:
        """Run one job to its verdict. Never raises (but for ``JobTimeout`` arriving late)."""
        assert rec.token is not None
        job = Job(self.app, rec.id, record=rec)
        reset = _current.set(job)
        try:
            if not self._outer:  # no layer wraps the attempt: the common case, at no cost
                return self._run(rec, job)
            with _Attempt(self._outer, job):
                return self._run(rec, job)
        finally:
            _current.reset(reset)

    def _run(self, rec: JobRecord, job: Job) -> Ran:
        opened = self._open(rec, job)
        if isinstance(opened, Ran):
            return opened
        call, task = opened
        if task.transactional:
            return self._run_transactional(rec, job, call, task)
        outcome, hooks = self._attempt(rec, job, call, task, None)
        if outcome.verdict is Verdict.SUCCEEDED:
            _hook(hooks.success, job)
        return Ran(outcome)

    async def arun(self, rec: JobRecord) -> Ran:
        """``run`` for a job of a unit that ``runs_on_loop``: on the event loop, in the
        calling asyncio task (whose context holds ``current_job()``). Never raises."""
        assert rec.token is not None
        job = Job(self.app, rec.id, record=rec)
        _current.set(job)
        if not self._outer:  # as in run
            return await self._arun(rec, job)
        with _Attempt(self._outer, job):
            return await self._arun(rec, job)

    async def _arun(self, rec: JobRecord, job: Job) -> Ran:
        assert rec.token is not None  # for the type checker: arun checked it
        opened = self._open(rec, job)
        if isinstance(opened, Ran):
            return opened
        call, task = opened
        prepared = self._prepare(rec, job, call, task, None)
        if isinstance(prepared, Outcome):
            return Ran(prepared)
        assert self._astack is not None
        hooks = prepared.hooks
        abandoned = False
        try:
            if hooks.before is not None:
                hooks.before(job)
            job._run = lambda: _bounded(prepared.run(), rec.timeout_s)
            value = await self._astack(job)
            result = self._encode(value, rec)
        except GeneratorExit:  # the worker stopped and released the job; this run is being collected
            abandoned = True
            raise
        except BaseException as exc:  # noqa: BLE001 - as in _attempt
            return Ran(self._caught(rec, exc, job, hooks, task))
        finally:
            if not abandoned:
                _hook(hooks.after, job)
        _hook(hooks.success, job)
        return Ran(Outcome(rec.id, rec.token, Verdict.SUCCEEDED, result=result))

    def _run_transactional(self, rec: JobRecord, job: Job, call: Call, task: Task) -> Ran:
        """Handler writes and the job's completion commit together, or neither does.

        ``after`` runs when the handler returns, inside the transaction; ``success`` only
        once the commit went through with the completion accepted. When the completion is
        refused (the lease was lost) or the commit fails, the writes roll back and the job
        runs again: ``error`` gets that exception (``LeaseLost``, or the commit's) instead.
        """
        backend = self.app.backend
        hooks = task.hooks
        try:
            with backend.transaction() as conn:
                outcome, hooks = self._attempt(rec, job, call, task, conn)
                if outcome.verdict is not Verdict.SUCCEEDED:
                    raise _Rollback(outcome)
                if not backend.finish([outcome], connection=conn)[0]:
                    raise LeaseLost(f"job {rec.id}: lease lost before commit; its writes roll back")
        except _Rollback as rb:
            return Ran(rb.outcome)
        except LeaseLost as exc:
            log.warning("%s", exc)
            _hook(hooks.error, job, exc)
            job._failure = exc
            return Ran(Outcome(rec.id, rec.token or 0, Verdict.SUCCEEDED), applied=True, accepted=False)
        except Exception as exc:  # noqa: BLE001 - the transaction itself failed (commit, connection)
            return Ran(self._caught(rec, exc, job, hooks, task))
        _hook(hooks.success, job)
        return Ran(outcome, applied=True)

    def _prepare(
        self, rec: JobRecord, job: Job, call: Call, task: Task, connection: Any
    ) -> Prepared | Outcome:
        """The task's prepared call, or the verdict when a class task's constructor fails
        (a failed attempt like a handler's: the ``error`` hook runs, ``before``/``after`` do
        not, as there is no instance to run them on)."""
        try:
            if connection is not None:
                call = Call(call.args, {**call.kwargs, "connection": connection}, call.headers)
            return task.prepare(call)
        except BaseException as exc:  # noqa: BLE001 - constructor of a class task failed
            return self._caught(rec, exc, job, task.hooks, task)

    def _attempt(
        self, rec: JobRecord, job: Job, call: Call, task: Task, connection: Any
    ) -> tuple[Outcome, Hooks]:
        """Run one attempt to its verdict, with the hooks that go with it; the ``success``
        hook is the caller's to call (after the commit, for a transactional task)."""
        assert rec.token is not None
        prepared = self._prepare(rec, job, call, task, connection)
        if isinstance(prepared, Outcome):
            return prepared, task.hooks
        hooks = prepared.hooks
        try:
            if hooks.before is not None:
                hooks.before(job)
            job._run = lambda: self._invoke(task, prepared.run, rec)
            result = self._encode(self._stack(job), rec)
        except BaseException as exc:  # noqa: BLE001 - SystemExit and friends fail the job, not the worker
            return self._caught(rec, exc, job, hooks, task), hooks
        finally:
            _hook(hooks.after, job)
        return Outcome(rec.id, rec.token, Verdict.SUCCEEDED, result=result), hooks

    def _encode(self, value: Any, rec: JobRecord) -> bytes | None:
        return None if value is None else self.app.codec.dumps(value, f"result of {rec.task}")

    def _caught(self, rec: JobRecord, exc: BaseException, job: Job, hooks: Hooks, task: Task) -> Outcome:
        """The verdict for an exception out of a run (after the ``error`` hook): ``Retry``
        retries when asked, ``Fail`` and an unencodable result go dead, the rest retry."""
        _hook(hooks.error, job, exc)
        if isinstance(exc, Retry):
            return self._retry(rec, exc, job, hooks, task, exc.delay)
        if isinstance(exc, (Fail, EncodeError)):
            return self._dead(rec, exc, hooks, job)
        return self._failed(rec, exc, job, hooks, task)

    def _invoke(self, task: Task, run: Any, rec: JobRecord) -> Any:
        value = run()
        if task.is_async or inspect.iscoroutine(value):  # or an async def behind a sync decorator
            return self.loop.run(value, rec.timeout_s)
        return value

    def _failed(
        self, rec: JobRecord, exc: BaseException, job: Job, hooks: Hooks, task: Task | None
    ) -> Outcome:
        self._report(exc, job)
        return self._retry(rec, exc, job, hooks, task, None)

    def _report(self, exc: BaseException, job: Job) -> None:
        """Hand a failed attempt's exception to the app's ``exception_reporter`` unless the
        ``ErrorReporting`` layer did: failures outside the execution stack (a ``before``
        hook, a class's constructor, the result's encoding, an unknown task, an undecodable
        payload) are reported too. ``Retry`` is not a failure and is not reported."""
        reporter = self.app.exception_reporter
        if reporter is None or job._reported is exc:  # the ErrorReporting layer had it
            return
        try:
            reporter(exc, job)
        except Exception:
            log.exception("exception_reporter failed for job %s", job.id)

    def _retry(
        self,
        rec: JobRecord,
        exc: BaseException,
        job: Job,
        hooks: Hooks,
        task: Task | None,
        delay: float | None,
    ) -> Outcome:
        assert rec.token is not None
        job._failure = exc  # for the layers around the attempt
        if rec.attempts >= rec.max_attempts:
            return self._dead(rec, exc, hooks, job, exhausted=True)
        if delay is not None and (
            isinstance(delay, bool) or not isinstance(delay, (int, float)) or not delay <= C.MAX_SECONDS
        ):  # NaN fails the comparison too; a negative delay means now, as before
            log.warning(
                "job %s: Retry(delay=%r) is not a number up to 100 years; retried after the backoff",
                rec.id,
                delay,
            )
            delay = None
        if delay is None:
            base = task.backoff_s if task else self.app.backoff_s
            cap = task.backoff_max_s if task else self.app.backoff_max_s
            delay = backoff_s(rec.attempts, base, cap)
        return Outcome(
            rec.id,
            rec.token,
            Verdict.RETRY,
            error=_describe(exc),
            traceback=_format_tb(exc),
            delay_s=max(0.0, delay),
        )

    def _dead(
        self, rec: JobRecord, exc: BaseException, hooks: Hooks | None, job: Job, exhausted: bool = False
    ) -> Outcome:
        assert rec.token is not None
        job._failure = exc  # for the layers around the attempt
        error = _describe(exc)
        if exhausted:  # reported by _failed already, or a Retry
            error = f"{error} (attempt {rec.attempts} of {rec.max_attempts})"
        else:
            self._report(exc, job)
        if hooks is not None:
            _hook(hooks.failure, job)
        return Outcome(rec.id, rec.token, Verdict.DEAD, error=error, traceback=_format_tb(exc))

    def timed_out(self, rec: JobRecord) -> Ran:
        """The verdict for a job whose ``JobTimeout`` escaped the runner's own handling."""
        job = Job(self.app, rec.id, record=rec)
        task = self.app.tasks.get(rec.task)
        exc = JobTimeout(f"handler exceeded its timeout of {rec.timeout_s} s")
        return Ran(self._failed(rec, exc, job, task.hooks if task else Hooks(), task))
