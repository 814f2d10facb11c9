"""Whole-system scenarios from the core issue, on every backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import laneway
from laneway._records import JobRecord, Outcome

from .conftest import Workers, wait_for


class SlotCheck:
    """Tracks how many jobs each worker holds, and the most it ever held."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.first_claim_at: dict[str, float] = {}
        self.owner: dict[str, str] = {}

    def on_claim(self, records: Sequence[JobRecord]) -> None:
        with self.lock:
            for rec in records:
                worker = rec.worker or "?"
                self.owner[rec.id] = worker
                self.held[worker] = self.held.get(worker, 0) + 1
                self.peak[worker] = max(self.peak.get(worker, 0), self.held[worker])
                self.first_claim_at.setdefault(worker, time.monotonic())

    def on_finish(self, outcome: Outcome, accepted: bool) -> None:
        with self.lock:
            worker = self.owner.pop(outcome.job_id, "?")
            self.held[worker] = self.held.get(worker, 0) - 1


def test_rz_scenario_a_late_worker_gets_work_at_once_and_nobody_hoards(
    app: laneway.App, workers: Workers
) -> None:
    """1,000 jobs of 50 ms and 2 workers; a third started after 2 s gets work on its first
    claim, and no worker ever holds more jobs than its slots."""
    check = SlotCheck()
    app.listeners.append(check)

    @app.task(name="rz")
    def rz(i: int) -> None:
        time.sleep(0.05)

    rz.enqueue_many([((i,), {}) for i in range(1000)])
    early = [workers.start(app, concurrency=8, worker_id=f"early-{i}") for i in range(2)]
    time.sleep(2.0)
    started = time.monotonic()
    late = workers.start(app, concurrency=8, worker_id="late")
    wait_for(lambda: late.stats.claim_calls >= 1, 3, "the late worker's first claim")
    assert late.stats.empty_claims == 0, "the late worker's first claim found work"
    assert check.first_claim_at["late"] - started < 1.0
    wait_for(lambda: sum(w.stats.succeeded for w in [*early, late]) == 1000, 60, "1,000 jobs")
    assert late.stats.succeeded > 0
    assert all(peak <= 8 for peak in check.peak.values()), check.peak
