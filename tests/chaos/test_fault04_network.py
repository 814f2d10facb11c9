"""RELIABILITY fault 4: the network between some workers and the server fails.

Two worker processes (under a supervisor, as ``laneway worker -p 2`` runs) reach the
server through a loopback TCP proxy (``tests/support/proxy.py``); one more worker and
the producer reach it directly. While jobs run, the proxy either *blackholes* every
byte (longer than the lease, so the cut-off workers' leases run out and the direct
worker takes their jobs over; their late acks, delivered when the network heals, must
be refused) or *resets* every connection for a while. Then the network heals.

What must hold: 0 lost, 0 order violations, 0 stale acks accepted (and no job acked
twice); a job may run twice only when a lease was lost (redelivery).

CI size: 240 jobs of 300 ms over 40 lanes, faults of 4 s (blackhole) and 3 s (reset);
soak size (``LANEWAY_SOAK=1``): 3,000 jobs over 300 lanes, faults of 30 s.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from laneway._demo import settle_from_backend
from laneway._history import Event, EventKind, check_history
from laneway.backends import Backend, open_backend
from tests.conftest import POSTGRES_URL, REDIS_URL, fresh_namespace, require_server
from tests.support.proxy import TcpProxy

from ._apps import clock
from ._procs import Fleet, Producer, wait_until
from .conftest import SERVER_BACKENDS, Figures, size, sizef, timeout

LEASE_S = 2.0
WORK_MS = 300
SHARED = {"redis": REDIS_URL, "postgres": POSTGRES_URL}


def _through(url: str, port: int) -> str:
    """``url`` with its host:port replaced by the proxy's."""
    scheme, rest = url.split("://", 1)
    userinfo, _, hostpath = rest.rpartition("@")
    _, _, path = hostpath.partition("/")
    return f"{scheme}://{userinfo + '@' if userinfo else ''}127.0.0.1:{port}/{path}"


def _taken_over(events: list[Event], cut_off: set[str]) -> int:
    """Jobs claimed by a cut-off worker and then claimed again under a newer token."""
    claims: dict[str, list[Event]] = defaultdict(list)
    for e in sorted(events, key=lambda e: e.time):
        if e.kind is EventKind.CLAIM:
            claims[e.job_id].append(e)
    return sum(
        1
        for cs in claims.values()
        if any(c.worker in cut_off and any(d.time > c.time for d in cs) for c in cs)
    )


def _held_at(events: list[Event], workers: set[str], at: float) -> int:
    """Jobs ``workers`` had claimed and not yet finished at time ``at``."""
    held: set[tuple[str, int | None]] = set()
    for e in sorted(events, key=lambda e: e.time):
        if e.time > at or e.worker not in workers:
            continue
        if e.kind is EventKind.CLAIM:
            held.add((e.job_id, e.token))
        elif e.kind in (EventKind.ACK, EventKind.ACK_REFUSED, EventKind.NACK, EventKind.DEAD):
            held.discard((e.job_id, e.token))
    return len(held)


def _ackers(fleet: Fleet) -> set[str]:
    return {e.worker for e in fleet.events() if e.kind is EventKind.ACK}


def _pending(backend: Backend) -> int:
    return sum(s.scheduled + s.queued + s.running + s.retrying for s in backend.stats())


