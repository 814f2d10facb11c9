"""The worker: pulls work only for free slots, runs it, acks it, keeps its leases alive.

Threads of one worker:

- the *fetch loop* (the thread that calls ``run``): claims up to ``free slots`` jobs in
  one round trip and hands each lane's jobs to an executor; when a claim finds nothing it
  passes the waiting to an idle executor and sleeps on its slot condition;
- ``concurrency`` *executors* (``LOOP_EXECUTORS`` when every task runs on the event
  loop): run a lane's claimed jobs in order in their thread. The
  one holding the idle wait blocks in ``backend.wait_and_claim`` (woken by the backend)
  and runs the first lane it claims itself, so a pickup on an idle worker wakes no other
  thread;
- the *event loop* thread: a lane's claimed jobs whose handlers are all ``async def`` run
  there as one asyncio task, with no executor of their own (``Runner.runs_on_loop``);
- the *acker*: sends every outcome that is ready in one ``finish`` round trip, then frees
  the slots, so a slot counts as busy until its job is acked;
- the *maintainer*: renews leases (``heartbeat_s``), sweeps dead workers' leases
  (``sweep_s``) and enqueues due periodic ticks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Protocol

from . import _constants as C
from ._checks import count, seconds
from ._errors import ConfigError, JobTimeout
from ._execute import AsyncLoop, Ran, Runner
from ._names import check_name
from ._records import EnqueueResult, JobRecord, OnDead, Outcome, Verdict
from ._task import Options

if TYPE_CHECKING:
    from ._app import App

log = logging.getLogger("laneway.worker")


class WorkerListener(Protocol):
    """Observes a worker (metrics, history recording). Called from worker threads.

    A listener may also define ``on_finishing(outcomes)``, called just before outcomes
    are sent to the backend (the last moment before their lanes can be released).
    """

    def on_claim(self, records: Sequence[JobRecord]) -> None: ...

    def on_finish(self, outcome: Outcome, accepted: bool) -> None: ...


def notify(listeners: Sequence[WorkerListener], hook: str, *args: object) -> None:
    """Call ``hook`` (``on_claim``, ``on_finishing``, ``on_finish``) on every listener that
    has it. A listener that raises is logged and skipped: observing must never stop the
    worker's fetch or ack loop."""
    for listener in listeners:
        method = getattr(listener, hook, None)
        if method is None:
            continue
        try:
            method(*args)
        except Exception:
            log.exception("listener %r raised in %s; the worker carries on", listener, hook)


@dataclass(slots=True)
class WorkerStats:
    """What one ``run`` did."""

    claim_calls: int = 0
    """Claim round trips made."""
    empty_claims: int = 0
    """Claim round trips that found nothing ready."""
    claimed: int = 0
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    released: int = 0
    refused: int = 0
    """Outcomes refused because the lease had been lost (fencing)."""


def _keeps_going(out: Outcome, rec: JobRecord) -> bool:
    """Whether the rest of a lane batch may run after this outcome."""
    if out.verdict is Verdict.SUCCEEDED:
        return True
    return out.verdict is Verdict.DEAD and rec.on_dead is OnDead.SKIP


def queue_names(queues: Sequence[str] | str | None) -> list[str]:
    """``queues`` (a list, or ``"a,b"`` with empty names dropped) with every name checked,
    each once, in the order first given (``"q,q"`` is ``["q"]``)."""
    if isinstance(queues, str):
        queues = [q for q in queues.split(",") if q]
    return list(dict.fromkeys(check_name(q, "queue") for q in queues or ()))


def default_concurrency(app: App, runner: Runner | None = None) -> int:
    """Slots a worker of ``app`` gets unless told: ``CONCURRENCY_ASYNC`` (64) when every
    task registered so far runs on the event loop (``async def``, not transactional, and
    every execution middleware has ``acall``), so a slot is a coroutine; else
    ``CONCURRENCY`` (16), a thread each. laneway's own ``laneway.*`` tasks do not count."""
    on_loop = (runner or Runner(app)).all_on_loop()
    return C.CONCURRENCY_ASYNC if on_loop else C.CONCURRENCY


