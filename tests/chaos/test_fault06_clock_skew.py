"""RELIABILITY fault 6: worker clocks 262 s ahead and 262 s behind.

Two worker processes run with ``time.time`` skewed by +262 s and -262 s (through
``tests/chaos/skew/sitecustomize.py``); the producer's clock and the history's clock
(``clock_gettime``, which the skew does not touch) are true. Every deadline must be
measured on the backend's clock, so:

- no delayed job starts before it is due (its due time is taken on the true clock
  before the enqueue, so a start before it is early by any measure);
- no lease runs out early: jobs that run for longer than the lease (kept alive by
  heartbeats) are claimed exactly once and no ack is refused (nothing is killed here).

SQLite has no server: its clock is the machine's as SQLite reads it (``julianday('now')``
in C), which the skew of a worker's Python clock does not touch either.
"""

from __future__ import annotations

import random
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from laneway._demo import settle_from_backend
from laneway._history import EventKind, check_history
from laneway.backends import Backend

from ._apps import clock
from ._procs import Fleet, Producer, wait_until
from .conftest import PROCESS_BACKENDS, Chaos, Figures, size, timeout

SKEW_S = 262.0
LEASE_S = 3.0
LONG_JOB_S = 4.0


def _pending(backend: Backend) -> int:
    return sum(s.scheduled + s.queued + s.running + s.retrying for s in backend.stats())


@pytest.mark.parametrize("kind", PROCESS_BACKENDS)
@timeout(120, 300)
def test_workers_with_clocks_262s_off_start_nothing_early_and_lose_no_lease_early(
    kind: str, chaos_factory: Callable[[str], Chaos], tmp_path: Path, figures: Figures
) -> None:
    target = chaos_factory(kind)
    backend = target.open()
    rng = random.Random(6)
    env = {"LANEWAY_CHAOS_SWEEP_S": "0.3", "LANEWAY_CHAOS_IDLE_WAIT_S": "0.2"}
    delayed, longs = size(60, 400), size(6, 20)
    with Fleet(tmp_path, target.url, target.namespace, env) as fleet:
        workers = [
            fleet.worker("ahead", concurrency=4, lease_s=LEASE_S, skew_s=+SKEW_S),
            fleet.worker("behind", concurrency=4, lease_s=LEASE_S, skew_s=-SKEW_S),
        ]
        fleet.wait_ready(2)
        producer = Producer(fleet, target.url, target.namespace)
        due: dict[str, float] = {}
        try:
            for seq in range(longs):
                producer.send("hold", f"long-{seq}", 0, LONG_JOB_S)
            for seq in range(delayed):
                delay = rng.uniform(1.0, 5.0)
                at = clock() + delay
                due[producer.send("step", None, seq, delay=delay)] = at
        finally:
            producer.close()
        wait_until(lambda: _pending(backend) == 0, 90, "every job to finish", every_s=0.5)
        for w in workers:
            w.signal(signal.SIGTERM)
        for w in workers:
            w.wait(15)
        history, _ = settle_from_backend(fleet.events(), producer.refs, backend)
        logs = fleet.logs()

    report = check_history(history, expected=producer.refs)
    first_start: dict[str, float] = {}
    for e in sorted(history, key=lambda e: e.time):
        if e.kind is EventKind.START:
            first_start.setdefault(e.job_id, e.time)
    early = {
        job_id: round(at - first_start[job_id], 3) for job_id, at in due.items() if first_start[job_id] < at
    }
    claims = Counter(e.job_id for e in history if e.kind is EventKind.CLAIM)
    redelivered = [job_id for job_id, n in claims.items() if n > 1]
    refused = [e for e in history if e.kind is EventKind.ACK_REFUSED]
    figures(backend=kind, delayed=delayed, long_jobs=longs, early_starts=len(early),
            most_early_s=max(early.values(), default=0.0), premature_expiries=len(redelivered),
            acks_refused=len(refused), lost=len(report.lost))  # fmt: skip
    assert report.lost == () and report.order_violations == (), report.details()
    assert not early, (
        f"{len(early)} of {delayed} delayed jobs started early (seconds early: "
        f"{sorted(early.values())[-5:]}): the backend measured a due time on a worker's clock"
    )
    assert not redelivered and not refused, (
        f"{len(redelivered)} jobs were claimed again and {len(refused)} acks refused with no worker "
        f"killed: leases ran out early on a skewed worker's clock\n{logs[-4000:]}"
    )
