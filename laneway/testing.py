"""What users test with: the in-memory backend, a controllable clock, assertions, and
the history recorder and checker the fault suite uses (record what workers and handlers
did with ``HistoryListener``/``record_in_job``, then ``check_history(load_history(dir))``
reports lost, duplicated and out-of-order jobs and stale acks).

```python
from laneway.testing import Clock, memory_app, enqueued

clock = Clock()
app = memory_app(clock=clock)

@app.task
def send(to: str) -> None: ...

send.options(delay=60).enqueue("ann")
assert app.run_until_idle() == 0     # not due yet
clock.advance(60)
assert app.run_until_idle() == 1
```
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ._app import App
from ._codec import decode_call
from ._history import EventKind, HistoryRecorder, Report, check_history, load_history
from ._job import Job
from ._observe import HistoryListener, record_in_job
from ._records import Status
from .backends.memory import MemoryBackend

__all__ = [
    "Clock",
    "EventKind",
    "HistoryListener",
    "HistoryRecorder",
    "MemoryBackend",
    "Report",
    "assert_enqueued",
    "check_history",
    "enqueued",
    "load_history",
    "memory_app",
    "record_in_job",
]


class Clock:
    """A clock that only moves when told to. Call it for the time (epoch seconds)."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds``; returns the new time."""
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, now: float) -> None:
        """Jump to ``now`` (never backwards)."""
        with self._lock:
            if now < self._now:
                raise ValueError("the test clock does not go backwards")
            self._now = now


def memory_app(clock: Clock | None = None, **app_kwargs: Any) -> App:
    """An ``App`` on its own in-memory backend (a private one, not shared by URL)."""
    backend = MemoryBackend(clock or time.time)
    return App("memory://", backend=backend, **app_kwargs)


def enqueued(
    app: App,
    task: Any = None,
    *,
    queue: str | None = None,
    lane: str | None = None,
    status: Status | None = None,
) -> list[Job]:
    """Jobs stored in ``app``'s backend, oldest first, filtered by task (a ``Task`` or a
    name; of ``t.options(...)`` only the task counts: filter with ``queue=`` and ``lane=``),
    queue, lane and status."""
    name = _task_name(task)
    recs = app.backend.list_jobs(queue=queue, lane=lane, status=status, limit=1_000_000)
    return [Job(app, r.id, record=r) for r in reversed(recs) if name is None or r.task == name]


def _task_name(task: Any) -> Any:
    """The name of a ``Task``, of a ``BoundTask`` (its ``.task``), or ``task`` itself."""
    return getattr(getattr(task, "task", task), "name", task)


def assert_enqueued(app: App, task: Any, *args: Any, **kwargs: Any) -> Job:
    """Assert that a call of ``task`` with exactly these arguments is pending; return it.

    The arguments are compared as a worker will see them, after the app's codec (with
    JSON, a tuple matches the list it was stored as)."""
    want = decode_call(app.codec.encode_call(args, kwargs, {}))
    jobs = [j for j in enqueued(app, task) if j.status.pending]
    for job in jobs:
        if job.args == want.args and job.kwargs == want.kwargs:
            return job
    calls = [(j.args, j.kwargs) for j in jobs]
    raise AssertionError(f"no pending {_task_name(task)}{args!r} {kwargs!r}; pending: {calls!r}")
