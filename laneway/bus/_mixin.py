"""``App``'s event-bus methods (``subscribe``, ``publish``, ...).

``laneway.App`` inherits ``BusMixin``; the bus keeps its state in one ``_BusState``
made on first use (``App.__init__`` does not know about the bus). What subscribing
does to the app, all at subscribe time so workers built later see it:

- the handler is registered as an ordinary laneway task (retries, dead letters,
  timeouts and hooks all apply, per subscriber);
- the subscription's queue and the bus's driver queue join ``app.system_queues``, so
  every worker of the app also serves them;
- the reserved fan-out and heartbeat tasks are registered, so this app's workers can
  fan out any app's events;
- a hook on ``app.on_worker_start`` stores the app's subscriptions in the backend's
  registry each time one of its workers starts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .._checks import seconds
from .._errors import ConfigError, Fail, PayloadTooLarge
from .._execute import current_job
from .._names import check_name
from .._periodic import Schedule
from .._records import JobRecord, OnDead, Priority
from .._task import Hooks, Options, Task
from . import _constants as C
from . import _inline, _registry
from ._events import Event, build_event, check_attrs, check_event, heartbeat_event
from ._matchers import Matcher, MatcherSpec
from ._registry import RegistryCache, Subscription
from ._router import Router
from ._subscriber import handler_for, marked_methods, merge_options

if TYPE_CHECKING:
    from .._app import App
    from .._worker import Worker

log = logging.getLogger("laneway.bus")
T = TypeVar("T")
_state_lock = threading.Lock()


class BusMode(str, Enum):
    """How ``publish`` delivers (set with ``app.configure_bus(mode=...)``)."""

    DRIVER = "driver"
    """Store the event once as a fan-out job; workers copy it to each subscriber (default)."""
    STANDALONE = "standalone"
    """The publisher copies the event into every matching subscriber's queue itself."""
    INLINE = "inline"
    """Run this process's matching handlers inside ``publish`` (tests)."""


@dataclass(slots=True)
class _Local:
    """A subscription declared in this process, with its task."""

    key: str
    matcher: Matcher
    queue: str
    task: Task


@dataclass(slots=True)
class _BusState:
    lock: threading.RLock = field(default_factory=threading.RLock)
    mode: BusMode = BusMode.DRIVER
    heartbeat: bool | None = None
    subscriptions: dict[str, _Local] = field(default_factory=dict)
    hooks: list[Callable[[Event], Event | None]] = field(default_factory=list)
    cache: RegistryCache = field(default_factory=RegistryCache)
    router: Router | None = None
    log: deque[Event] | None = None
    worker_side: bool = False
    fanout_shell: Task | None = None


def _redelivered(rec: JobRecord | None) -> bool:
    """Whether a job may have run before (so its fan-out must check what exists)."""
    return rec is None or rec.attempts > 1 or rec.error is not None


