"""The app the demo and chaos worker processes import (configured by environment).

Every job records START before its work and EFFECT after it, and every worker records
its claims and acks (with fencing tokens) through ``HistoryListener``, so the run can be
judged by the history checker afterwards.
"""

from __future__ import annotations

import os
import time

from ._app import App
from ._history import EventKind, HistoryRecorder
from ._observe import HistoryListener, record_in_job
from ._records import JobRecord

URL = os.environ.get("LANEWAY_DEMO_URL", "sqlite:///laneway-demo.db")
NAMESPACE = os.environ.get("LANEWAY_DEMO_NAMESPACE", "demo")
HISTORY = os.environ.get("LANEWAY_DEMO_HISTORY", "")
WORK_MS = float(os.environ.get("LANEWAY_DEMO_WORK_MS", "1"))
QUEUE = "demo"
TASK = "demo.step"

app = App(URL, namespace=NAMESPACE, lease_s=float(os.environ.get("LANEWAY_DEMO_LEASE_S", "10")))
_recorder = HistoryRecorder(HISTORY, worker=f"worker-{os.getpid()}") if HISTORY else None


def lane_seq(rec: JobRecord) -> tuple[str | None, int]:
    """The demo job's (lane, seq): its lane, and the seq it carries as its 2nd argument."""
    from ._codec import decode_call

    return rec.lane, int(decode_call(rec.payload).args[1])


if _recorder is not None:
    app.listeners.append(HistoryListener(_recorder, lane_seq, app.backend.now))


@app.task(name=TASK, queue=QUEUE, max_attempts=50)
def step(lane: str, seq: int) -> None:
    """One unit of demo work: a short sleep between a START and an EFFECT record."""
    if _recorder is not None:
        record_in_job(_recorder, EventKind.START, lane, seq, app.backend.now)
    if WORK_MS:
        time.sleep(WORK_MS / 1000 * (0.5 + (hash((lane, seq)) % 100) / 100))
    if _recorder is not None:
        record_in_job(_recorder, EventKind.EFFECT, lane, seq, app.backend.now)
