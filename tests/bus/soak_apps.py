"""Apps of the multi-process bus run, configured by environment.

- ``billing`` subscribes by regex (``^order_``), ``mail`` by attributes
  (``{"notify": "email"}``); both record START/EFFECT in their handlers and their
  workers' claims and acks (of copies only) into ``$BUS_SOAK_HISTORY/<app>/``.
- ``python -m tests.bus.soak_apps publish EVENTS LANES OUT`` is the ``shop`` process:
  it publishes EVENTS events round-robin over LANES lanes (each lane from one thread,
  so its order is defined) and writes one JSON line per event to OUT.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import laneway
from laneway._codec import decode_call
from laneway._history import EventKind, HistoryRecorder
from laneway._observe import HistoryListener, record_in_job
from laneway._records import JobRecord, Outcome

URL = os.environ.get("BUS_SOAK_URL", "memory://")
NAMESPACE = os.environ.get("BUS_SOAK_NAMESPACE", "laneway")
HISTORY = os.environ.get("BUS_SOAK_HISTORY", "")
WORK_MS = float(os.environ.get("BUS_SOAK_WORK_MS", "1"))
KINDS = ("order_created", "user_created", "order_paid", "user_seen")
KEYS = {"billing": "billing.orders", "mail": "mail.email"}


def event_of(rec: JobRecord) -> dict[str, Any]:
    event = decode_call(rec.payload).args[0]
    assert isinstance(event, dict)
    return event


def lane_seq(rec: JobRecord) -> tuple[str | None, int]:
    event = event_of(rec)
    return event["bus_lane"], int(event["seq"])


class CopiesOnly:
    """Passes on the claims and outcomes of one task's jobs (the copies), nothing else."""

    def __init__(self, inner: HistoryListener, task: str) -> None:
        self.inner = inner
        self.task = task
        self.ids: set[str] = set()
        self.lock = threading.Lock()

    def on_claim(self, records: Sequence[JobRecord]) -> None:
        mine = [r for r in records if r.task == self.task]
        with self.lock:
            self.ids.update(r.id for r in mine)
        if mine:
            self.inner.on_claim(mine)

    def on_finish(self, outcome: Outcome, accepted: bool) -> None:
        with self.lock:
            ours = outcome.job_id in self.ids
            self.ids.discard(outcome.job_id)
        if ours:
            self.inner.on_finish(outcome, accepted)


def subscriber(name: str, matcher: Any) -> laneway.App:
    app = laneway.App(URL, namespace=NAMESPACE, name=name, lease_s=10)
    recorder = HistoryRecorder(Path(HISTORY) / name, worker=f"{name}-{os.getpid()}") if HISTORY else None
    task_name = f"{name}.handle"

    @app.subscribe(matcher, key=KEYS[name], name=task_name, max_attempts=50)
    def handle(event: dict[str, Any]) -> None:
        lane, seq = event["bus_lane"], int(event["seq"])
        if recorder is not None:
            record_in_job(recorder, EventKind.START, lane, seq, app.backend.now)
        if WORK_MS:
            time.sleep(WORK_MS / 1000)
        if recorder is not None:
            record_in_job(recorder, EventKind.EFFECT, lane, seq, app.backend.now)

    if recorder is not None:
        app.listeners.append(CopiesOnly(HistoryListener(recorder, lane_seq, app.backend.now), task_name))
    return app


billing = subscriber("billing", re.compile(r"^order_"))
mail = subscriber("mail", {"notify": "email"})


def event_for(lane: int, seq: int) -> tuple[str, dict[str, Any]]:
    """The type and attributes of the ``seq``-th event of ``lane``."""
    notify = "sms" if (lane * 7 + seq) % 3 == 0 else "email"
    return KINDS[(lane + seq) % len(KINDS)], {"seq": seq, "notify": notify, "lane_no": lane}


def publish(events: int, lanes: int, out: Path, threads: int = 4) -> None:
    """The shop: publish ``events`` over ``lanes`` lanes, one JSON line per event to ``out``."""
    shop = laneway.App(URL, namespace=NAMESPACE, name="shop")
    per_lane = events // lanes
    lines: list[str] = []
    lock = threading.Lock()

    def produce(own: list[int]) -> None:
        for seq in range(per_lane):
            for lane in own:
                kind, attrs = event_for(lane, seq)
                event = shop.publish(kind, attrs, lane=f"lane-{lane}")
                with lock:
                    lines.append(json.dumps(event))

    workers = [
        threading.Thread(target=produce, args=(list(range(lanes))[i::threads],)) for i in range(threads)
    ]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    out.write_text("\n".join(lines) + "\n")
    shop.close()


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "publish":
        raise SystemExit("usage: python -m tests.bus.soak_apps publish EVENTS LANES OUT")
    publish(int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
