"""``laneway.App``: the entry point that binds tasks, middleware and one backend."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, overload

from . import _constants as C
from ._checks import count, seconds
from ._codec import Codec, decode_call
from ._errors import ConfigError, PayloadTooLarge
from ._job import Job
from ._lanes import Preprocessors
from ._middleware import Envelope, ErrorReporting, Logging, Middleware, Timeout, compose
from ._names import check_name, check_namespace
from ._periodic import Schedule
from ._records import EnqueueResult, NewJob, OnDead, Priority
from ._task import CallShape, Hooks, Options, Task, call_pair
from ._timeouts import Watchdog
from .backends import Backend, open_backend
from .bus import BusMixin

if TYPE_CHECKING:
    from ._lanes import Batch, LaneProducer
    from ._worker import Worker, WorkerListener

log = logging.getLogger("laneway")


def new_id() -> str:
    """A 32-hex-digit job id that sorts by creation time: a 48-bit ms clock, 40 bits random
    per process, and a 40-bit counter. Within one process and millisecond the ids still
    sort in creation order, so jobs of a lane due at the same moment (one ``delay`` for a
    whole ``enqueue_many``) keep their send order on backends that break ties by id."""
    return f"{int(time.time() * 1000):012x}{_id_source[0]}{next(_id_source[1]) & _ID_COUNTER_MASK:010x}"


_ID_COUNTER_MASK = (1 << 40) - 1
_id_source: tuple[str, Iterator[int]] = (os.urandom(5).hex(), itertools.count())


def _new_id_source() -> None:
    """A forked child gets a prefix of its own: it must not repeat its parent's ids."""
    global _id_source
    _id_source = (os.urandom(5).hex(), itertools.count())


os.register_at_fork(after_in_child=_new_id_source)


