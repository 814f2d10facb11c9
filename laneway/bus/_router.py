"""Fan-out: turn one event into one job per matching subscription, in one atomic enqueue.

Used by the driver's fan-out job (on a worker), by standalone publishers, and by the
heartbeat. Each copy is a job of the subscription's task on the subscription's queue,
on the event's lane, with the subscription's options, and with two deterministic names
derived from (event id, app, subscription key):

- its job id (``copy_id``), and
- its ``unique`` key, so enqueueing the same copy again while it is pending returns
  the pending job instead of adding one (atomic, inside ``backend.enqueue``).

A unique key only covers *pending* jobs. When a fan-out job runs again after its
worker died between enqueue and ack, a copy that has already *finished* would be
enqueued afresh. So a fan-out that is not on its first clean delivery first asks the
backend which copies exist (``get_job`` on their known ids) and leaves those out: a
subscriber receives each event at most once while its copy's record is kept
(``result_ttl``, one day by default). The handler itself is still at-least-once, like
every laneway job: a worker killed while running a copy runs it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._errors import PayloadTooLarge
from .._middleware import Envelope, compose
from .._records import NewJob
from .._task import Hooks, Options, Task
from ._events import Event, copy_id, rider_event
from ._registry import RegistryCache, Subscription

if TYPE_CHECKING:
    from .._app import App

log = logging.getLogger("laneway.bus")


def _runs_in_subscriber(*_args: Any, **_kwargs: Any) -> None:
    """Target of the placeholder tasks copies are built with (they run in the subscriber)."""
    raise RuntimeError("a bus copy runs in its subscriber's worker, not here")


class Router:
    """Builds and stores copies of events for one app (the one doing the fan-out)."""

    def __init__(self, app: App, cache: RegistryCache) -> None:
        self.app = app
        self.cache = cache
        self._shells: dict[tuple[str, str], Task] = {}

    def matching(self, event: Event) -> list[Subscription]:
        """Stored subscriptions whose matcher accepts ``event``, by (app, key)."""
        return [s for s in self.cache.get(self.app.backend) if s.matcher.matches(event)]

    def route(
        self,
        event: Event,
        *,
        careful: bool = False,
        delay_s: float = 0.0,
        run_at: float | None = None,
        connection: Any = None,
    ) -> list[NewJob]:
        """Enqueue a copy of ``event`` for every matching subscription, in one call.

        Args:
            event: the checked event, metadata included.
            careful: leave out copies that already exist in any state (a fan-out that
                may have run before).
            delay_s, run_at: delay the copies (standalone publishing of delayed events).
            connection: the caller's SQL transaction to enqueue in.

        Returns:
            The copies enqueued (or matched to pending ones by their unique key).
        """
        copies = [self.copy(event, sub, delay_s, run_at) for sub in self.matching(event)]
        if careful:
            backend = self.app.backend
            copies = [c for c in copies if backend.get_job(c.id) is None]
        if copies:
            self.app.backend.enqueue(copies, connection=connection)
        log.debug("event %s (%s): %d copies", event.get("bus_id"), event.get("bus_event_type"), len(copies))
        return copies

    def copy(
        self, event: Event, sub: Subscription, delay_s: float = 0.0, run_at: float | None = None
    ) -> NewJob:
        """The job that carries ``event`` to ``sub``."""
        job_id = copy_id(str(event["bus_id"]), sub.app, sub.key)
        opts = Options(lane=event.get("bus_lane"), unique=f"laneway.bus:{job_id}")
        env = Envelope(job_id, self._shell(sub), (rider_event(event, sub),), {}, opts, {})
        if self.app.enqueue_middleware:
            env = _enqueue_stack(self.app)(env)
        payload = self.app.codec.encode_call(env.args, env.kwargs, env.headers)
        if len(payload) > self.app.max_payload_bytes:
            raise PayloadTooLarge(
                f"copy of event {event.get('bus_id')} for {sub.app}/{sub.key} is {len(payload)} bytes, "
                f"over max_payload_bytes={self.app.max_payload_bytes}; nothing was enqueued"
            )
        o = env.options
        return NewJob(
            id=env.id, task=sub.task, queue=o.queue or sub.queue, lane=o.lane,
            priority=sub.priority if o.priority is None else o.priority, payload=payload,
            max_attempts=o.max_attempts or sub.max_attempts,
            timeout_s=sub.timeout_s if o.timeout is None else o.timeout, unique=o.unique,
            result_ttl_s=sub.result_ttl_s if o.result_ttl is None else o.result_ttl,
            on_dead=o.on_dead or sub.on_dead, delay_s=delay_s, run_at=run_at,
        )  # fmt: skip

    def _shell(self, sub: Subscription) -> Task:
        """A placeholder ``Task`` for enqueue middleware to see (the real one is remote)."""
        shell = self._shells.get((sub.app, sub.key))
        if shell is None or shell.name != sub.task or shell.opts.queue != sub.queue:
            shell = Task(
                self.app, _runs_in_subscriber, name=sub.task,
                opts=Options(queue=sub.queue, priority=sub.priority, max_attempts=sub.max_attempts),
                hooks=Hooks(), backoff_s=self.app.backoff_s, backoff_max_s=self.app.backoff_max_s,
            )  # fmt: skip
            self._shells[(sub.app, sub.key)] = shell
        return shell


def _enqueue_stack(app: App) -> Callable[[Envelope], Envelope]:
    return compose(app.enqueue_middleware, lambda env: env)