@pytest.mark.parametrize("fault", ["blackhole", "reset"])
@pytest.mark.parametrize("kind", SERVER_BACKENDS)
@timeout(150, 900)
def test_network_cut_between_workers_and_server_loses_nothing_keeps_order_and_refuses_stale_acks(
    kind: str, fault: str, tmp_path: Path, figures: Figures
) -> None:
    url = SHARED[kind]
    require_server(url, kind)
    namespace = fresh_namespace()
    lanes, per_lane = size(40, 300), size(6, 10)
    fault_s = sizef(4.0 if fault == "blackhole" else 3.0, 30.0)
    env = {"LANEWAY_CHAOS_SWEEP_S": "0.5", "LANEWAY_CHAOS_IDLE_WAIT_S": "0.2"}
    backend = open_backend(url, namespace)
    try:
        with TcpProxy(urlsplit(url).port or 0) as proxy, Fleet(tmp_path, url, namespace, env) as fleet:
            producer = Producer(fleet, url, namespace)
            cut = fleet.worker("cut-off", concurrency=4, lease_s=LEASE_S, processes=2,
                               env={"LANEWAY_CHAOS_URL": _through(url, proxy.port)})  # fmt: skip
            direct = fleet.worker("direct", concurrency=4, lease_s=LEASE_S)
            fleet.wait_ready(3)
            cut_off = fleet.ready() - {direct.history_name}

            def produce() -> None:
                try:
                    for seq in range(per_lane):
                        for lane in range(lanes):
                            producer.send("step", f"lane-{lane}", seq, WORK_MS)
                finally:
                    producer.close()

            sender = threading.Thread(target=produce, daemon=True)
            sender.start()
            wait_until(lambda: _ackers(fleet) >= cut_off, 60, "the cut-off workers to work")
            wait_until(
                lambda: _held_at(fleet.events(), cut_off, clock()) >= 2,
                60,
                "the cut-off workers to hold jobs",
            )
            held = _held_at(fleet.events(), cut_off, clock())
            getattr(proxy, fault)()
            time.sleep(fault_s)
            proxy.heal()
            sender.join(sizef(120, 600))
            assert not sender.is_alive(), "the producer did not finish"
            wait_until(lambda: _pending(backend) == 0, sizef(90, 600), "every job to finish", every_s=0.5)
            time.sleep(LEASE_S)  # late acks of the cut-off workers arrive and are refused
            for proc in (cut, direct):
                proc.signal(signal.SIGTERM)
            for proc in (cut, direct):
                proc.wait(15)
            events = fleet.events()
            cut_off |= {e.worker for e in events if e.kind is EventKind.CLAIM} - {direct.history_name}
            history, rebuilt = settle_from_backend(events, producer.refs, backend)
            deaths = cut.log_text().count("exited with")
        report = check_history(history, expected=producer.refs)
        taken = _taken_over(history, cut_off)
        refused = sum(1 for e in history if e.kind is EventKind.ACK_REFUSED)
    finally:
        drop = getattr(backend, "drop_namespace", None)
        if callable(drop):
            drop()
        backend.close()

    figures(backend=kind, fault=fault, fault_s=fault_s, jobs=len(producer.refs), lost=len(report.lost),
            duplicated=len(report.duplicated), order_violations=len(report.order_violations),
            stale_acks=len(report.stale_acks), held_by_cut_off_at_fault=held, taken_over=taken, acks_refused=refused,
            acks_rebuilt=rebuilt, connections_reset=proxy.resets, worker_processes_died=deaths)  # fmt: skip
    assert report.lost == (), report.details()
    assert report.order_violations == (), report.details()
    assert report.stale_acks == () and report.duplicate_acks == (), report.details()
    assert report.unexpected == () and report.disallowed_duplicates == (), report.details()
    if fault == "blackhole":
        assert taken > 0, "no job held by a cut-off worker was taken over: the blackhole tested nothing"


OUTAGE_S = 10.0


@pytest.mark.parametrize("kind", SERVER_BACKENDS)
@timeout(120, 240)
def test_a_worker_cut_off_from_its_server_for_10s_keeps_running_and_works_again(
    kind: str, tmp_path: Path, figures: Figures
) -> None:
    url = SHARED[kind]
    require_server(url, kind)
    namespace = fresh_namespace()
    backend = open_backend(url, namespace)
    try:
        with TcpProxy(urlsplit(url).port or 0) as proxy, Fleet(tmp_path, url, namespace) as fleet:
            worker = fleet.worker("cut-off", concurrency=2, lease_s=LEASE_S,
                                  env={"LANEWAY_CHAOS_URL": _through(url, proxy.port)})  # fmt: skip
            producer = Producer(fleet, url, namespace)
            try:
                producer.send("step", "before", 0)
                wait_until(lambda: _ackers(fleet), 90, "the worker to work")
                proxy.reset()
                time.sleep(OUTAGE_S)
                alive_during = worker.alive()
                proxy.heal()
                healed = time.monotonic()
                producer.send("step", "after", 0)
                wait_until(
                    lambda: len(_acked(fleet)) >= 2 or not worker.alive(), 60, "the job sent after the outage"
                )
                resumed_s = time.monotonic() - healed
            finally:
                producer.close()
            alive = worker.alive()
            log = worker.log_text()
    finally:
        drop = getattr(backend, "drop_namespace", None)
        if callable(drop):
            drop()
        backend.close()
    figures(backend=kind, outage_s=OUTAGE_S, worker_alive=alive, resumed_s=round(resumed_s, 2))
    assert alive_during and alive, (
        f"the worker process exited during a {OUTAGE_S:.0f} s outage of its server "
        f"(laneway/_worker.py Worker._fetch_loop re-raises a backend error from claim(), ending run()):\n"
        f"{log[-3000:]}"
    )
    assert len(_acked(fleet)) >= 2


def _acked(fleet: Fleet) -> set[str]:
    return {e.job_id for e in fleet.events() if e.kind is EventKind.ACK}
