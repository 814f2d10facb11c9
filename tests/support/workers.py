"""Worker helpers shared by tests of different areas."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Sequence

import laneway
from laneway.backends import Backend


def abandon_async_runs(app: laneway.App, *, running_s: float = 0.2) -> None:
    """Run a worker for ``running_s``, stop it with a grace period shorter than its
    ``async def`` jobs take, and collect the abandoned runs (they end with GeneratorExit)."""
    worker = app.worker(concurrency=2, grace_s=0.2, idle_wait_s=0.05)
    thread = threading.Thread(target=worker.run)
    thread.start()
    time.sleep(running_s)
    worker.stop()
    thread.join(10)
    del worker, thread
    gc.collect()  # the abandoned runs are collected here


def seconds_until_woken(
    backend: Backend, send: Callable[[], object], queues: Sequence[str] = ("default",), after_s: float = 0.2
) -> float:
    """How long ``backend.wait(queues, 5.0)`` blocks when ``send()`` runs ``after_s`` into it."""

    def later() -> None:
        time.sleep(after_s)
        send()

    thread = threading.Thread(target=later)
    thread.start()
    began = time.monotonic()
    backend.wait(list(queues), 5.0)
    thread.join()
    return time.monotonic() - began
