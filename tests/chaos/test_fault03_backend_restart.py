"""RELIABILITY fault 3: the backend server dies and comes back, with persistence on.

A private server (Redis with ``--appendonly yes --appendfsync always``; PostgreSQL with
``fsync`` and synchronous commits) is killed while a producer thread enqueues and two
worker processes run jobs (Redis: ``kill -9``; PostgreSQL: ``pg_ctl stop -m
immediate``), stays down for a moment, and is started again on the same port and data.
The workers run as ``laneway worker -p 2`` does in production: a supervisor restarting
any worker process that dies.

What must hold: every enqueue the backend acknowledged before, during or after the
crash is still there and runs (0 lost), lanes stay in order, no stale ack is accepted,
and the producer and the workers are claiming again within 5 s of the server being
back, and no worker process died of the outage. An enqueue that raised is not acknowledged: the producer moves that lane on
to its next seq, and if the backend did store it after all, it may run (it is not
counted as unexpected).

SQLite has no server; its case of this fault (``kill -9`` of an enqueuing process in the
middle of a transaction, then ``PRAGMA integrity_check``) is in
``tests/backends/test_sqlite_processes.py``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from laneway._demo import settle_from_backend
from laneway._history import EventKind, check_history
from laneway.backends import Backend, open_backend
from tests.conftest import fresh_namespace
from tests.support.private_servers import PrivatePostgres, PrivateRedis

from ._apps import clock
from ._procs import Fleet, Producer, wait_until
from .conftest import SERVER_BACKENDS, Figures, sizef, timeout

LANES = 40
RECONNECT_S = 5.0
DOWN_S = 1.0


@dataclass
class Traffic:
    """A producer thread's record: acknowledged sends and the failures in between."""

    acked: int = 0
    failed: int = 0
    ambiguous: set[tuple[str, int]] = field(default_factory=set)
    first_ok_after: dict[float, float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


def _produce(producer: Producer, traffic: Traffic, up_marks: list[float], deadline: float) -> None:
    seqs = dict.fromkeys(range(LANES), 0)
    lane = 0
    try:
        while not traffic.stop.is_set() and time.monotonic() < deadline:
            name = f"lane-{lane}"
            seq = seqs[lane]
            seqs[lane] += 1
            try:
                producer.send("step", name, seq, 2)
            except Exception:  # noqa: BLE001 - the server is down; this send is not acknowledged
                traffic.failed += 1
                traffic.ambiguous.add((name, seq))
                time.sleep(0.05)
                continue
            traffic.acked += 1
            now = time.monotonic()
            for mark in up_marks:
                traffic.first_ok_after.setdefault(mark, now)
            lane = (lane + 1) % LANES
            time.sleep(0.002)
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        traffic.error = exc


def _crash_and_restart(server: PrivateRedis | PrivatePostgres) -> float:
    """Kill the server the hard way, keep it down ``DOWN_S``, start it; returns start time."""
    if isinstance(server, PrivateRedis):
        server.kill9()
    else:
        server.crash()
    time.sleep(DOWN_S)
    server.start()
    return time.monotonic()


@pytest.mark.parametrize("kind", SERVER_BACKENDS)
@timeout(150, 600)
def test_backend_restart_loses_no_acknowledged_enqueue_and_clients_reconnect_within_5s(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, figures: Figures
) -> None:
    server: PrivateRedis | PrivatePostgres = request.getfixturevalue(f"private_{kind}")
    namespace = fresh_namespace()
    env = {"LANEWAY_CHAOS_SWEEP_S": "0.5", "LANEWAY_CHAOS_IDLE_WAIT_S": "0.2"}
    with Fleet(tmp_path, server.url, namespace, env) as fleet:
        producer = Producer(fleet, server.url, namespace)
        supervisor = fleet.worker("supervisor", concurrency=4, lease_s=3.0, processes=2)
        traffic = Traffic()
        up_marks: list[float] = []
        thread = threading.Thread(
            target=_produce, args=(producer, traffic, up_marks, time.monotonic() + 120), daemon=True
        )
        thread.start()
        try:
            wait_until(lambda: len(_workers_acking(fleet)) >= 2, 60, "both worker processes to work")
            time.sleep(sizef(1.0, 5.0))
            crashed_at = clock()
            up = _crash_and_restart(server)
            up_at = clock()
            up_marks.append(up)
            wait_until(lambda: up in traffic.first_ok_after, 30, "the producer to enqueue again")
            producer_s = traffic.first_ok_after[up] - up
            wait_until(lambda: _first_claim(fleet, up_at) is not None, 30, "a worker to claim again")
            worker_s = (_first_claim(fleet, up_at) or 0.0) - up_at
            time.sleep(sizef(1.0, 5.0))
        finally:
            traffic.stop.set()
            thread.join(10)
        assert traffic.error is None, f"producer failed: {traffic.error!r}"
        backend = open_backend(server.url, namespace)
        try:
            refs = producer.refs
            missing = [r for r in refs if backend.get_job(r.job_id) is None]
            wait_until(lambda: _pending(backend) == 0, 90, "every job to finish", every_s=0.5)
            history, _ = settle_from_backend(fleet.events(), refs, backend)
        finally:
            backend.close()
            producer.close()
        report = check_history(history, expected=refs)
        deaths = supervisor.log_text().count("exited with")
        logs = fleet.logs()

    stray = [u for u in report.unexpected if (u.job.lane, u.job.seq) not in traffic.ambiguous]
    figures(backend=kind, server_down_s=round(up_at - crashed_at, 2), acknowledged=len(refs),
            refused_during_outage=traffic.failed, missing_after_restart=len(missing), lost=len(report.lost),
            duplicated=len(report.duplicated), order_violations=len(report.order_violations),
            producer_reconnect_s=round(producer_s, 2), worker_reconnect_s=round(worker_s, 2),
            worker_processes_died=deaths)  # fmt: skip
    assert not missing, f"{len(missing)} acknowledged enqueues were gone after the restart: {missing[:5]}"
    assert report.lost == () and report.order_violations == (), report.details()
    assert report.stale_acks == () and report.duplicate_acks == (), report.details()
    assert report.disallowed_duplicates == () and stray == [], report.details()
    assert producer_s <= RECONNECT_S, f"the producer needed {producer_s:.2f} s to enqueue again"
    assert worker_s <= RECONNECT_S, f"the workers needed {worker_s:.2f} s to claim again"
    assert deaths == 0, (
        f"{deaths} worker processes died of the outage and were restarted by the supervisor: "
        "laneway/_worker.py Worker._fetch_loop lets a backend error from claim() or wait() end "
        f"run(), so a worker does not ride out a restart of its backend\n{logs}"
    )


def _workers_acking(fleet: Fleet) -> set[str]:
    return {e.worker for e in fleet.events() if e.kind is EventKind.ACK}


def _first_claim(fleet: Fleet, after: float) -> float | None:
    """When the first claim after ``after`` was recorded, by any worker process."""
    return min(
        (e.time for e in fleet.events() if e.kind is EventKind.CLAIM and e.time >= after), default=None
    )


def _pending(backend: Backend) -> int:
    return sum(s.scheduled + s.queued + s.running + s.retrying for s in backend.stats())
