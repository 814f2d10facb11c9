"""The app the demo and chaos worker processes import (configured by environment).

Every job records START before its work and EFFECT after it, and every worker records
its claims and acks (with fencing tokens) through ``HistoryListener``, so the run can be
judged by the history checker afterwards.

Worker processes import ``laneway._demo_app:app``, built from these variables:

- ``LANEWAY_DEMO_URL``, ``LANEWAY_DEMO_NAMESPACE``: the backend;
- ``LANEWAY_DEMO_HISTORY``: the directory every process writes its history file to;
- ``LANEWAY_DEMO_WORK_MS``: average handler time;
- ``LANEWAY_DEMO_LEASE_S``, ``LANEWAY_DEMO_SWEEP_S``: the workers' lease and how often
  each looks for expired leases (what bounds the re-lease time of a killed worker's jobs);
- ``LANEWAY_DEMO_CLOCK``: ``backend`` (default: events carry ``backend.now()``) or
  ``local`` (the machine's real-time clock, which equals a loopback server's clock and
  needs no round trip, so a worker cut off from its backend still records what it does).

Building the app opens nothing: the backend is opened on first use.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from ._app import App
from ._history import EventKind, HistoryRecorder
from ._observe import HistoryListener, record_in_job
from ._records import JobRecord

QUEUE = "demo"
TASK = "demo.step"


def lane_seq(rec: JobRecord) -> tuple[str | None, int]:
    """The demo job's (lane, seq): its lane, and the seq it carries as its 2nd argument."""
    from ._codec import decode_call

    return rec.lane, int(decode_call(rec.payload).args[1])


def local_clock() -> float:
    """The machine's real-time clock, read without ``time.time`` (which tests may patch)."""
    return time.clock_gettime(time.CLOCK_REALTIME)


def build_app(
    url: str,
    namespace: str,
    *,
    lease_s: float = 10.0,
    sweep_s: float | None = None,
    history_dir: str = "",
    work_ms: float = 1.0,
    clock: str = "backend",
) -> App:
    """The demo app: one task that sleeps ``work_ms`` on average between START and EFFECT.

    With ``history_dir``, the app's workers and handlers record into it; with ``sweep_s``,
    its workers sweep expired leases that often.
    """
    app = App(url, namespace=namespace, lease_s=lease_s)

    def backend_now() -> float:
        return app.backend.now()  # looked up per call: building the app opens nothing

    now: Callable[[], float] = local_clock if clock == "local" else backend_now
    recorder = HistoryRecorder(history_dir, worker=f"worker-{os.getpid()}") if history_dir else None
    if recorder is not None:
        app.listeners.append(HistoryListener(recorder, lane_seq, now))
    if sweep_s is not None:
        app.on_worker_start.append(lambda worker: setattr(worker, "sweep_s", sweep_s))

    @app.task(name=TASK, queue=QUEUE, max_attempts=50)
    def step(lane: str, seq: int) -> None:
        """One unit of demo work: a sleep of 0 to 2 x ``work_ms`` between START and EFFECT."""
        if recorder is not None:
            record_in_job(recorder, EventKind.START, lane, seq, now)
        if work_ms:
            time.sleep(work_ms / 1000 * (hash((lane, seq)) % 201) / 100)
        if recorder is not None:
            record_in_job(recorder, EventKind.EFFECT, lane, seq, now)

    return app


def _from_env() -> App:
    env = os.environ.get
    sweep = env("LANEWAY_DEMO_SWEEP_S")
    return build_app(
        env("LANEWAY_DEMO_URL", "sqlite:///laneway-demo.db"),
        env("LANEWAY_DEMO_NAMESPACE", "demo"),
        lease_s=float(env("LANEWAY_DEMO_LEASE_S", "10")),
        sweep_s=float(sweep) if sweep else None,
        history_dir=env("LANEWAY_DEMO_HISTORY", ""),
        work_ms=float(env("LANEWAY_DEMO_WORK_MS", "1")),
        clock=env("LANEWAY_DEMO_CLOCK", "backend"),
    )


app = _from_env()
