"""Running chaos-app workers on any backend: threads for ``memory://``, processes otherwise."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from laneway.backends import Backend

from ._procs import Fleet, ThreadWorkers
from .conftest import Chaos


@contextmanager
def running_workers(
    target: Chaos, fleet: Fleet, count: int, *, concurrency: int, lease_s: float = 10.0
) -> Iterator[None]:
    """``count`` workers on ``target`` until the block ends (then stopped and reaped)."""
    if target.kind == "memory":
        threads = ThreadWorkers(fleet, target.url, target.namespace)
        threads.start(count, concurrency=concurrency, lease_s=lease_s, idle_wait_s=0.2)
        try:
            yield
        finally:
            threads.stop()
        return
    procs = [fleet.worker(f"w{i}", concurrency=concurrency, lease_s=lease_s) for i in range(count)]
    fleet.wait_ready(count)
    try:
        yield
    finally:
        for proc in procs:
            proc.signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(15)


def pending(backend: Backend) -> int:
    """Jobs not yet final (scheduled, queued, running or retrying)."""
    return sum(s.scheduled + s.queued + s.running + s.retrying for s in backend.stats())


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 1)) - 1))
    return ordered[rank]
