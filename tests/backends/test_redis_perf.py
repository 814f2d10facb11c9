"""Throughput and pickup latency of laneway on Redis, the way ``/work/shared/bench`` measures
peers (a no-op task doing one ``INCR``), on a private server. Opt-in: ``LANEWAY_BENCH=1``.

    LANEWAY_BENCH=1 pytest tests/backends/test_redis_perf.py -s          # numbers + targets
    LANEWAY_BENCH_N=5000 LANEWAY_BENCH=1 pytest tests/backends/test_redis_perf.py -s

Phases (each for lanes off, every job on its own lane, and 100 hot lanes):

- ``enqueue``: N single ``task.enqueue()`` calls from one thread;
- ``drain1`` / ``drain2``: N jobs queued first, then 1 or 2 worker processes
  (``concurrency=8``, burst mode); rate = jobs done / time from first to last completion;
- ``pickup``: an idle worker; enqueue one job and time until its handler starts (p50/p99).

Targets on the 2-core machine: drain1 >= 3,400/s, drain2 >= 6,000/s, enqueue >= 7,640/s,
pickup p50 <= 1 ms.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import laneway
from tests.support.redis_cluster import RedisServer

pytestmark = pytest.mark.skipif(
    os.environ.get("LANEWAY_BENCH") != "1", reason="benchmark: set LANEWAY_BENCH=1"
)

N = int(os.environ.get("LANEWAY_BENCH_N", "20000"))
PICKUPS = int(os.environ.get("LANEWAY_BENCH_PICKUPS", "300"))
DONE, LAT = "bench:done", "bench:lat"
TARGETS = {"enqueue": 7640.0, "drain1": 3400.0, "drain2": 6000.0}
PICKUP_P50_MS = 1.0

_probe: dict[str, Any] = {}


def _counter(url: str) -> redis.Redis:
    if _probe.get("pid") != os.getpid():
        _probe.update(pid=os.getpid(), client=redis.Redis.from_url(url))
    client: redis.Redis = _probe["client"]
    return client


def build(url: str, namespace: str) -> tuple[laneway.App, Any]:
    """The bench app: task ``noop`` on queue ``bench`` (INCR, and RPUSH of its start time)."""
    app = laneway.App(url, namespace=namespace)

    @app.task(queue="bench", name="noop")
    def noop(lat: int = 0) -> None:
        t = time.time()
        r = _counter(url)
        if lat:
            r.rpush(LAT, repr(t))
        r.incr(DONE)

    return app, noop


def _work(url: str, namespace: str, burst: bool) -> None:
    app, _ = build(url, namespace)
    app.worker("bench", concurrency=8).run(burst=burst)


def _sender(noop: Any, lanes: str) -> Callable[[int], Any]:
    if lanes == "unique":
        return lambda i: noop.options(lane=f"l{i}")
    if lanes == "hot100":
        return lambda i: noop.options(lane=f"l{i % 100}")
    return lambda i: noop


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    srv = RedisServer()
    yield srv
    srv.close()


def measure(url: str, lanes: str) -> dict[str, float]:
    ns = "bench" + uuid.uuid4().hex[:6]
    app, noop = build(url, ns)
    r = redis.Redis.from_url(url)
    send = _sender(noop, lanes)
    out: dict[str, float] = {}
    began = time.perf_counter()
    for i in range(N):
        send(i).enqueue()
    out["enqueue"] = N / (time.perf_counter() - began)
    spawn = multiprocessing.get_context("spawn")
    for procs in (1, 2):
        if procs == 2:
            for i in range(N):
                send(i).enqueue()
        r.set(DONE, 0)
        workers = [spawn.Process(target=_work, args=(url, ns, True)) for _ in range(procs)]
        for w in workers:
            w.start()
        first = last = 0.0
        done_at_first = 0
        while True:
            done = int(r.get(DONE) or 0)
            now = time.perf_counter()
            if done and not first:
                first, done_at_first = now, done
            if done >= N:
                last = now
                break
            time.sleep(0.005)
        for w in workers:
            w.join(60)
        out[f"drain{procs}"] = (N - done_at_first) / max(last - first, 1e-9)
    out.update(_pickup(url, ns, noop, r))
    app.backend.drop_namespace()  # type: ignore[attr-defined]
    app.close()
    r.close()
    return out


def _pickup(url: str, ns: str, noop: Any, r: redis.Redis) -> dict[str, float]:
    worker = multiprocessing.get_context("spawn").Process(target=_work, args=(url, ns, False))
    worker.start()
    try:
        noop.enqueue(1)
        r.blpop([LAT], 30)
        samples = []
        for _ in range(PICKUPS):
            time.sleep(0.02)
            sent = time.time()
            noop.enqueue(1)
            got = r.blpop([LAT], 10)
            assert got is not None
            samples.append((float(got[1]) - sent) * 1000)
        samples.sort()
        return {
            "pickup_p50_ms": statistics.median(samples),
            "pickup_p99_ms": samples[int(len(samples) * 0.99) - 1],
        }
    finally:
        worker.terminate()
        worker.join(10)


def test_drain_enqueue_and_pickup_meet_the_targets(server: RedisServer) -> None:
    results = {lanes: measure(server.url, lanes) for lanes in ("off", "unique", "hot100")}
    table = [f"{'lanes':8} {'enqueue/s':>10} {'drain1/s':>9} {'drain2/s':>9} {'pickup p50':>11} {'p99':>7}"]
    for lanes, m in results.items():
        table.append(f"{lanes:8} {m['enqueue']:10.0f} {m['drain1']:9.0f} {m['drain2']:9.0f} "
                     f"{m['pickup_p50_ms']:9.2f}ms {m['pickup_p99_ms']:5.2f}ms")  # fmt: skip
    load = os.getloadavg()[0]
    print(
        "\n" + "\n".join(table) + f"\n(N={N}, load average {load:.1f} on {os.cpu_count()} cores)", flush=True
    )
    misses = [
        f"{lanes} {phase} {m[phase]:.0f} < {target:.0f}"
        for lanes, m in results.items()
        for phase, target in TARGETS.items()
        if m[phase] < target
    ] + [
        f"{lanes} pickup p50 {m['pickup_p50_ms']:.2f} ms"
        for lanes, m in results.items()
        if m["pickup_p50_ms"] > PICKUP_P50_MS
    ]
    assert not misses, "\n".join([*table, *misses])
