"""Throughput and pickup latency on PostgreSQL, measured the way ``/work/shared/bench`` does.

Skipped unless ``LANEWAY_BENCH=1`` (they take a minute and need a quiet machine to mean
anything). Each prints its figures; with ``LANEWAY_BENCH_ASSERT=1`` they also assert the
targets (3x procrastinate's 329 and 503 jobs/s drains, p50 pickup of at most 3 ms)::

    LANEWAY_BENCH=1 python -m pytest tests/backends/test_postgres_performance.py -s -q

- drain: 20,000 no-op jobs are enqueued with ``enqueue_many`` (1,000 per call), then
  ``app.worker(concurrency=8).run(burst=True)`` runs in 1 or 2 forked processes; the rate is
  jobs / wall time from the start signal to the last process's end.
- pickup: one idle worker process; the producer notes the time, enqueues one job and waits
  for the handler's start time; 300 samples with 0-50 ms pauses between them.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import statistics
import time
from collections.abc import Iterator
from multiprocessing.synchronize import Event
from typing import Any

import pytest

import laneway
from tests.conftest import POSTGRES_URL, fresh_namespace, require_server

pytestmark = pytest.mark.skipif(
    os.environ.get("LANEWAY_BENCH") != "1", reason="set LANEWAY_BENCH=1 to measure"
)
ASSERT = os.environ.get("LANEWAY_BENCH_ASSERT") == "1"
DRAIN_JOBS = 20_000
CONCURRENCY = 8
PICKUP_SAMPLES = 300
CTX = mp.get_context("fork")


def make_app(namespace: str, starts: Any = None) -> tuple[laneway.App, laneway.Task]:
    app = laneway.App(POSTGRES_URL, namespace=namespace)

    @app.task(name="probe")
    def probe(i: int) -> None:
        if starts is not None:
            starts.put((i, time.time()))

    return app, probe


@pytest.fixture
def namespace() -> Iterator[str]:
    require_server(POSTGRES_URL, "PostgreSQL")
    ns = fresh_namespace()
    yield ns
    app, _ = make_app(ns)
    drop = getattr(app.backend, "drop_namespace", None)
    if callable(drop):
        drop()
    app.close()


def _drain_process(namespace: str, go: Event, done: Any) -> None:
    app, _ = make_app(namespace)
    app.backend.now()  # connect before the clock starts
    go.wait()
    stats = app.worker(concurrency=CONCURRENCY).run(burst=True)
    done.put((stats.succeeded, time.time()))
    app.close()


@pytest.mark.parametrize("processes", [1, 2])
def test_drain_rate_of_noop_jobs(namespace: str, processes: int) -> None:
    app, probe = make_app(namespace)
    for start in range(0, DRAIN_JOBS, 1_000):
        probe.enqueue_many([((i,), {}) for i in range(start, start + 1_000)])
    go, done = CTX.Event(), CTX.Queue()
    procs = [CTX.Process(target=_drain_process, args=(namespace, go, done)) for _ in range(processes)]
    for p in procs:
        p.start()
    time.sleep(1.5)
    started = time.time()
    go.set()
    results = [done.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(30)
    finished = sum(n for n, _ in results)
    rate = finished / (max(end for _, end in results) - started)
    print(
        f"drain, {processes} process(es) x {CONCURRENCY}: {finished} jobs at {rate:.0f} jobs/s, load {os.getloadavg()}"
    )
    app.close()
    assert finished == DRAIN_JOBS
    if ASSERT:
        assert rate >= {1: 3 * 329, 2: 3 * 503}[processes]


def _idle_worker(namespace: str, starts: Any) -> None:
    app, _ = make_app(namespace, starts)
    app.worker(concurrency=CONCURRENCY).run()


def test_pickup_latency_of_an_idle_worker(namespace: str) -> None:
    app, probe = make_app(namespace)
    starts = CTX.Queue()
    worker = CTX.Process(target=_idle_worker, args=(namespace, starts))
    worker.start()
    try:
        probe.enqueue(-1)
        starts.get(timeout=60)
        latencies = []
        for i in range(PICKUP_SAMPLES):
            time.sleep(random.uniform(0, 0.05))
            sent = time.time()
            probe.enqueue(i)
            got, began = starts.get(timeout=30)
            assert got == i
            latencies.append(began - sent)
    finally:
        worker.terminate()
        worker.join(30)
        app.close()
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99)]
    print(
        f"pickup: p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms over {len(latencies)}, load {os.getloadavg()}"
    )
    if ASSERT:
        assert p50 <= 0.003
