"""RELIABILITY fault 9: poison jobs.

Each poison job heads a lane, with a normal job behind it, and has ``max_attempts=3``:

- ``raise``: always raises (one lane with ``on_dead="skip"``, one with ``"block"``);
- ``memory``: raises ``MemoryError`` (skip);
- ``sleep``: runs past its 0.5 s timeout (block);
- ``exit``: calls ``os._exit(1)``, killing its worker process (block). It runs on a
  queue of its own, served by ``laneway worker -p 1`` with one slot, so every delivery
  costs exactly one crash and the supervisor's restarts can be counted.

Each must go dead after exactly 3 deliveries (crashes included), with its reason
recorded; the supervisor must stop restarting once the job is dead (no crash loop); a
``skip`` lane's next job runs after the poison went dead, a ``block`` lane's waits
until the operator purges the dead job, then runs.

``memory://`` runs the in-process kinds (no process to crash).
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from laneway._history import EventKind
from laneway._records import Status

from ._procs import Fleet, Producer, ThreadWorkers, wait_until
from .conftest import ALL_BACKENDS, Chaos, Figures, timeout

MAX_ATTEMPTS = 3
POISONS = [("raise", "skip"), ("raise", "block"), ("memory", "skip"), ("sleep", "block"), ("exit", "block")]
REASONS = {"raise": "RuntimeError", "memory": "MemoryError", "sleep": "JobTimeout", "exit": "lease expired"}


@pytest.mark.parametrize("kind", ALL_BACKENDS)
@timeout(180, 300)
def test_poison_jobs_go_dead_after_exactly_max_attempts_with_their_reason_and_lanes_follow_on_dead(
    kind: str, chaos_factory: Callable[[str], Chaos], tmp_path: Path, figures: Figures
) -> None:
    target = chaos_factory(kind)
    backend = target.open()
    poisons = [(p, policy) for p, policy in POISONS if kind != "memory" or p != "exit"]
    env = {
        "LANEWAY_CHAOS_SWEEP_S": "0.5",
        "LANEWAY_CHAOS_IDLE_WAIT_S": "0.2",
        "LANEWAY_CHAOS_BACKOFF_S": "0.05",
    }
    with Fleet(tmp_path, target.url, target.namespace, env) as fleet:
        producer = Producer(fleet, target.url, target.namespace)
        poison_ids: dict[tuple[str, str], str] = {}
        followers: dict[tuple[str, str], str] = {}
        try:
            for p, policy in poisons:
                lane = f"{p}-{policy}"
                queue = "crash" if p == "exit" else "chaos"
                poison_ids[(p, policy)] = producer.send(
                    "poison", lane, 0, p, queue=queue, max_attempts=MAX_ATTEMPTS, on_dead=policy,
                    timeout=0.5 if p == "sleep" else None,
                )  # fmt: skip
                followers[(p, policy)] = producer.send("step", lane, 1, queue=queue)
        finally:
            producer.close()
        threads = None
        crasher = None
        if kind == "memory":
            threads = ThreadWorkers(fleet, target.url, target.namespace)
            threads.start(1, concurrency=4, lease_s=10.0, idle_wait_s=0.2)
        else:
            fleet.worker("worker", concurrency=4, lease_s=10.0)
            crasher = fleet.worker("crasher", queues="crash", concurrency=1, lease_s=10.0, processes=1)
        try:

            def status(job_id: str) -> Status | None:
                rec = backend.get_job(job_id)
                return None if rec is None else rec.status

            wait_until(lambda: all(status(j) is Status.DEAD for j in poison_ids.values()), 150,
                       "every poison job to go dead", every_s=0.2)  # fmt: skip
            skip_followers = [followers[k] for k in followers if k[1] == "skip"]
            wait_until(lambda: all(status(j) is Status.SUCCEEDED for j in skip_followers), 30,
                       "the skip lanes to move on", every_s=0.2)  # fmt: skip
            crashes_when_dead = crasher.log_text().count("exited with") if crasher else 0
            time.sleep(2.0)  # a blocked lane must stay blocked; a dead poison must not crash anyone again
            blocked = {k: status(followers[k]) for k in followers if k[1] == "block"}
            crashes_later = crasher.log_text().count("exited with") if crasher else 0
            supervisor_alive = crasher is None or crasher.alive()
            records = {k: backend.get_job(j) for k, j in poison_ids.items()}
            backend.purge(status=Status.DEAD)
            block_followers = [followers[k] for k in followers if k[1] == "block"]
            wait_until(lambda: all(status(j) is Status.SUCCEEDED for j in block_followers), 30,
                       "the blocked lanes to move on once the dead jobs are purged", every_s=0.2)  # fmt: skip
        finally:
            if threads is not None:
                threads.stop()
            for proc in fleet.procs:
                proc.signal(signal.SIGTERM)
            for proc in fleet.procs:
                proc.wait(15)
        starts = Counter(e.job_id for e in fleet.events() if e.kind is EventKind.START)
        logs = fleet.logs()

    deliveries = {f"{p}-{policy}": starts[j] for (p, policy), j in poison_ids.items()}
    figures(backend=kind, poisons=len(poisons), deliveries=deliveries, crashes=crashes_later,
            attempts={f"{p}-{q}": r.attempts if r else None for (p, q), r in records.items()})  # fmt: skip
    for (p, policy), rec in records.items():
        assert rec is not None and rec.status is Status.DEAD, f"{p}/{policy}: {rec}"
        assert rec.attempts == MAX_ATTEMPTS, f"{p}/{policy}: dead after {rec.attempts} attempts"
        assert deliveries[f"{p}-{policy}"] == MAX_ATTEMPTS, f"{p}/{policy}: {deliveries} deliveries\n{logs}"
        assert rec.error and REASONS[p] in rec.error, f"{p}/{policy}: reason {rec.error!r}"
    assert all(s in (Status.QUEUED, Status.RETRYING) for s in blocked.values()), (
        f"a blocked lane moved on: {blocked}"
    )
    if crasher is not None:
        assert crashes_when_dead == MAX_ATTEMPTS, f"{crashes_when_dead} crashes for {MAX_ATTEMPTS} deliveries"
        assert crashes_later == crashes_when_dead, "the supervisor kept restarting after the poison was dead"
        assert supervisor_alive, "the supervisor gave up"