@dataclass(frozen=True, slots=True)
class _IdleWait:
    """Work-queue item: the executor taking it waits for work for ``reserved`` slots."""

    reserved: int


class Worker:
    """Runs jobs from ``queues`` (in priority order) with ``concurrency`` slots.

    Args:
        app: the app whose tasks run here.
        queues: queue names, highest priority first; default: the app's default queue.
        concurrency: slots, i.e. jobs held at once (never more are claimed); default
            ``default_concurrency(app)``: 16, or 64 when every task runs on the event loop.
        batch: consecutive jobs of one lane taken per claimed lane (they run in order).
        lease_s, heartbeat_s, sweep_s, grace_s, idle_wait_s: timings (see constants).
        worker_id: name shown in leases; default ``host:pid:random``.
        listener: optional ``WorkerListener`` (metrics, history).
        periodic: whether this worker enqueues periodic ticks (default True).
    """

    def __init__(
        self,
        app: App,
        queues: Sequence[str] | str | None = None,
        *,
        concurrency: int | None = None,
        batch: int = 1,
        lease_s: float | None = None,
        heartbeat_s: float | None = None,
        sweep_s: float = C.SWEEP_S,
        grace_s: float = C.GRACE_S,
        idle_wait_s: float = C.IDLE_WAIT_S,
        worker_id: str | None = None,
        listener: WorkerListener | None = None,
        periodic: bool = True,
    ) -> None:
        self.app = app
        own = queue_names(queues) or [app.default_queue]
        self.queues = own + [q for q in app.system_queues if q not in own]
        self._loop = AsyncLoop()
        self._runner = Runner(app, self._loop)
        if concurrency is None:
            concurrency = default_concurrency(app, self._runner)
        self.concurrency = count(concurrency, "concurrency")
        self.batch = count(batch, "batch")
        self.lease_s = app.lease_s if lease_s is None else seconds(lease_s, "lease_s", positive=True)
        if heartbeat_s is None:
            heartbeat_s = min(C.HEARTBEAT_S, self.lease_s / 3)
        self.heartbeat_s = seconds(heartbeat_s, "heartbeat_s", positive=True)
        if self.heartbeat_s >= self.lease_s:
            raise ConfigError(
                f"heartbeat_s ({self.heartbeat_s:g}) must be well under lease_s ({self.lease_s:g}): "
                "leases would run out between renewals"
            )
        self.sweep_s = seconds(sweep_s, "sweep_s", positive=True)
        self.grace_s = seconds(grace_s, "grace_s")
        self.idle_wait_s = seconds(idle_wait_s, "idle_wait_s", positive=True)
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.listeners = [*app.listeners, *([listener] if listener is not None else [])]
        self.periodic = periodic
        self.stats = WorkerStats()
        self._cond = threading.Condition()
        self._free = concurrency
        self._held: dict[int, dict[str, JobRecord]] = {}
        self._sending: set[str] = set()  # job ids whose outcome is on its way to the backend
        self._work: queue.SimpleQueue[list[JobRecord] | _IdleWait | None] = queue.SimpleQueue()
        self._waiting = False  # an executor is in _idle_wait
        self._quiet_until = 0.0  # failed backend calls are not logged again before this
        self._acks: queue.SimpleQueue[Ran | list[Ran] | None] = queue.SimpleQueue()
        self._loop_acks: list[Ran] = []  # verdicts of this event-loop iteration (_ack_on_loop)
        self._stopping = threading.Event()
        self._hard_stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started_executors = 0  # fixed when the threads start; shutdown stops that many
        self._last_ticks: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"<Worker {self.id} queues={self.queues} concurrency={self.concurrency}>"

    @property
    def held(self) -> int:
        """Jobs this worker holds right now (claimed and not yet acked)."""
        with self._cond:
            return sum(len(jobs) for jobs in self._held.values())

    def stop(self) -> None:
        """Ask the worker to stop: no more claims, running jobs finish within ``grace_s``,
        claimed jobs that have not started are released. Safe from any thread."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()

    # --- the fetch loop ---------------------------------------------------------------------

    def run(self, *, burst: bool = False) -> WorkerStats:
        """Work until ``stop()`` (or SIGTERM/SIGINT when run in the main thread).

        With ``burst=True``, return once nothing is due and nothing is held.
        """
        self.app.backend.reserve(self.concurrency)
        restore = self._install_signals()
        for hook in self.app.on_worker_start:
            hook(self)
        self._start_threads()
        try:
            self._fetch_loop(burst)
        finally:
            self._shutdown()
            restore()
        return self.stats

    def _fetch_loop(self, burst: bool) -> None:
        """Claim for free slots when the acker is not already doing it (an active worker).

        When a claim finds nothing, an idle executor takes over the waiting
        (``_idle_wait``) and this loop sleeps until it is back.
        """
        backend = self.app.backend
        idle = False
        while not self._stopping.is_set():
            with self._cond:
                while (self._free == 0 or self._waiting) and not self._stopping.is_set():
                    self._cond.wait()
                if self._stopping.is_set():
                    return
                reserved, self._free = self._free, 0
                self._waiting = idle
            if idle:
                self._work.put(_IdleWait(reserved))
                idle = False
                continue
            # Read before the claim: a job finishing during an empty claim may have
            # released its lane's next job, so "empty and nothing held" is only final
            # when nothing was held while claiming.
            held_before = self.held
            try:
                recs = backend.claim(
                    self.queues, worker=self.id, limit=reserved, batch=self.batch, lease_s=self.lease_s
                )
            except Exception:  # noqa: BLE001 - a backend hiccup must not end the worker (logged below)
                self._take([], reserved)
                self._pause_after("claim")
                continue
            self._take(recs, reserved)
            if recs:
                continue
            if not burst:
                idle = True
                continue
            if held_before == 0:
                return
            with self._cond:
                self._cond.wait(0.05)

    def _idle_wait(self, reserved: int) -> list[JobRecord] | None:
        """Wait for work in an executor thread, claim it, and return the first lane's jobs
        to run right here (the others go to the other executors).

        The thread that receives the claim runs the job: on the pickup path no other
        thread has to be woken. The ``reserved`` slots (and any freed meanwhile) stay
        reserved while waiting, so the other executors can always run what is held.
        Returns None when nothing was claimed (the fetch loop then claims again).
        """
        backend = self.app.backend
        recs: list[JobRecord] = []
        units: list[list[JobRecord]] = []
        try:
            while not self._stopping.is_set():
                with self._cond:
                    reserved, self._free = reserved + self._free, 0
                try:
                    recs = backend.wait_and_claim(
                        self.queues, self.idle_wait_s, worker=self.id, limit=reserved,
                        batch=self.batch, lease_s=self.lease_s,
                    )  # fmt: skip
                except Exception:  # noqa: BLE001 - as in the fetch loop (logged below)
                    if not self._stopping.is_set():
                        self._pause_after("wait and claim")
                    break
                if recs:
                    break
            units = self._take(recs, reserved, dispatch=False)
            if units and self._stopping.is_set():  # claimed as the worker began to stop
                self._release_all(recs, why="claimed while stopping")
                units = []
        finally:
            with self._cond:
                self._waiting = False
                self._cond.notify_all()
        if units and self._runner.runs_on_loop(units[0]):  # the event loop runs it, not us
            self._dispatch(units)
            return None
        self._dispatch(units[1:])
        return units[0] if units else None

    def _pause_after(self, what: str) -> None:
        """Log a failed backend call and pause ``idle_wait_s`` (or until stopped): the
        worker rides out an outage of any length and claims again within ``idle_wait_s``
        of the backend answering."""
        self._log_failure(what)
        self._stopping.wait(self.idle_wait_s)

    def _log_failure(self, what: str) -> None:
        """Log the exception being handled, with its traceback at most every
        ``FAILURE_LOG_S`` (a backend that is down fails every call until it is back, each
        call having already retried for a while); at debug level in between."""
        now = time.monotonic()
        if now >= self._quiet_until:
            self._quiet_until = now + C.FAILURE_LOG_S
            log.exception("%s failed; retrying", what)
        else:
            log.debug("%s failed again", what, exc_info=True)

    def _take(
        self,
        recs: list[JobRecord],
        reserved: int,
        finished: Sequence[Outcome] = (),
        claimed: bool = True,
        dispatch: bool = True,
    ) -> list[list[JobRecord]]:
        """In one step: drop ``finished`` jobs from what is held, hold ``recs`` (claimed
        for ``reserved`` slots, which include the finished jobs' slots), give back the
        unused slots; then split the new jobs into units (one per lane) and hand them to
        the executors (``dispatch``) or return them."""
        if claimed:
            self.stats.claim_calls += 1
            self.stats.empty_claims += not recs
        with self._cond:
            for out in finished:
                self._sending.discard(out.job_id)
                held = self._held.get(out.token)
                if held is not None:
                    held.pop(out.job_id, None)
                    if not held:
                        del self._held[out.token]
            self._free += reserved - len(recs)
            if recs:
                token = recs[0].token
                assert token is not None
                self._held[token] = {rec.id: rec for rec in recs}
            if self._free or not self._held:  # a slot for the fetch loop, or all done
                self._cond.notify_all()
        if not recs:
            return []
        self.stats.claimed += len(recs)
        notify(self.listeners, "on_claim", recs)
        units = [[recs[0]]]
        for rec in recs[1:]:
            unit = units[-1]
            if rec.lane is not None and rec.lane == unit[-1].lane and rec.queue == unit[-1].queue:
                unit.append(rec)
            else:
                units.append([rec])
        if not dispatch:
            return units
        self._dispatch(units)
        return []

    def _dispatch(self, units: list[list[JobRecord]]) -> None:
        """Hand units to whoever runs them: the event loop for units that run on it (one
        wake-up for all of them), the executors for the others."""
        on_loop = []
        for unit in units:
            if self._runner.runs_on_loop(unit):
                on_loop.append(self._run_unit_async(unit))
            else:
                self._work.put(unit)
        if on_loop:
            self._loop.spawn(on_loop)

    # --- executors and acker ------------------------------------------------------------------

    def _execute_loop(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            unit = self._idle_wait(item.reserved) if isinstance(item, _IdleWait) else item
            if unit is not None:
                self._run_unit(unit)

    def _run_unit(self, unit: list[JobRecord]) -> None:
        """Run one lane's claimed jobs in order in this thread (see ``_unit``)."""
        steps = self._unit(unit, self._acks.put)
        try:
            rec = next(steps)
            while True:
                rec = steps.send(self._run_one(rec))
        except StopIteration:
            pass

    async def _run_unit_async(self, unit: list[JobRecord]) -> None:
        """``_run_unit`` on the event loop, for a unit whose jobs are all ``async def``."""
        steps = self._unit(unit, self._ack_on_loop)
        try:
            rec = next(steps)
            while True:
                rec = steps.send(await self._runner.arun(rec))
        except StopIteration:
            pass

    def _ack_on_loop(self, ran: Ran) -> None:
        """Pass a verdict from the event loop to the acker, with the others of the same
        loop iteration: one wake-up of the acker for all of them."""
        self._loop_acks.append(ran)
        if len(self._loop_acks) == 1:
            asyncio.get_running_loop().call_soon(self._flush_loop_acks)

    def _flush_loop_acks(self) -> None:
        batch, self._loop_acks = self._loop_acks, []
        self._acks.put(batch)

    def _unit(self, unit: list[JobRecord], ack: Callable[[Ran], None]) -> Generator[JobRecord, Ran, None]:
        """The order of one lane's claimed jobs: yields each job to run and takes back its
        verdict, which goes to ``ack``; releases the rest after a job that stops its lane
        (a retry, a blocking death) or once the worker is stopping."""
        for i, rec in enumerate(unit):
            if self._stopping.is_set() and i > 0:
                self._release(unit[i:])
                return
            ran = yield rec
            ack(ran)
            if not _keeps_going(ran.outcome, rec):
                self._release(unit[i + 1 :])
                return

    def _run_one(self, rec: JobRecord) -> Ran:
        try:
            return self._runner.run(rec)
        except JobTimeout:
            return self._runner.timed_out(rec)

    def _release(self, recs: Sequence[JobRecord]) -> None:
        for rec in recs:
            assert rec.token is not None
            self._acks.put(Ran(Outcome(rec.id, rec.token, Verdict.RELEASE)))

    def _ack_loop(self) -> None:
        backend = self.app.backend
        while True:
            first = self._acks.get()
            if first is None:
                return
            batch = first if isinstance(first, list) else [first]
            while True:
                try:
                    more = self._acks.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._acks.put(None)
                    break
                if isinstance(more, list):
                    batch.extend(more)
                else:
                    batch.append(more)
            pending = [r.outcome for r in batch if not r.applied]
            with self._cond:
                self._sending.update(out.job_id for out in pending)
                extra = 0 if self._stopping.is_set() else self._free
                self._free -= extra
            reserved = len(batch) + extra
            limit = 0 if self._stopping.is_set() else reserved
            notify(self.listeners, "on_finishing", pending)
            try:
                sent, recs = backend.finish_and_claim(
                    pending, self.queues, worker=self.id, limit=limit, batch=self.batch, lease_s=self.lease_s
                )
            except Exception:
                log.exception("finish failed for %d outcomes; their leases will expire", len(pending))
                sent, recs = [False] * len(pending), []
            replies = iter(sent)
            outcomes = [r.outcome for r in batch]
            self._settle(outcomes, [r.accepted if r.applied else next(replies) for r in batch])
            self._take(recs, reserved, outcomes, claimed=limit > 0)

    def _settle(self, batch: list[Outcome], accepted: list[bool]) -> None:
        """Count the outcomes and tell the listeners (slots are freed by ``_take``)."""
        s = self.stats
        for out, ok in zip(batch, accepted, strict=True):
            if not ok:
                s.refused += 1
                log.warning("lease lost: outcome %s of job %s refused", out.verdict.value, out.job_id)
            elif out.verdict is Verdict.SUCCEEDED:
                s.succeeded += 1
            elif out.verdict is Verdict.RETRY:
                s.retried += 1
            elif out.verdict is Verdict.DEAD:
                s.dead += 1
            else:
                s.released += 1
            notify(self.listeners, "on_finish", out, ok)

    # --- maintenance --------------------------------------------------------------------------

    def _maintain_loop(self) -> None:
        backend = self.app.backend
        next_beat = next_sweep = time.monotonic()
        while not self._hard_stop.wait(min(C.PERIODIC_CHECK_S, self.heartbeat_s)):
            now = time.monotonic()
            try:
                if now >= next_beat:
                    next_beat = now + self.heartbeat_s
                    self._heartbeat()
                if now >= next_sweep and not self._stopping.is_set():
                    next_sweep = now + self.sweep_s
                    if backend.sweep():
                        with self._cond:
                            self._cond.notify_all()
                if self.periodic and self.app.schedules and not self._stopping.is_set():
                    self._tick_schedules()
            except Exception:  # noqa: BLE001 - logged; the next round tries again
                self._log_failure("worker maintenance")

    def _heartbeat(self) -> None:
        with self._cond:
            tokens = list(self._held)
        if not tokens:
            return
        alive = self.app.backend.extend(tokens, self.lease_s)
        with self._cond:
            lost = [
                token
                for token, ok in zip(tokens, alive, strict=True)
                if not ok and token in self._held and not set(self._held[token]) <= self._sending
            ]
        for token in lost:
            log.warning("lease %s lost; its jobs may run elsewhere and their acks will be refused", token)

    def _tick_schedules(self) -> None:
        now = self.app.backend.now()
        for name, schedule in self.app.schedules.items():
            try:  # one schedule that fails (a backend error, say) does not hold up the others
                tick = schedule.due_tick(now)
                if tick is None or tick <= self._last_ticks.get(name, float("-inf")):
                    continue
                task = self.app.tasks[name]
                # Every worker builds the tick's job; claim_tick stores at most one of them, so
                # the enqueue counter and producer span (observes_enqueue) are left out here and
                # only the winner tells the listeners (on_tick), which count it.
                job = self.app._prepare(task, [((), {})], Options(lane=schedule.lane), observed=False)[0]
                claimed = self.app.backend.claim_tick(name, tick, job)
                self._last_ticks[name] = tick
                if claimed:
                    log.info("periodic %s: enqueued tick %s", name, tick)
                    notify(self.listeners, "on_tick", job)
                    self.app._after_enqueue(
                        task, [EnqueueResult(job.id, created=True)], [job]
                    )  # its enqueue hook
            except Exception:  # noqa: BLE001 - logged; the next round tries this tick again
                self._log_failure(f"periodic {name}")

    # --- life cycle ------------------------------------------------------------------------------

    def _start_threads(self) -> None:
        def start(target: Callable[[], None], name: str) -> None:
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

        # The acker first: _shutdown joins in this order within one shared second, so a
        # handler stuck past the grace period cannot cut short the last acks' round trip.
        start(self._ack_loop, "laneway-ack")
        start(self._maintain_loop, "laneway-maintain")
        self._started_executors = self._executors()
        for i in range(self._started_executors):
            start(self._execute_loop, f"laneway-exec-{i}")

    def _executors(self) -> int:
        """Executor threads to start: one per slot, or at most ``LOOP_EXECUTORS`` when every
        task runs on the event loop (they then only do the idle wait and the rare unit that
        needs a thread, such as a job of an unknown task)."""
        if self._runner.all_on_loop():
            return min(self.concurrency, C.LOOP_EXECUTORS)
        return self.concurrency

    def _shutdown(self) -> None:
        """Stop claiming, let running jobs finish within ``grace_s``, release the rest."""
        self._stopping.set()
        began = time.monotonic()
        waiter_by = began + self.idle_wait_s + 1.0

        def busy() -> bool:  # held jobs within the grace period, an idle wait within its own
            t = time.monotonic()  # grace_s read each time: a second signal sets it to 0
            return (bool(self._held) and t < began + self.grace_s) or (self._waiting and t < waiter_by)

        with self._cond:
            while busy():
                self._cond.wait(0.1)
            still = [rec for held in self._held.values() for rec in held.values()]
        if still:
            self._release_all(still)
        for _ in range(self._started_executors):  # one stop sign per executor started
            self._work.put(None)
        self._acks.put(None)
        self._hard_stop.set()
        join_by = time.monotonic() + 1.0  # one shared second: stuck handlers are abandoned
        for t in self._threads:
            t.join(timeout=max(0.0, join_by - time.monotonic()))
        self._loop.close(timeout_s=max(0.0, join_by - time.monotonic()))

    def _release_all(self, recs: list[JobRecord], why: str = "") -> None:
        """Give back every job still held after the grace period (or claimed by a wait
        that ended after the worker began to stop), attempts not spent.

        A handler still running in its thread cannot be killed; its later ack is refused.
        """
        outs = [Outcome(rec.id, rec.token, Verdict.RELEASE) for rec in recs if rec.token is not None]
        why = why or f"still running after the {self.grace_s:.0f} s grace period"
        try:
            accepted = self.app.backend.finish(outs)
        except Exception:
            log.exception("could not release %d jobs %s; their leases will expire", len(outs), why)
            return
        self._settle(outs, accepted)  # counted and told to the listeners like any outcome
        self._take([], 0, outs, claimed=False)
        log.warning("released %d jobs %s", sum(accepted), why)

    def _install_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def handler(signum: int, _frame: FrameType | None) -> None:
            if self._stopping.is_set() and signum == signal.SIGINT:
                self.grace_s = 0
            log.info("signal %s: stopping (grace %.0f s)", signum, self.grace_s)
            self.stop()

        old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for s, h in old.items():
                signal.signal(s, h)

        return restore
