"""An idle worker's pickup: ``Backend.wait_and_claim`` and the executor that waits.

Every backend: a wait ends with the claim of what arrived (and only of its own queues),
an empty claim when nothing did; a worker runs what it was woken for in the waiting
thread, and gives back a job its wait claimed after the worker began to stop.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import laneway
from laneway._records import JobRecord, Status

from .conftest import wait_for


def _claim_in_thread(
    app: laneway.App, queues: list[str], timeout_s: float
) -> tuple[threading.Thread, dict[str, Any]]:
    """Call ``wait_and_claim`` as an idle worker does (again after an empty return, which
    is allowed to come early) until it claims something or ``timeout_s`` has passed."""
    out: dict[str, Any] = {"recs": []}

    def run() -> None:
        deadline = time.monotonic() + timeout_s
        while not out["recs"] and time.monotonic() < deadline:
            out["recs"] = app.backend.wait_and_claim(
                queues, deadline - time.monotonic(), worker="w", limit=4, lease_s=30
            )
        out["at"] = time.monotonic()

    t = threading.Thread(target=run)
    t.start()
    return t, out


def _idle(app: laneway.App, queues: list[str]) -> None:
    """Claim once so that the wait below starts from an empty claim, as a worker's does."""
    assert app.backend.claim(queues, worker="w", limit=4, lease_s=30) == []


def test_a_wait_ends_with_the_claim_of_a_job_sent_meanwhile(app: laneway.App) -> None:
    @app.task(name="t", queue="q")
    def t() -> None: ...

    _idle(app, ["q"])
    thread, out = _claim_in_thread(app, ["q"], 10.0)
    time.sleep(0.3)
    sent = time.monotonic()
    job = t.enqueue()
    thread.join(15)
    assert [rec.id for rec in out["recs"]] == [job.id]
    assert out["at"] - sent < 5.0, "woken by the enqueue, not by the 10 s timeout"
    rec = job.refresh().record
    assert rec is not None and rec.status is Status.RUNNING and rec.attempts == 1


def test_a_wait_that_times_out_claims_nothing(app: laneway.App) -> None:
    _idle(app, ["q"])
    begun = time.monotonic()
    assert app.backend.wait_and_claim(["q"], 0.3, worker="w", limit=4, lease_s=30) == []
    assert time.monotonic() - begun < 3.0


def test_a_wait_never_claims_from_a_queue_it_was_not_given(app: laneway.App) -> None:
    @app.task(name="o", queue="other")
    def o() -> None: ...

    _idle(app, ["q"])
    thread, out = _claim_in_thread(app, ["q"], 0.8)
    time.sleep(0.2)
    job = o.enqueue()
    thread.join(10)
    assert out["recs"] == []
    rec = job.refresh().record
    assert rec is not None and rec.status is Status.QUEUED


def test_an_idle_worker_runs_the_job_it_was_woken_for_in_the_thread_that_waited(
    app: laneway.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    waited_in: list[threading.Thread] = []
    claimed_in: list[threading.Thread] = []
    ran_in: list[threading.Thread] = []
    real = app.backend.wait_and_claim

    def spy(*args: Any, **kwargs: Any) -> list[JobRecord]:
        waited_in.append(threading.current_thread())
        recs = real(*args, **kwargs)
        if recs:
            claimed_in.append(threading.current_thread())
        return recs

    monkeypatch.setattr(app.backend, "wait_and_claim", spy)

    @app.task(name="t")
    def t() -> None:
        ran_in.append(threading.current_thread())

    w = app.worker(concurrency=4, idle_wait_s=5.0)
    th = threading.Thread(target=w.run)
    th.start()
    try:
        wait_for(lambda: bool(waited_in), 5, "the worker to go idle")
        t.enqueue()
        wait_for(lambda: bool(ran_in), 5, "the job")
        assert claimed_in, "an idle worker claims through wait_and_claim"
        assert ran_in[0] is claimed_in[0]
    finally:
        w.stop()
        th.join(15)
    assert not th.is_alive()


def test_a_job_claimed_by_a_wait_that_outlives_the_worker_is_given_back_unrun(
    app: laneway.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []
    waiting = threading.Event()
    real_claim = app.backend.claim

    @app.task(name="t")
    def t() -> None:
        ran.append("t")

    w = app.worker(concurrency=2, idle_wait_s=5.0)

    def slow_wait(queues: Any, timeout_s: float, **kwargs: Any) -> list[JobRecord]:
        waiting.set()
        wait_for(w._stopping.is_set, 10, "stop")  # the wait outlives the stop request
        return real_claim(queues, **kwargs)

    monkeypatch.setattr(app.backend, "wait_and_claim", slow_wait)
    th = threading.Thread(target=w.run)
    th.start()
    assert waiting.wait(5)
    job = t.enqueue()
    w.stop()
    th.join(15)
    assert not th.is_alive()
    assert ran == []
    rec = job.refresh().record
    assert rec is not None and rec.status is Status.QUEUED and rec.attempts == 0
