"""Worker helpers shared by tests of different areas."""

from __future__ import annotations

import gc
import threading
import time

import laneway


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
