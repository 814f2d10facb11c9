"""Helpers for the conformance suite: an app on the fixture's backend, workers in threads,
and a recorder of what handlers saw."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import laneway
from laneway.backends import Backend


@pytest.fixture
def app(backend: Backend) -> Iterator[laneway.App]:
    """An app on the backend under test, with short backoffs so retries are quick."""
    a = laneway.App(backend=backend, backoff_s=0.05, backoff_max_s=0.2, lease_s=30)
    yield a


@dataclass
class Trace:
    """Thread-safe record of (event, lane, seq, worker) tuples with monotonic times."""

    events: list[tuple[str, Any, Any, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, lane: Any, seq: Any) -> None:
        with self.lock:
            self.events.append((kind, lane, seq, time.monotonic()))

    def of(self, kind: str) -> list[tuple[Any, Any]]:
        with self.lock:
            return [(lane, seq) for k, lane, seq, _ in self.events if k == kind]

    def assert_lanes_serial(self) -> None:
        """Per lane: every start follows the end of the previous start, in seq order."""
        per_lane: dict[Any, list[tuple[str, Any]]] = {}
        with self.lock:
            for kind, lane, seq, _ in self.events:
                if kind in ("start", "end"):
                    per_lane.setdefault(lane, []).append((kind, seq))
        for lane, evs in per_lane.items():
            running = None
            for kind, seq in evs:
                if kind == "start":
                    assert running is None, f"lane {lane}: {seq} started while {running} ran"
                    running = seq
                else:
                    assert running == seq, f"lane {lane}: end of {seq} while {running} ran"
                    running = None


@pytest.fixture
def trace() -> Trace:
    return Trace()


class Workers:
    """Workers running in threads of this process, stopped at teardown."""

    def __init__(self) -> None:
        self.workers: list[laneway.Worker] = []
        self.threads: list[threading.Thread] = []

    def start(self, app: laneway.App, queues: Any = None, **settings: Any) -> laneway.Worker:
        settings.setdefault("idle_wait_s", 0.05)
        settings.setdefault("grace_s", 5)
        w = app.worker(queues, **settings)
        t = threading.Thread(target=w.run, daemon=True)
        t.start()
        self.workers.append(w)
        self.threads.append(t)
        return w

    def stop(self) -> None:
        for w in self.workers:
            w.stop()
        for t in self.threads:
            t.join(timeout=10)
        self.workers.clear()
        self.threads.clear()


@pytest.fixture
def workers() -> Iterator[Workers]:
    ws = Workers()
    yield ws
    ws.stop()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def drain(app: laneway.App, queues: Any = None, **settings: Any) -> laneway.WorkerStats:
    """Run one worker in burst mode until nothing is due and nothing is held."""
    settings.setdefault("idle_wait_s", 0.05)
    return app.worker(queues, **settings).run(burst=True)
