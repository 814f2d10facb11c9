"""The app the fault tests' worker processes run (``tests.chaos._apps:app``).

Configured by environment, so one module serves every test and every backend:

- ``LANEWAY_CHAOS_URL``, ``LANEWAY_CHAOS_NAMESPACE``: the backend;
- ``LANEWAY_CHAOS_HISTORY``: directory of the history files (one per process);
- ``LANEWAY_CHAOS_LEASE_S``, ``LANEWAY_CHAOS_SWEEP_S``, ``LANEWAY_CHAOS_HEARTBEAT_S``,
  ``LANEWAY_CHAOS_IDLE_WAIT_S``: worker timings (set on every worker as it starts);
- ``LANEWAY_CHAOS_BACKOFF_S``: first retry delay;
- ``LANEWAY_CHAOS_READY_DIR``: each worker writes a file named after its PID there as
  it starts (before its first claim);
- ``LANEWAY_CHAOS_HOLD_MAX_S``: cap on the sleep of ``hold`` jobs in this process (a
  worker that only has to finish what others left).

Events carry the machine's real-time clock read with ``clock_gettime`` (not
``time.time``, which the clock-skew test patches): on loopback it is the servers'
clock too, and a worker cut off from its backend can still say when it did something.

Tasks (queue ``chaos``; each records START on entry and EFFECT when its work is done):

- ``step(lane, seq, work_ms=0)``: sleep ``work_ms``;
- ``hold(lane, seq, first_s, later_s=0)``: sleep ``first_s`` on the first delivery,
  ``later_s`` on the next ones (a long job whose re-run is short);
- ``echo(lane, seq, data)``: returns the SHA-256 of the ``data`` it received;
- ``gated(lane, seq, gate)``: on its first delivery, wait until the file ``gate`` exists
  (at most a minute); later deliveries go straight through;
- ``poison(lane, seq, kind)``: never succeeds: ``raise`` (RuntimeError), ``exit``
  (``os._exit(1)`` kills the worker process), ``memory`` (MemoryError), ``sleep`` (runs
  past its timeout, in small sleeps so the timeout can interrupt it).
"""

from __future__ import annotations

import hashlib
import os
import time

from laneway import App
from laneway._codec import decode_call
from laneway._errors import DecodeError
from laneway._execute import current_job
from laneway._history import EventKind, HistoryRecorder
from laneway._observe import HistoryListener, record_in_job
from laneway._records import JobRecord

QUEUE = "chaos"
SLEEP_POISON_LIMIT_S = 30.0
GATE_LIMIT_S = 60.0


def clock() -> float:
    """The real-time clock, immune to a patched ``time.time``."""
    return time.clock_gettime(time.CLOCK_REALTIME)


def lane_seq(rec: JobRecord) -> tuple[str | None, int]:
    """(lane, seq) of a chaos job: its first two arguments; seq -1 when the payload does
    not decode (the worker will send the job dead; recording it must not fail)."""
    try:
        args = decode_call(rec.payload).args
    except DecodeError:
        return rec.lane, -1
    return (str(args[0]) if args[0] is not None else None), int(args[1])


def _env_float(name: str, default: float | None = None) -> float | None:
    value = os.environ.get(name)
    return float(value) if value else default


def build(url: str, namespace: str, history: str = "") -> App:
    """The chaos app on ``url``/``namespace``, recording into ``history`` when given."""
    app = App(
        url,
        namespace=namespace,
        lease_s=_env_float("LANEWAY_CHAOS_LEASE_S", 10.0) or 10.0,
        backoff_s=_env_float("LANEWAY_CHAOS_BACKOFF_S", 0.05) or 0.05,
        backoff_max_s=0.5,
    )
    recorder = HistoryRecorder(history, worker=f"w-{os.getpid()}") if history else None
    if recorder is not None:
        app.listeners.append(HistoryListener(recorder, lane_seq, clock))
    hold_max_s = _env_float("LANEWAY_CHAOS_HOLD_MAX_S", 3600.0) or 0.0
    timings = {
        "sweep_s": _env_float("LANEWAY_CHAOS_SWEEP_S"),
        "heartbeat_s": _env_float("LANEWAY_CHAOS_HEARTBEAT_S"),
        "idle_wait_s": _env_float("LANEWAY_CHAOS_IDLE_WAIT_S"),
    }

    ready_dir = os.environ.get("LANEWAY_CHAOS_READY_DIR")

    def tune(worker: object) -> None:
        for name, value in timings.items():
            if value is not None:
                setattr(worker, name, value)
        if ready_dir:
            with open(os.path.join(ready_dir, str(os.getpid())), "w", encoding="utf-8") as f:
                f.write(str(clock()))

    app.on_worker_start.append(tune)

    def mark(kind: EventKind, lane: str | None, seq: int) -> None:
        if recorder is not None:
            record_in_job(recorder, kind, lane, seq, clock)

    @app.task(name="step", queue=QUEUE)
    def step(lane: str | None, seq: int, work_ms: float = 0.0) -> None:
        mark(EventKind.START, lane, seq)
        if work_ms:
            time.sleep(work_ms / 1000)
        mark(EventKind.EFFECT, lane, seq)

    @app.task(name="hold", queue=QUEUE)
    def hold(lane: str | None, seq: int, first_s: float, later_s: float = 0.0) -> None:
        mark(EventKind.START, lane, seq)
        job = current_job()
        first = job is None or job.record is None or job.record.attempts <= 1
        time.sleep(min(first_s if first else later_s, hold_max_s))
        mark(EventKind.EFFECT, lane, seq)

    @app.task(name="echo", queue=QUEUE)
    def echo(lane: str | None, seq: int, data: str) -> str:
        mark(EventKind.START, lane, seq)
        digest = hashlib.sha256(data.encode()).hexdigest()
        mark(EventKind.EFFECT, lane, seq)
        return digest

    @app.task(name="gated", queue=QUEUE)
    def gated(lane: str | None, seq: int, gate: str) -> None:
        mark(EventKind.START, lane, seq)
        job = current_job()
        if job is None or job.record is None or job.record.attempts <= 1:
            deadline = time.monotonic() + GATE_LIMIT_S
            while not os.path.exists(gate) and time.monotonic() < deadline:
                time.sleep(0.02)
        mark(EventKind.EFFECT, lane, seq)

    @app.task(name="poison", queue=QUEUE)
    def poison(lane: str | None, seq: int, kind: str) -> None:
        mark(EventKind.START, lane, seq)
        if kind == "exit":
            os._exit(1)
        if kind == "memory":
            raise MemoryError("poison job asked for too much memory")
        if kind == "sleep":
            deadline = time.monotonic() + SLEEP_POISON_LIMIT_S
            while time.monotonic() < deadline:
                time.sleep(0.01)
            raise AssertionError("the timeout never interrupted the sleeping poison job")
        raise RuntimeError(f"poison job {lane}/{seq} always fails")

    return app


app = build(
    os.environ.get("LANEWAY_CHAOS_URL", "memory://"),
    os.environ.get("LANEWAY_CHAOS_NAMESPACE", "chaos"),
    os.environ.get("LANEWAY_CHAOS_HISTORY", ""),
)
