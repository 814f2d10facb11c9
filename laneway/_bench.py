"""``laneway bench``: the laneway-only phases of the benchmarks, against any backend URL.

For users sizing a deployment on their own server. The phases follow the project's
benchmark harness (``benchmarks/``), without its Redis probe: completion is read from
the backend's own counts (``backend.stats()``), pickup latency from an in-process worker.

- ``enqueue``: ``jobs`` single ``task.enqueue()`` calls from one producer;
- ``async``: ``jobs`` ``await task.enqueue_async()`` with ``inflight`` awaits in flight;
- ``bulk``: ``jobs`` through ``task.enqueue_many`` in calls of ``bulk_batch``;
- ``drain``: worker processes (``python -m laneway._bench``, a plain ``Worker``) start on
  everything queued so far (topped up to ``jobs``); rate from the first completion seen
  to the last, so start-up is left out;
- ``ordered``: ``jobs`` spread round-robin over ``lanes`` lanes (or one lane each), then
  drained the same way; shown next to the unordered drain;
- ``latency``: one idle in-process worker; enqueue one job, note when its handler starts.

Every job is a no-op task on queue ``bench`` of the bench namespace. Finished jobs are
purged at the end, and jobs the phases left queued are run first (untimed); a namespace that
still holds pending work (an interrupted run) is refused at the start unless the first
phase is ``drain``, which runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import queue
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import _constants as C
from ._app import App
from ._errors import ConfigError, LanewayError
from ._records import NewJob, Status
from ._task import Task

QUEUE = "bench"
TASK = "laneway.bench.noop"
PHASES = ("enqueue", "async", "bulk", "drain", "ordered", "latency")
_URL_ENV = "LANEWAY_BENCH_URL"
_POLL_S = 0.05
CLEANUP_TIMEOUT_S = 120.0
"""The least time the drain of jobs other phases left queued may take."""


@dataclass
class BenchConfig:
    """What ``laneway bench`` runs, and how big."""

    url: str
    namespace: str = "laneway-bench"
    jobs: int = 5000
    lanes: int | None = 100
    """Lanes of the ordered phase; None puts every job on its own lane."""
    processes: int = 1
    concurrency: int = C.CONCURRENCY
    """Slots per worker process (the bench task is sync: the worker's default for it)."""
    batch: int = 1
    latency_samples: int = 200
    bulk_batch: int = 1000
    inflight: int = 100
    timeout_s: float = 300.0
    """Longest a drain may take before it is cut (the rate is then over what finished)."""
    phases: Sequence[str] = PHASES
    in_process: bool | None = None
    """Run drain workers as threads of this process; default: only for ``memory://``."""

    def __post_init__(self) -> None:
        unknown = [p for p in self.phases if p not in PHASES]
        if unknown:
            raise ConfigError(f"unknown bench phase(s) {unknown}; phases: {', '.join(PHASES)}")
        if self.jobs < 1 or self.processes < 1 or self.concurrency < 1 or self.batch < 1:
            raise ConfigError("jobs, processes, concurrency and batch must be at least 1")
        if self.lanes is not None and self.lanes < 1:
            raise ConfigError("lanes must be at least 1 (or None for one lane per job)")

    @property
    def workers_in_process(self) -> bool:
        if self.in_process is not None:
            return self.in_process
        return self.url.startswith("memory:")


@dataclass
class PhaseResult:
    """One phase's numbers."""

    phase: str
    description: str
    jobs: int
    seconds: float
    rate: float | None = None
    """Jobs per second (None for latency)."""
    p50_ms: float | None = None
    p99_ms: float | None = None
    startup_s: float | None = None
    partial: bool = False
    """A drain cut by ``timeout_s``: the rate is over the jobs finished by then."""
    note: str = ""


@dataclass
class BenchResult:
    """Every phase that ran, with the settings they ran with."""

    url: str
    namespace: str
    processes: int
    concurrency: int
    batch: int
    lanes: int | None
    phases: list[PhaseResult] = field(default_factory=list)

    def get(self, phase: str) -> PhaseResult | None:
        return next((p for p in self.phases if p.phase == phase), None)


class Reporter(Protocol):
    """Progress callbacks (the CLI draws them as rich progress bars)."""

    def start(self, phase: str, description: str, total: int) -> None: ...

    def advance(self, phase: str, completed: int) -> None: ...

    def finish(self, phase: str, result: PhaseResult) -> None: ...


class _Silent:
    def start(self, phase: str, description: str, total: int) -> None:
        pass

    def advance(self, phase: str, completed: int) -> None:
        pass

    def finish(self, phase: str, result: PhaseResult) -> None:
        pass


def build_app(url: str, namespace: str, probe: Callable[[], None] | None = None) -> tuple[App, Task]:
    """The bench app and its no-op task (``probe`` runs in the handler when given)."""
    app = App(url, namespace=namespace)

    def noop() -> None:
        if probe is not None:
            probe()

    task = app._register(noop, {"name": TASK, "queue": QUEUE})  # a name in laneway's own space
    return app, task


def _pending(app: App) -> int:
    return sum(
        s.scheduled + s.queued + s.running + s.retrying for s in app.backend.stats() if s.queue == QUEUE
    )


def _finished(app: App) -> int:
    return sum(s.succeeded + s.dead + s.cancelled for s in app.backend.stats() if s.queue == QUEUE)


def _queued(app: App) -> int:
    return sum(s.queued for s in app.backend.stats() if s.queue == QUEUE)


def _pct(sorted_ms: Sequence[float], p: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, round(p / 100 * (len(sorted_ms) - 1)))]