class BusMixin:
    """Event-bus methods of ``laneway.App``: publish events, subscribe to them."""

    _bus_state: _BusState | None = None

    # --- state and configuration -----------------------------------------------------

    def _bus(self) -> _BusState:
        state = self._bus_state
        if state is None:
            with _state_lock:
                state = self._bus_state
                if state is None:
                    state = self._bus_state = _BusState()
        return state

    def _bus_app(self) -> App:
        return cast("App", self)

    def configure_bus(
        self,
        *,
        mode: BusMode | str | None = None,
        heartbeat: bool | None = None,
        registry_ttl_s: float | None = None,
        record: bool | None = None,
    ) -> None:
        """Configure this app's side of the event bus (arguments left None keep their value).

        Args:
            mode: ``"driver"`` (default), ``"standalone"`` or ``"inline"``; see ``BusMode``.
                Inline mode also turns ``record`` on.
            heartbeat: whether this app's workers publish ``bus.heartbeat`` once a minute
                (at most once across all workers). By default they do when the app
                subscribes to ``"bus.heartbeat"`` by its exact name.
            registry_ttl_s: how long this app reuses the subscription registry it read
                (default 1 s); 0 reads it on every publish and fan-out.
            record: keep the events this app publishes in memory, for
                ``laneway.bus.testing.published`` (the last 100,000).
        """
        state = self._bus()
        with state.lock:
            if mode is not None:
                try:
                    state.mode = BusMode(mode)
                except ValueError:
                    raise ConfigError(
                        f"bus mode must be driver, standalone or inline, not {mode!r}"
                    ) from None
                if state.mode is BusMode.INLINE and record is None:
                    record = True
            if registry_ttl_s is not None:
                state.cache.ttl_s = seconds(registry_ttl_s, "registry_ttl_s")
            if record is not None:
                state.log = deque(state.log or (), maxlen=C.PUBLISHED_LOG_MAX) if record else None
            if heartbeat is not None:
                state.heartbeat = heartbeat
                if heartbeat:
                    self._bus_require_name("publish heartbeats")
                    self._bus_enable_worker_side()
                self._bus_sync_heartbeat()

    @property
    def bus_mode(self) -> BusMode:
        """How this app's ``publish`` delivers."""
        return self._bus().mode

    def _bus_require_name(self, what: str) -> str:
        name = self._bus_app().name
        if name is None:
            raise ConfigError(f"to {what}, the app needs a name on the bus: App(url, name='billing')")
        return name

    def _bus_router(self) -> Router:
        state = self._bus()
        if state.router is None:
            state.router = Router(self._bus_app(), state.cache)
        return state.router

    # --- subscribing ---------------------------------------------------------------------

    def subscribe(
        self, matcher: MatcherSpec, *, queue: str | None = None, key: str | None = None, **task_options: Any
    ) -> Callable[[Callable[..., Any] | Task], Task]:
        """Decorator: run the function for every event ``matcher`` accepts.

        The function takes the event (a dict) and is registered as a laneway task, so
        retries, dead letters, timeouts and hooks apply to this subscriber alone.
        Decorators stack (one task, several subscriptions).

        Args:
            matcher: an event type (``"user_created"``), a compiled regex on the event
                type, or a dict of attribute conditions, ANDed (exact values, compiled
                regexes, ``present()``, ``blank()``, ``empty()``, ``nil()``, ``value()``,
                ``key()``).
            queue: the queue this app's copies go to; default ``<app name>_default``.
                Never share a subscriber queue between apps of one namespace.
            key: the subscription's key, unique within the app; default
                ``<task name>[<matcher label>]``.
            **task_options: options of the handler's task, as for ``@app.task``.

        Raises:
            ConfigError: the app has no name, the matcher is invalid, or the key is taken.
        """
        name = self._bus_require_name("subscribe")
        built = Matcher.build(matcher)
        target_queue = check_name(queue if queue is not None else f"{name}_default", "queue")
        if key is not None and (not isinstance(key, str) or not key):
            raise ConfigError(f"a subscription key must be a non-empty string, not {key!r}")

        def decorate(target: Callable[..., Any] | Task) -> Task:
            return self._bus_add(built, target, target_queue, key, task_options)

        return decorate

    def subscriber(self, cls: type[T] | None = None, *, queue: str | None = None, **task_options: Any) -> Any:
        """Class decorator: register every ``@laneway.bus.on(...)`` method as a subscription.

        Usable bare (``@app.subscriber``) or with defaults for its methods
        (``@app.subscriber(queue="billing", max_attempts=5)``). Each method becomes a task
        named ``module.Class.method`` that makes a fresh instance per event.
        """

        def register(klass: type[T]) -> type[T]:
            name = self._bus_require_name("subscribe")
            methods = marked_methods(klass)
            if not methods:
                raise ConfigError(f"{klass.__qualname__} has no method marked with @laneway.bus.on(...)")
            for attr, method, specs in methods:
                where = f"{klass.__qualname__}.{attr}"
                target: Callable[..., Any] | Task = handler_for(klass, attr, method)
                options = merge_options(task_options, specs, where)
                for spec in specs:
                    q = spec.queue or queue
                    target = self._bus_add(
                        Matcher.build(spec.matcher), target,
                        check_name(q or f"{name}_default", "queue"), spec.key, options,
                    )  # fmt: skip
                    options = {}
            return klass

        return register(cls) if cls is not None else register

    def _bus_add(
        self, matcher: Matcher, target: Callable[..., Any] | Task, queue: str, key: str | None,
        options: Mapping[str, Any],
    ) -> Task:  # fmt: skip
        app = self._bus_app()
        state = self._bus()
        with state.lock:
            task = self._bus_task_for(target, queue, options)
            sub_key = key or f"{task.name}[{matcher.label}]"
            if sub_key in state.subscriptions:
                raise ConfigError(f"app {app.name!r} already has a subscription with key {sub_key!r}")
            local = _Local(sub_key, matcher, queue, task)
            self._bus_resolve(local)
            state.subscriptions[sub_key] = local
            if queue not in app.system_queues:
                app.system_queues.append(queue)
            self._bus_enable_worker_side()
            self._bus_sync_heartbeat()
        _inline.remember(app)
        return task

    def _bus_task_for(
        self, target: Callable[..., Any] | Task, queue: str, options: Mapping[str, Any]
    ) -> Task:
        app = self._bus_app()
        if not isinstance(target, Task):
            target = next((t for t in app.tasks.values() if t.target is target), target)
        if isinstance(target, Task):
            if target.app is not app:
                raise ConfigError(f"task {target.name!r} belongs to another app")
            if options:
                raise ConfigError(
                    f"task {target.name!r} is already registered; give task options "
                    "(max_attempts, timeout ...) to its first @subscribe only"
                )
            return target
        if not callable(target):
            raise ConfigError(f"subscribe decorates a function or a task, not {target!r}")
        return app._register(target, {"queue": queue, **options})

    def _bus_resolve(self, local: _Local) -> Subscription:
        """The stored form of a local subscription: job options resolved now."""
        app = self._bus_app()
        t, d = local.task.opts, app.defaults
        level = Priority.NORMAL if t.priority is None else t.priority
        priority = app.mapped_priority(level)
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 255:
            raise ConfigError(f"priority must be an int from 0 to 255 (or a level), not {priority!r}")
        return Subscription(
            app=self._bus_require_name("subscribe"), key=local.key, queue=local.queue,
            task=local.task.name, matcher=local.matcher, priority=int(priority),
            max_attempts=t.max_attempts or d.max_attempts or 1, timeout_s=t.timeout,
            result_ttl_s=t.result_ttl if t.result_ttl is not None else float(d.result_ttl or 0.0),
            on_dead=t.on_dead or app.queue_on_dead.get(local.queue) or OnDead.SKIP,
        )  # fmt: skip

    def _bus_enable_worker_side(self) -> None:
        """Let this app's workers fan out events and keep the registry (idempotent)."""
        app = self._bus_app()
        state = self._bus()
        with state.lock:
            if state.worker_side:
                return
            app._register(self._bus_fanout_job, {"name": C.FANOUT_TASK, "queue": C.DRIVER_QUEUE})
            app._register(self._bus_heartbeat_job, {"name": C.HEARTBEAT_TASK, "queue": C.DRIVER_QUEUE})
            if C.DRIVER_QUEUE not in app.system_queues:
                app.system_queues.insert(0, C.DRIVER_QUEUE)
            app.on_worker_start.append(self._bus_on_worker_start)
            state.worker_side = True

    def _bus_sync_heartbeat(self) -> None:
        """Schedule the heartbeat when asked to, or when subscribed to it by name."""
        app = self._bus_app()
        state = self._bus()
        wanted = state.heartbeat
        if wanted is None:
            wanted = any(s.matcher.event_type == C.HEARTBEAT_EVENT for s in state.subscriptions.values())
        if wanted and state.worker_side:
            # Its jobs on the copies' lane too: minute m+1's fan-out waits for m's, even when
            # the worker running m dies and its lease has to run out first.
            app.schedules[C.HEARTBEAT_TASK] = Schedule.parse(
                C.HEARTBEAT_TASK, None, C.HEARTBEAT_EVERY_S, lane=C.HEARTBEAT_LANE
            )
        else:
            app.schedules.pop(C.HEARTBEAT_TASK, None)

    @property
    def subscriptions(self) -> list[Subscription]:
        """This app's subscriptions as they would be stored, by key."""
        state = self._bus()
        with state.lock:
            locals_ = sorted(state.subscriptions.values(), key=lambda s: s.key)
        return [self._bus_resolve(local) for local in locals_]

    def register_subscriptions(self) -> None:
        """Store this app's subscriptions in the backend now, replacing its previous set.

        Workers do it when they start; call it to publish the set without a worker.
        """
        app = self._bus_app()
        name = self._bus_require_name("register subscriptions")
        subs = self.subscriptions
        queues = {s.queue for s in subs}
        for other in _registry.load(app.backend):
            if other.app != name and other.queue in queues:
                log.warning(
                    "queue %r is also subscribed by app %r: workers of each would claim the other's "
                    "copies and fail them as unknown tasks; give each app its own queues",
                    other.queue, other.app,
                )  # fmt: skip
        _registry.store(app.backend, name, subs)

    def stored_subscriptions(self) -> list[Subscription]:
        """Every app's subscriptions as stored in the backend now, by (app, key)."""
        return _registry.load(self._bus_app().backend)

    def unsubscribe(self, key: str | None = None) -> int:
        """Remove subscription ``key`` of this app, or all of them, here and in the registry.

        Works from any process with this app's name (an operator's script too): the
        stored registry is updated at once. Copies already enqueued still run.

        Returns:
            How many subscriptions were removed.
        """
        app = self._bus_app()
        name = self._bus_require_name("unsubscribe")
        state = self._bus()
        with state.lock:
            doomed = [state.subscriptions.pop(k) for k in list(state.subscriptions) if key in (None, k)]
            used = {local.queue for local in state.subscriptions.values()}
            gone = {local.queue for local in doomed} - used
            app.system_queues[:] = [q for q in app.system_queues if q not in gone]
            self._bus_sync_heartbeat()
        stored = _registry.remove(app.backend, name, key)
        return max(len(doomed), stored)

    def _bus_on_worker_start(self, worker: Worker) -> None:
        state = self._bus()
        with state.lock:
            queues = {local.queue for local in state.subscriptions.values()}
        missing = sorted(q for q in queues if q not in worker.queues)
        if missing:
            log.warning("worker %s does not listen to subscriber queues %s", worker.id, missing)
        self.register_subscriptions()

    # --- publishing ------------------------------------------------------------------------

    def before_publish(self, hook: Callable[[Event], Event | None]) -> Callable[[Event], Event | None]:
        """Register ``hook(event)``, called on every event this app publishes, in order.

        The hook gets the event with its metadata and may change it in place or return a
        new dict; the ``bus_`` metadata is restored afterwards. Usable as a decorator.
        """
        state = self._bus()
        with state.lock:
            state.hooks.append(hook)
        return hook

    def publish(
        self,
        event_type: str,
        attrs: Mapping[str, Any] | None = None,
        *,
        lane: str | None = None,
        delay: float | timedelta | None = None,
        at: datetime | float | None = None,
        connection: Any = None,
    ) -> Event:
        """Publish an event to every app that subscribes to it.

        Args:
            event_type: what happened, e.g. ``"user_created"`` (``bus_event_type``).
            attrs: JSON attributes (str keys not starting with ``bus_``).
            lane: events of one lane reach each subscriber in publish order, one at a time.
            delay: seconds (or a timedelta) before the event is delivered.
            at: when to deliver it (aware datetime or epoch seconds); not with ``delay``.
            connection: on SQL backends, publish inside this open transaction (visible
                only if it commits).

        Returns:
            The published event, metadata included (``event["bus_id"]`` identifies it).

        Raises:
            EncodeError: an attribute is not JSON (nothing was published).
            PayloadTooLarge: the event is too large for ``max_payload_bytes``.
            ConfigError: bad lane, delay, time, event type or reserved attribute name.
        """
        if delay is not None and at is not None:
            raise ConfigError("give delay= or at=, not both")
        opts = Options().merge(lane=lane, delay=delay, run_at=at)
        due = opts.run_at if opts.run_at is not None else time.time() + opts.delay if opts.delay else None
        app = self._bus_app()
        event = build_event(event_type, check_attrs(attrs), app=app.name, lane=opts.lane, delayed_until=due)
        event = self._bus_run_hooks(event)
        state = self._bus()
        if state.mode is BusMode.INLINE:
            self._bus_record(event)
            self._bus_publish_inline(event)
        elif state.mode is BusMode.STANDALONE:
            self._bus_check_size(event)
            self._bus_router().route(
                event, delay_s=opts.delay or 0.0, run_at=opts.run_at, connection=connection
            )
            self._bus_record(event)
        else:
            self._bus_publish_driver(event, opts, connection)
            self._bus_record(event)
        return event

    def _bus_run_hooks(self, event: Event) -> Event:
        state = self._bus()
        if not state.hooks:
            return event
        meta = {k: v for k, v in event.items() if k.startswith(C.RESERVED_PREFIX)}
        for hook in list(state.hooks):
            changed = hook(event)
            if changed is not None:
                event = changed
        if not isinstance(event, dict):
            raise ConfigError(f"a before_publish hook returned {type(event).__name__}, not a dict")
        event.update(meta)
        return check_event(event)

    def _bus_check_size(self, event: Event) -> int:
        app = self._bus_app()
        size = len(app.codec.dumps(event, "event")) + C.COPY_OVERHEAD_BYTES
        if size > app.max_payload_bytes:
            raise PayloadTooLarge(
                f"event {event[C.EVENT_TYPE]!r} needs about {size} bytes with the bus's metadata, over "
                f"max_payload_bytes={app.max_payload_bytes}; nothing was published"
            )
        return size

    def _bus_publish_driver(self, event: Event, opts: Options, connection: Any) -> None:
        app = self._bus_app()
        self._bus_check_size(event)
        news = app._prepare(self._bus_fanout_task(), [((event,), {})], opts.merge(queue=C.DRIVER_QUEUE))
        app.backend.enqueue(news, connection=connection)

    def _bus_fanout_task(self) -> Task:
        """The fan-out task: registered here if this app subscribes, else a placeholder."""
        app = self._bus_app()
        state = self._bus()
        task = app.tasks.get(C.FANOUT_TASK) or state.fanout_shell
        if task is None:
            task = state.fanout_shell = Task(
                app, self._bus_fanout_job, name=C.FANOUT_TASK, opts=Options(queue=C.DRIVER_QUEUE),
                hooks=Hooks(), backoff_s=app.backoff_s, backoff_max_s=app.backoff_max_s,
            )  # fmt: skip
        return task

    def _bus_publish_inline(self, event: Event) -> None:
        targets: list[tuple[Subscription, Task]] = []
        for other in _inline.apps_on_bus(self._bus_app()):
            state = other._bus()
            with state.lock:
                locals_ = sorted(state.subscriptions.values(), key=lambda s: s.key)
            targets += [(other._bus_resolve(local), local.task) for local in locals_]
        _inline.deliver(targets, event)

    def _bus_record(self, event: Event) -> None:
        log_ = self._bus().log
        if log_ is not None:
            log_.append(event)

    # --- the jobs this app's workers run -------------------------------------------------------

    def _bus_fanout_job(self, event: Any) -> None:
        """Fan-out job: copy ``event`` to every subscriber it matches, in one enqueue."""
        event = check_event(event)
        job = current_job()
        try:
            self._bus_router().route(event, careful=_redelivered(job.record if job else None))
        except PayloadTooLarge as exc:
            raise Fail(str(exc)) from exc

    def _bus_heartbeat_job(self) -> None:
        """Periodic job: publish this minute's ``bus.heartbeat`` to its subscribers."""
        job = current_job()
        rec = job.record if job else None
        minute = rec.enqueued_at if rec is not None else self._bus_app().backend.now()
        event = heartbeat_event(minute, self._bus_app().name)
        self._bus_router().route(event, careful=_redelivered(rec))
