"""SPEC §3 rules 6 and 7: leases, fencing tokens, at-least-once."""

from __future__ import annotations

import time

import laneway
from laneway._records import Outcome, Status, Verdict
from laneway.backends import Backend

from .conftest import Workers, wait_for


def _job(app: laneway.App, lane: str | None = "x") -> str:
    @app.task(name="t")
    def t() -> None: ...

    return t.options(lane=lane).enqueue().id


def test_rule6_claim_gives_a_fresh_increasing_token_and_counts_the_attempt(
    backend: Backend, app: laneway.App
) -> None:
    job_id = _job(app)
    first = backend.claim(["default"], worker="w1", limit=1, lease_s=0.3)[0]
    assert first.status is Status.RUNNING and first.attempts == 1 and first.worker == "w1"
    time.sleep(0.4)
    backend.sweep()
    second = backend.claim(["default"], worker="w2", limit=1, lease_s=30)[0]
    assert second.id == job_id
    assert second.attempts == 2
    assert (second.token or 0) > (first.token or 0)


def test_rule6_expired_lease_returns_work_to_the_head_of_its_lane(backend: Backend, app: laneway.App) -> None:
    @app.task(name="t")
    def t(i: int) -> None: ...

    a = t.options(lane="x").enqueue(0).id
    t.options(lane="x").enqueue(1)
    backend.claim(["default"], worker="dead", limit=1, lease_s=0.3)
    time.sleep(0.4)
    assert backend.sweep() == 1
    again = backend.claim(["default"], worker="alive", limit=1, lease_s=30)
    assert [r.id for r in again] == [a]


def test_rule6_a_worker_whose_lease_ran_out_cannot_ack(backend: Backend, app: laneway.App) -> None:
    _job(app)
    stale = backend.claim(["default"], worker="w1", limit=1, lease_s=0.3)[0]
    time.sleep(0.4)
    assert backend.finish([Outcome(stale.id, stale.token or 0, Verdict.SUCCEEDED)]) == [False]
    assert backend.extend([stale.token or 0], 30) == [False]
    backend.sweep()
    fresh = backend.claim(["default"], worker="w2", limit=1, lease_s=30)[0]
    assert backend.finish([Outcome(stale.id, stale.token or 0, Verdict.SUCCEEDED)]) == [False]
    assert backend.finish([Outcome(fresh.id, fresh.token or 0, Verdict.SUCCEEDED)]) == [True]
    assert backend.finish([Outcome(fresh.id, fresh.token or 0, Verdict.SUCCEEDED)]) == [False]
    rec = backend.get_job(fresh.id)
    assert rec is not None and rec.status is Status.SUCCEEDED


def test_rule6_heartbeat_extends_a_lease_past_its_first_expiry(backend: Backend, app: laneway.App) -> None:
    _job(app)
    rec = backend.claim(["default"], worker="w1", limit=1, lease_s=1.5)[0]
    for _ in range(4):  # 2 s in all, past the first expiry; each extend 1 s before its lease ends
        time.sleep(0.5)
        assert backend.extend([rec.token or 0], 1.5) == [True]
    assert backend.sweep() == 0
    assert backend.finish([Outcome(rec.id, rec.token or 0, Verdict.SUCCEEDED)]) == [True]


def test_rule6_sweep_of_a_dead_worker_recovers_its_work_at_once(backend: Backend, app: laneway.App) -> None:
    _job(app)
    backend.claim(["default"], worker="crashed", limit=1, lease_s=300)
    assert backend.sweep() == 0
    assert backend.sweep(worker="crashed") == 1
    assert len(backend.claim(["default"], worker="w2", limit=1, lease_s=30)) == 1


def test_rule6_held_lane_stays_held_while_its_lease_is_alive(backend: Backend, app: laneway.App) -> None:
    @app.task(name="t")
    def t(i: int) -> None: ...

    t.options(lane="x").enqueue(0)
    t.options(lane="x").enqueue(1)
    backend.claim(["default"], worker="w1", limit=1, lease_s=30)
    assert backend.sweep() == 0
    assert backend.claim(["default"], worker="w2", limit=5, lease_s=30) == []


def test_rule7_release_gives_work_back_without_spending_an_attempt(
    backend: Backend, app: laneway.App
) -> None:
    job_id = _job(app)
    rec = backend.claim(["default"], worker="w1", limit=1, lease_s=30)[0]
    assert backend.finish([Outcome(rec.id, rec.token or 0, Verdict.RELEASE)]) == [True]
    again = backend.get_job(job_id)
    assert again is not None and again.status is Status.QUEUED and again.attempts == 0


def test_rule7_job_that_kills_its_worker_every_time_goes_dead_after_max_attempts(
    backend: Backend, app: laneway.App
) -> None:
    @app.task(name="crasher", max_attempts=3)
    def crasher() -> None: ...

    job = crasher.enqueue()
    for _ in range(3):
        recs = backend.claim(["default"], worker="doomed", limit=1, lease_s=300)
        assert [r.id for r in recs] == [job.id]
        backend.sweep(worker="doomed")  # the supervisor saw the process die
    rec = backend.get_job(job.id)
    assert rec is not None and rec.status is Status.DEAD and rec.attempts == 3
    assert rec.error and "lease expired" in rec.error
    assert backend.claim(["default"], worker="w", limit=1, lease_s=30) == []


def test_rule7_jobs_claimed_behind_a_job_that_kills_its_worker_keep_their_attempts(
    backend: Backend, app: laneway.App
) -> None:
    @app.task(name="crasher", max_attempts=2)
    def crasher(i: int) -> None: ...

    jobs = [crasher.options(lane="x").enqueue(i) for i in range(3)]
    solo = crasher.enqueue(9)
    for _ in range(2):  # the lane's head kills its worker twice; the others never start
        recs = backend.claim(["default"], worker="doomed", limit=10, batch=3, lease_s=300)
        assert [r.id for r in recs if r.lane == "x"] == [j.id for j in jobs] and solo.id in {
            r.id for r in recs
        }
        backend.sweep(worker="doomed")
    head, *behind = (backend.get_job(j.id) for j in jobs)
    assert head is not None and head.status is Status.DEAD and head.attempts == 2
    for rec in behind:  # they went dead with it: each claim had counted an attempt
        assert rec is not None and rec.status is Status.QUEUED and rec.attempts == 0, rec
    lone = backend.get_job(solo.id)  # a job without a lane is its own head: it was attempted
    assert lone is not None and lone.status is Status.DEAD and lone.attempts == 2
    got = backend.claim(["default"], worker="w", limit=10, batch=3, lease_s=30)
    assert [r.id for r in got] == [j.id for j in jobs[1:]]  # in order, attempts 1 each
    assert [r.attempts for r in got] == [1, 1]


def test_rule7_every_enqueued_job_runs_when_workers_stop_and_start(
    app: laneway.App, workers: Workers
) -> None:
    done: list[int] = []

    @app.task(name="work")
    def work(i: int) -> None:
        time.sleep(0.002)
        done.append(i)

    work.enqueue_many([((i,), {}) for i in range(300)])
    for _ in range(3):
        workers.start(app, concurrency=4)
        time.sleep(0.1)
        workers.stop()
    workers.start(app, concurrency=4)
    wait_for(lambda: len(set(done)) == 300, 20, "all 300 jobs")
    assert sorted(set(done)) == list(range(300))