class Bench:
    """Runs the phases of one ``BenchConfig``; ``run()`` returns the results."""

    def __init__(self, cfg: BenchConfig, reporter: Reporter | None = None) -> None:
        self.cfg = cfg
        self.reporter: Reporter = reporter or _Silent()
        self.app, self.task = build_app(cfg.url, cfg.namespace)
        self.result = BenchResult(
            cfg.url, cfg.namespace, cfg.processes, cfg.concurrency, cfg.batch, cfg.lanes
        )

    def run(self) -> BenchResult:
        try:
            left = _pending(self.app)
            first = next((p for p in PHASES if p in self.cfg.phases), None)
            if left and first != "drain":  # a drain runs whatever is queued: it may start
                raise ConfigError(
                    f"namespace {self.cfg.namespace!r} still holds {left} pending bench jobs "
                    "(an interrupted run?): use another --namespace, or finish them with "
                    "--phases drain on this one"
                )
            self.app.backend.purge(status=Status.SUCCEEDED)
            for phase in PHASES:
                if phase in self.cfg.phases:
                    if phase == "latency" and _pending(self.app):  # its worker would run them
                        self._drain("cleanup", "running the jobs left queued", timed=False)
                    res = getattr(self, f"_phase_{phase}")()
                    self.result.phases.append(res)
                    self.reporter.finish(phase, res)
            if _pending(self.app):  # enqueue phases without a drain: leave nothing behind
                self._drain("cleanup", "running the jobs left queued", timed=False)
        finally:
            self._cleanup()
        return self.result

    def _cleanup(self) -> None:
        with contextlib.suppress(Exception):
            for status in (Status.SUCCEEDED, Status.DEAD):
                self.app.backend.purge(status=status)
        self.app.close()

    # --- enqueue phases -------------------------------------------------------------------

    def _timed_loop(self, phase: str, description: str, n: int, step: Callable[[], int]) -> PhaseResult:
        self.reporter.start(phase, description, n)
        done = 0
        t0 = time.perf_counter()
        while done < n:
            done += step()
            if done % 100 == 0 or done >= n:
                self.reporter.advance(phase, done)
        dt = time.perf_counter() - t0
        return PhaseResult(phase, description, n, dt, n / dt)

    def _phase_enqueue(self) -> PhaseResult:
        task = self.task

        def one() -> int:
            task.enqueue()
            return 1

        return self._timed_loop("enqueue", "enqueue, one call per job", self.cfg.jobs, one)

    def _phase_bulk(self) -> PhaseResult:
        left = [self.cfg.jobs]
        size = self.cfg.bulk_batch

        def chunk() -> int:
            k = min(size, left[0])
            self.task.enqueue_many([((), {})] * k)
            left[0] -= k
            return k

        return self._timed_loop("bulk", f"enqueue_many, {size} per call", self.cfg.jobs, chunk)

    def _phase_async(self) -> PhaseResult:
        n, inflight = self.cfg.jobs, self.cfg.inflight
        desc = f"enqueue_async, {inflight} in flight"
        self.reporter.start("async", desc, n)

        async def go() -> float:
            sem = asyncio.Semaphore(inflight)
            done = 0

            async def one() -> None:
                nonlocal done
                async with sem:
                    await self.task.enqueue_async()
                done += 1
                if done % 100 == 0:
                    self.reporter.advance("async", done)

            t0 = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(n)))
            return time.perf_counter() - t0

        dt = asyncio.run(go())
        self.reporter.advance("async", n)
        return PhaseResult("async", desc, n, dt, n / dt)

    # --- drains ---------------------------------------------------------------------------

    def _phase_drain(self) -> PhaseResult:
        queued = _queued(self.app)
        if queued < self.cfg.jobs:
            self._fill(self.cfg.jobs - queued, lanes=False)
        desc = f"drain, {self.cfg.processes} process(es) x {self.cfg.concurrency} slots"
        return self._drain("drain", desc)

    def _phase_ordered(self) -> PhaseResult:
        queued = _queued(self.app)
        if queued:  # an unordered drain was skipped: run those first, untimed
            self._drain("ordered", "draining earlier jobs first", timed=False)
        self._fill(self.cfg.jobs, lanes=True)
        lanes = "one lane per job" if self.cfg.lanes is None else f"{self.cfg.lanes} lanes"
        batch = f", --batch {self.cfg.batch}" if self.cfg.batch > 1 else ""
        res = self._drain("ordered", f"ordered drain, {lanes}{batch}")
        base = self.result.get("drain")
        if base and base.rate and res.rate:
            if base.startup_s is None or res.startup_s is None:  # one of them counts start-up
                share = "not compared with the unordered drain (use more --jobs)"
            else:
                share = f"{100 * res.rate / base.rate:.0f} % of the unordered drain"
            res.note = f"{share}; {res.note}" if res.note else share
        return res

    def _fill(self, n: int, *, lanes: bool) -> None:
        """Queue ``n`` jobs in bulk (untimed); with ``lanes``, round-robin over the lanes."""
        backend, size = self.app.backend, self.cfg.bulk_batch
        template = self.app._prepare(self.task, [((), {})], self.task.options(lane="x").opts)[0]
        from ._app import new_id

        def job(i: int) -> NewJob:
            if not lanes:
                return dataclasses.replace(template, id=new_id(), lane=None)
            lane = f"l{i}" if self.cfg.lanes is None else f"l{i % self.cfg.lanes}"
            return dataclasses.replace(template, id=new_id(), lane=lane)

        for start in range(0, n, size):
            backend.enqueue([job(i) for i in range(start, min(n, start + size))])

    def _drain(self, phase: str, description: str, timed: bool = True) -> PhaseResult:
        """Run the pending jobs; a timed drain is cut at ``--timeout``, an untimed one (the
        jobs other phases left queued) at ``CLEANUP_TIMEOUT_S`` at least, so a short
        ``--timeout`` does not leave them behind to refuse the next run."""
        app, cfg = self.app, self.cfg
        cut_s = cfg.timeout_s if timed else max(cfg.timeout_s, CLEANUP_TIMEOUT_S)
        base = _finished(app)
        total = _pending(app)
        if timed:
            self.reporter.start(phase, description, total)
        t_spawn = time.perf_counter()
        t_first: float | None = None
        c_first = done = 0
        partial = False
        now = t_spawn
        with self._workers():
            while True:
                done = _finished(app) - base
                now = time.perf_counter()
                if t_first is None and done > 0:
                    t_first, c_first = now, done
                if timed:
                    self.reporter.advance(phase, done)
                if done >= total:
                    break
                if now - t_spawn > cut_s:
                    partial = True
                    break
                time.sleep(_POLL_S)
        if t_first is None:
            raise LanewayError(
                f"{phase}: no job finished within {cut_s:g} s of starting the workers"
                " (raise --timeout if they start slowly)"
            )
        span = now - t_first
        if span > 0:
            rate = (done - c_first) / span
            return PhaseResult(
                phase, description, done, span, rate, startup_s=t_first - t_spawn, partial=partial
            )
        # The whole phase finished between two polls: time it from the workers' start,
        # start-up included, and say so (too few jobs to tell the two apart).
        span = now - t_spawn
        note = "includes worker start-up: too few jobs to time apart"
        return PhaseResult(phase, description, done, span, done / span, partial=partial, note=note)

    @contextlib.contextmanager
    def _workers(self) -> Iterator[None]:
        cfg = self.cfg
        if cfg.workers_in_process:
            app, _ = build_app(cfg.url, cfg.namespace)
            workers = [
                app.worker([QUEUE], concurrency=cfg.concurrency, batch=cfg.batch)
                for _ in range(cfg.processes)
            ]
            threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
            for t in threads:
                t.start()
            try:
                yield
            finally:
                for w in workers:
                    w.stop()
                for t in threads:
                    t.join(30)
                if not cfg.url.startswith("memory:"):  # memory:// apps share one store
                    app.close()
            return
        env = {**os.environ, _URL_ENV: cfg.url}
        cmd = [sys.executable, "-m", "laneway._bench", "--namespace", cfg.namespace,
               "-c", str(cfg.concurrency), "--batch", str(cfg.batch)]  # fmt: skip
        procs = [
            subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
            for _ in range(cfg.processes)
        ]
        try:
            yield
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    # --- latency --------------------------------------------------------------------------

    def _phase_latency(self) -> PhaseResult:
        cfg = self.cfg
        starts: queue.SimpleQueue[float] = queue.SimpleQueue()
        app, task = build_app(cfg.url, cfg.namespace, probe=lambda: starts.put(time.time()))
        worker = app.worker([QUEUE], concurrency=1)
        thread = threading.Thread(target=worker.run, daemon=True)
        n = cfg.latency_samples
        desc = "pickup latency, one idle worker"
        self.reporter.start("latency", desc, n)
        lats: list[float] = []
        t_begin = time.perf_counter()
        thread.start()
        try:
            task.enqueue()  # warm-up
            starts.get(timeout=60)
            time.sleep(0.2)
            for i in range(n):
                t0 = time.time()
                task.enqueue()
                lats.append((starts.get(timeout=30) - t0) * 1000)
                self.reporter.advance("latency", i + 1)
                time.sleep(random.uniform(0, 0.02))
        finally:
            worker.stop()
            thread.join(30)
            if not cfg.url.startswith("memory:"):
                app.close()
        lats.sort()
        return PhaseResult(
            "latency", desc, n, time.perf_counter() - t_begin, None, _pct(lats, 50), _pct(lats, 99),
            note=f"mean {statistics.fmean(lats):.2f} ms, max {lats[-1]:.2f} ms",
        )  # fmt: skip


def run_bench(cfg: BenchConfig, reporter: Reporter | None = None) -> BenchResult:
    """Run ``cfg``'s phases and return their results."""
    return Bench(cfg, reporter).run()


def _worker_main(argv: Sequence[str]) -> None:
    """A drain worker process: ``python -m laneway._bench`` (URL in ``$LANEWAY_BENCH_URL``)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m laneway._bench")
    ap.add_argument("--namespace", required=True)
    ap.add_argument("-c", "--concurrency", type=int, default=C.CONCURRENCY)
    ap.add_argument("--batch", type=int, default=1)
    a = ap.parse_args(list(argv))
    logging.basicConfig(level=logging.ERROR)  # a lost-lease warning at shutdown is not news here
    app, _ = build_app(os.environ[_URL_ENV], a.namespace)
    try:
        app.worker([QUEUE], concurrency=a.concurrency, batch=a.batch).run()
    finally:
        app.close()


def as_dict(result: BenchResult) -> dict[str, Any]:
    """The result as JSON-ready data."""
    return dataclasses.asdict(result)


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