class App(BusMixin):
    """A laneway application: tasks, middleware and one backend.

    Args:
        url: backend URL; defaults to ``$LANEWAY_URL``, else ``sqlite:///laneway.db``.
        namespace: prefixes every key, table or schema; apps in different namespaces on
            one server never see each other's work.
        name: this application's name on the event bus.
        codec: ``"json"`` (default) or ``"msgpack"``.
        max_payload_bytes: larger encoded calls are refused with ``PayloadTooLarge``.
        priority_map: maps legacy numeric priorities to levels, e.g. ``{1: laneway.BULK}``.
        exception_reporter: ``callable(exc, job)`` called on every failed attempt.
        middleware: execution layers, outermost first, around the built-in ones.
        enqueue_middleware: enqueue layers, outermost first.
        max_attempts, result_ttl, lease_s: defaults for every task.
        backoff_s, backoff_max_s: retry backoff (first delay, cap) for every task.
        backend: an already built backend (tests); overrides ``url``.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str = C.DEFAULT_NAMESPACE,
        name: str | None = None,
        codec: str = "json",
        max_payload_bytes: int = C.MAX_PAYLOAD_BYTES,
        priority_map: Mapping[int, int] | None = None,
        exception_reporter: Callable[[BaseException, Job], Any] | None = None,
        middleware: Sequence[Middleware] = (),
        enqueue_middleware: Sequence[Middleware] = (),
        default_queue: str = C.DEFAULT_QUEUE,
        max_attempts: int = C.MAX_ATTEMPTS,
        result_ttl: float = C.RESULT_TTL_S,
        lease_s: float = C.LEASE_S,
        backoff_s: float = C.RETRY_BASE_S,
        backoff_max_s: float = C.RETRY_MAX_S,
        backend: Backend | None = None,
    ) -> None:
        self.url = url or os.environ.get(C.URL_ENV) or C.DEFAULT_URL
        if not isinstance(self.url, str):
            raise ConfigError(f"url must be a backend URL string, not {self.url!r}")
        self.namespace = check_namespace(namespace)
        self.name = check_name(name, "app name") if name is not None else None
        self.codec = Codec(codec)
        self.max_payload_bytes = count(max_payload_bytes, "max_payload_bytes")
        self.priority_map = {
            key: count(level, f"priority_map[{key!r}]", least=C.PRIORITY_MIN, most=C.PRIORITY_MAX)
            for key, level in (priority_map or {}).items()
        }
        if exception_reporter is not None and not callable(exception_reporter):
            raise ConfigError(f"exception_reporter must be callable(exc, job), not {exception_reporter!r}")
        self.exception_reporter = exception_reporter
        self.middleware = _check_layers(middleware, "middleware")
        self.enqueue_middleware = _check_layers(enqueue_middleware, "enqueue_middleware")
        self.default_queue = check_name(default_queue, "queue")
        self.defaults = Options().merge(max_attempts=max_attempts, result_ttl=result_ttl)
        self.lease_s = seconds(lease_s, "lease_s", positive=True)
        self.backoff_s = seconds(backoff_s, "backoff_s")
        self.backoff_max_s = seconds(backoff_max_s, "backoff_max_s")
        self.tasks: dict[str, Task] = {}
        self.schedules: dict[str, Schedule] = {}
        self.queue_on_dead: dict[str, OnDead] = {}
        self.watchdog = Watchdog()
        self.listeners: list[WorkerListener] = []
        """Observers every worker of this app reports claims and outcomes to."""
        self.on_worker_start: list[Callable[[Worker], Any]] = []
        """Called with each worker of this app as it starts (extensions register here)."""
        self.system_queues: list[str] = []
        """Queues every worker of this app also listens to, after its own (extensions).
        Read when a worker is built, so add to it before then (not in ``on_worker_start``)."""
        self.preprocessors = Preprocessors()
        """Low-level lane message transforms: ``.send`` and ``.claim`` lists."""
        self._backend = backend
        self._backend_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<laneway.App {self.url} namespace={self.namespace}>"

    @property
    def backend(self) -> Backend:
        """The backend, opened on first use."""
        if self._backend is None:
            with self._backend_lock:
                if self._backend is None:
                    self._backend = open_backend(self.url, self.namespace)
        return self._backend

    def close(self) -> None:
        """Close the backend's connections."""
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    # --- registering -----------------------------------------------------------------

    @overload
    def task(self, target: Callable[..., Any] | type) -> Task: ...

    @overload
    def task(self, target: None = None, **options: Any) -> Callable[[Callable[..., Any] | type], Task]: ...

    def task(self, target: Any = None, **options: Any) -> Any:
        """Register a function (sync or ``async def``) or a class with ``process()``.

        Keyword options: ``name`` (default ``module.qualname``), ``queue``, ``priority``,
        ``max_attempts``, ``timeout``, ``result_ttl``, ``on_dead`` ("skip" or "block"),
        ``backoff_s``, ``backoff_max_s``, ``transactional`` (SQL backends: the handler gets
        ``connection=``, a connection whose transaction also marks the job done, so its
        writes and its completion commit together or not at all), and the hooks ``enqueue``, ``before``, ``after``,
        ``success``, ``error``, ``failure`` (each ``callable(job)``; ``error(job, exc)``).
        """
        _not_reserved(options.get("name"))
        if target is not None:
            return self._register(target, options)
        return lambda fn: self._register(fn, options)

    def _register(self, target: Any, options: dict[str, Any], *, without_args: bool = False) -> Task:
        """Make and register the task; ``without_args``: it is always called without
        arguments (a periodic task), so a signature that needs some is refused."""
        if not callable(target):
            raise TypeError(
                f"app.task takes a function or a class, not {target!r:.100} (options go by keyword: "
                "@app.task(name=...))"
            )
        opts = dict(options)
        name = opts.pop("name", None)
        if name is None:
            name = default_task_name(target)
        hooks = Hooks(**{h: opts.pop(h) for h in list(opts) if h in Hooks.__dataclass_fields__})
        transactional = opts.pop("transactional", False)
        if not isinstance(transactional, bool):
            raise ConfigError(f"transactional must be True or False, not {transactional!r}")
        backoff = seconds(opts.pop("backoff_s", self.backoff_s), "backoff_s")
        backoff_max = seconds(opts.pop("backoff_max_s", self.backoff_max_s), "backoff_max_s")
        for key in ("lane", "delay", "run_at", "unique", "connection"):
            if key in opts:
                raise ConfigError(f"{key!r} is a per-call option: use task.options({key}=...)")
        task = Task(
            self,
            target,
            name=name,
            opts=Options().merge(**opts),
            hooks=hooks,
            backoff_s=backoff,
            backoff_max_s=backoff_max,
        )
        task.transactional = transactional
        self._resolve(task, Options())  # its priority, mapped: refused now, not at the first enqueue
        try:
            task.shape = CallShape(inspect.signature(target, follow_wrapped=False))
        except (TypeError, ValueError):  # a builtin or an object without one: not checked
            pass
        if without_args:
            task.check_args((), {})
        if task.name in self.tasks:
            raise ConfigError(f"a task named {task.name!r} is already registered")
        self.tasks[task.name] = task
        return task

    def periodic(
        self,
        cron: str | None = None,
        *,
        every: timedelta | float | None = None,
        lane: str | None = None,
        **options: Any,
    ) -> Callable[[Callable[..., Any]], Task]:
        """Register a task that is enqueued once per tick of ``cron`` or ``every``.

        At most one job per tick however many workers run, with no scheduler process;
        ticks missed while no worker ran are not replayed. Takes the options of ``task``,
        and ``lane``: the ticks' jobs go on that lane, so a tick never starts while the
        one before it still runs (or waits for a retry), and they run in tick order.
        """
        schedule_args = (cron, every, lane)
        _not_reserved(options.get("name"))

        def register(fn: Callable[..., Any]) -> Task:
            name = options.get("name") or default_task_name(fn)
            schedule = Schedule.parse(name, *schedule_args)
            task = self._register(fn, {**options, "name": name}, without_args=True)
            self.schedules[task.name] = schedule
            return task

        return register

    def configure_queue(self, queue: str, *, on_dead: OnDead | str) -> None:
        """Set a queue's default ``on_dead`` policy for tasks that do not set their own."""
        self.queue_on_dead[check_name(queue, "queue")] = (
            Options().merge(on_dead=on_dead).on_dead or OnDead.SKIP
        )

    def _execution_layers(self) -> list[Middleware]:
        layers: list[Middleware] = list(self.middleware)
        if self.exception_reporter is not None:
            layers.append(ErrorReporting(self.exception_reporter))
        layers.append(Logging())
        layers.append(Timeout(self.watchdog, lambda name: name in self.tasks and self.tasks[name].is_async))
        return layers

    # --- enqueueing ------------------------------------------------------------------

    def send_task(
        self, name: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> Job:
        """Enqueue a call of task ``name`` without importing it (it runs where registered)."""
        args, kwargs = call_pair((args, {} if kwargs is None else kwargs))
        task = self.tasks.get(name) or Task(
            self,
            _unregistered,
            name=name,
            opts=Options(),
            hooks=Hooks(),
            backoff_s=self.backoff_s,
            backoff_max_s=self.backoff_max_s,
        )
        return self._enqueue(task, [(args, dict(kwargs or {}))], Options().merge(**options))[0]

    def _prepare(
        self,
        task: Task,
        calls: Sequence[tuple[Sequence[Any], Mapping[str, Any]]],
        opts: Options,
        headers: Mapping[str, str] | None = None,
        *,
        observed: bool = True,
    ) -> list[NewJob]:
        """Validate, run the enqueue middleware, encode: the jobs to store, nothing stored yet.

        ``observed=False`` leaves out the layers marked ``observes_enqueue`` (laneway's
        enqueue counter and producer span), for a periodic tick's job: every worker builds
        one and at most one of them is stored, so only the winner's may be observed.
        """
        fields = self._resolve(task, opts)
        layers = self.enqueue_middleware
        if not observed:
            layers = [layer for layer in layers if not getattr(layer, "observes_enqueue", False)]
        if not layers:
            hdrs = dict(headers or {})
            return [self._new_job(task, args, kwargs, hdrs, fields, new_id()) for args, kwargs in calls]
        stack = compose(layers, lambda env: env)
        news = []
        for args, kwargs in calls:
            env = stack(Envelope(new_id(), task, args, dict(kwargs), opts, dict(headers or {})))
            resolved = fields if env.options is opts else self._resolve(task, env.options)
            news.append(self._new_job(task, env.args, env.kwargs, env.headers, resolved, env.id))
        return news

    def mapped_priority(self, priority: int) -> int:
        """``priority`` through ``priority_map``, which maps legacy numbers only: laneway's
        own levels (``laneway.HIGH`` ...) pass unchanged even where a legacy number equals one."""
        return priority if isinstance(priority, Priority) else self.priority_map.get(priority, priority)

    def _resolve(self, task: Task, o: Options) -> dict[str, Any]:
        """The stored fields every call with these options shares (checked once per batch)."""
        t, d = task.opts, self.defaults
        queue = o.queue or t.queue or self.default_queue
        priority = o.priority if o.priority is not None else t.priority
        priority = Priority.NORMAL if priority is None else self.mapped_priority(priority)
        count(priority, "priority (an int or a level)", least=C.PRIORITY_MIN, most=C.PRIORITY_MAX)
        if o.delay and o.run_at is not None:
            raise ConfigError(f"give delay or run_at, not both (delay={o.delay:g}, run_at={o.run_at:g})")
        return {
            "task": task.name,
            "queue": queue,
            "lane": o.lane,
            "priority": int(priority),
            "max_attempts": _first(o.max_attempts, t.max_attempts, d.max_attempts),
            "timeout_s": o.timeout if o.timeout is not None else t.timeout,
            "unique": o.unique,
            "result_ttl_s": _first(o.result_ttl, t.result_ttl, d.result_ttl),
            "on_dead": o.on_dead or t.on_dead or self.queue_on_dead.get(queue) or OnDead.SKIP,
            "delay_s": o.delay or 0.0,
            "run_at": o.run_at,
        }

    def _new_job(
        self,
        task: Task,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        headers: Mapping[str, str],
        fields: dict[str, Any],
        job_id: str,
    ) -> NewJob:
        task.check_args(args, kwargs)
        payload = self.codec.encode_call(args, kwargs, headers)
        if len(payload) > self.max_payload_bytes:
            raise PayloadTooLarge(
                f"{task.name}: encoded call is {len(payload)} bytes, over max_payload_bytes="
                f"{self.max_payload_bytes}; nothing was enqueued"
            )
        return NewJob(id=job_id, payload=payload, **fields)

    def _enqueue(
        self, task: Task, calls: Sequence[tuple[Sequence[Any], Mapping[str, Any]]], opts: Options
    ) -> list[Job]:
        news = self._prepare(task, calls, opts)
        results = self.backend.enqueue(news, connection=opts.connection)
        return self._after_enqueue(task, results, news)

    async def _enqueue_async(
        self, task: Task, calls: Sequence[tuple[Sequence[Any], Mapping[str, Any]]], opts: Options
    ) -> list[Job]:
        if opts.connection is not None:
            raise ConfigError("connection= needs the sync enqueue (the transaction is the caller's)")
        news = self._prepare(task, calls, opts)
        results = await self.backend.enqueue_async(news)
        return self._after_enqueue(task, results, news)

    def _after_enqueue(
        self, task: Task, results: Sequence[EnqueueResult], news: Sequence[NewJob]
    ) -> list[Job]:
        """The enqueued jobs, after the ``enqueue`` hook of each one this call created."""
        jobs = [Job(self, r.id) for r in results]
        if task.hooks.enqueue is not None or task.own_enqueue_hook:
            for new, r in zip(news, results, strict=True):
                if r.created:  # its call as stored, not read back: the row may be in the caller's transaction
                    self._enqueue_hook(task, Job(self, r.id, call=decode_call(new.payload)))
        return jobs

    def _enqueue_hook(self, task: Task, job: Job) -> None:
        """Call ``task``'s enqueue hook; the job is stored already, so an exception is logged,
        not raised (a caller retrying the enqueue would store it twice)."""
        try:
            if task.own_enqueue_hook:
                hook = task.prepare_args(job.args, job.kwargs).hooks.enqueue
            else:
                hook = task.hooks.enqueue
            if hook is not None:
                hook(job)
        except Exception:
            log.exception("the enqueue hook of %s failed for job %s (the job is enqueued)", task.name, job.id)

    def get_job(self, job_id: str) -> Job | None:
        """The job with ``job_id``, or None if there is none."""
        if not isinstance(job_id, str):
            raise TypeError(f"job ids are strings, not {type(job_id).__name__} ({job_id!r:.50})")
        rec = self.backend.get_job(job_id)
        return None if rec is None else Job(self, job_id, record=rec)

    # --- low-level lanes -------------------------------------------------------------

    def lane(self, lane_id: str, queue: str = C.DEFAULT_QUEUE) -> LaneProducer:
        """A producer for one lane of ``queue`` (SPEC §4, the WorkerRoulette model)."""
        from ._lanes import LaneProducer

        return LaneProducer(self, lane_id, queue)

    def claim(self, queue: str, batch: int = 1, *, lease_s: float | None = None) -> Batch | None:
        """Take the next ready lane of ``queue`` with up to ``batch`` of its messages."""
        from ._lanes import claim_batch

        return claim_batch(self, queue, batch, self.lease_s if lease_s is None else lease_s)

    def batches(
        self,
        queue: str,
        batch: int = 1,
        *,
        on_ready: Callable[[], Any] | None = None,
        lease_s: float | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[Batch]:
        """Yield batches of ``queue`` as they come, blocking (no busy loop) in between.

        ``on_ready`` is called once the iterator is waiting for work; setting ``stop``
        ends the iteration.
        """
        from ._lanes import iter_batches

        return iter_batches(self, queue, batch, on_ready, self.lease_s if lease_s is None else lease_s, stop)

    # --- running -----------------------------------------------------------------------

    def worker(self, queues: Sequence[str] | str | None = None, **settings: Any) -> Worker:
        """A worker for ``queues`` (priority order). See ``laneway.Worker`` for settings."""
        from ._worker import Worker

        return Worker(self, queues, **settings)

    def run_until_idle(self, queues: Sequence[str] | None = None, *, max_jobs: int = 100_000) -> int:
        """Run every job that is due now, one at a time in this thread; returns how many.

        For unit tests and scripts: retries and delayed jobs that are not yet due stay
        (advance the test clock and call again). Queues default to every queue with jobs.
        The app's listeners see each claim and outcome, as with a worker.
        """
        from ._execute import Runner
        from ._worker import notify

        runner = Runner(self)
        done = 0
        try:
            while done < max_jobs:
                names = list(queues) if queues is not None else [s.queue for s in self.backend.stats()]
                claimed = self.backend.claim(names, worker="inline", limit=1, lease_s=self.lease_s)
                if not claimed:
                    break
                notify(self.listeners, "on_claim", claimed)
                ran = runner.run(claimed[0])
                accepted = ran.accepted if ran.applied else self.backend.finish([ran.outcome])[0]
                notify(self.listeners, "on_finish", ran.outcome, accepted)
                done += 1
        finally:
            runner.loop.close()
        return done

    async def run_until_idle_async(self, queues: Sequence[str] | None = None) -> int:
        """``run_until_idle`` for async tests (runs in a thread)."""
        return await asyncio.to_thread(self.run_until_idle, queues)


def default_task_name(target: Any) -> str:
    """``module.qualname`` without the ``<locals>``/``<lambda>`` brackets."""
    raw = f"{target.__module__}.{target.__qualname__}"
    return re.sub(r"[^A-Za-z0-9_.:@/+=-]", "", raw)


def _first(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def _not_reserved(name: object) -> None:
    """``ConfigError`` if a user's task ``name`` is in laneway's own name space."""
    if isinstance(name, str) and name.startswith(C.RESERVED_PREFIX):
        raise ConfigError(f"task name {name!r}: names starting with {C.RESERVED_PREFIX!r} are laneway's own")


def _check_layers(layers: Sequence[Middleware], what: str) -> list[Middleware]:
    """``layers`` as a list, or ``ConfigError`` naming the first that is not callable."""
    out = list(layers)
    for i, layer in enumerate(out):
        if not callable(layer):
            raise ConfigError(f"{what}[{i}] must be callable(envelope, call_next), not {layer!r}")
    return out


def _unregistered(*_args: Any, **_kwargs: Any) -> None:
    raise ConfigError("a task sent by name runs on the worker that registered it")
