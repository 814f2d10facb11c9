"""SPEC §3 rule 4: delayed jobs are invisible until due and join their lane then."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import laneway
from laneway._records import Outcome, Status, Verdict
from laneway.backends import Backend

from .conftest import Workers, wait_for


def test_rule4_delayed_job_is_invisible_until_due(backend: Backend, app: laneway.App) -> None:
    @app.task(name="d")
    def d() -> None: ...

    job = d.options(delay=0.4).enqueue()
    assert job.refresh().status is Status.SCHEDULED
    assert backend.claim(["default"], worker="w", limit=1, lease_s=30) == []
    time.sleep(0.5)
    recs = backend.claim(["default"], worker="w", limit=1, lease_s=30)
    assert [r.id for r in recs] == [job.id]


def test_rule4_run_at_takes_an_aware_datetime(backend: Backend, app: laneway.App) -> None:
    @app.task(name="d")
    def d() -> None: ...

    job = d.options(run_at=datetime.now(timezone.utc) + timedelta(seconds=0.3)).enqueue()
    assert backend.claim(["default"], worker="w", limit=1, lease_s=30) == []
    time.sleep(0.4)
    assert [r.id for r in backend.claim(["default"], worker="w", limit=1, lease_s=30)] == [job.id]


def test_rule4_delayed_job_joins_its_lane_when_due_not_when_sent(backend: Backend, app: laneway.App) -> None:
    @app.task(name="d")
    def d(tag: str) -> None: ...

    d.options(lane="x", delay=0.3).enqueue("late")
    d.options(lane="x").enqueue("now")
    got = backend.claim(["default"], worker="w", limit=5, batch=5, lease_s=30)
    assert [laneway.Job(app, r.id, record=r).args[0] for r in got] == ["now"]


def test_rule4_a_delayed_job_due_before_a_later_send_runs_first_though_no_claim_ran_between(
    backend: Backend, app: laneway.App
) -> None:
    @app.task(name="d")
    def d(tag: str) -> None: ...

    d.options(lane="x", delay=0.2).enqueue("due first")
    time.sleep(0.4)  # it comes due with every worker busy elsewhere: nothing promotes it
    d.options(lane="x").enqueue("sent after")
    got = backend.claim(["default"], worker="w", limit=5, batch=5, lease_s=30)
    assert [laneway.Job(app, r.id, record=r).args[0] for r in got] == ["due first", "sent after"]


def test_rule4_a_backlog_of_due_jobs_longer_than_one_promotion_is_not_overtaken_by_a_later_send(
    backend: Backend, app: laneway.App
) -> None:
    @app.task(name="d")
    def d(tag: str) -> None: ...

    # More due jobs than a send or a claim promotes at once (Redis 200, SQLite 1,000), and
    # the lane's own due job last among them
    for start in range(0, 1500, 500):
        d.options(delay=0.2).enqueue_many([((f"filler {i}",), {}) for i in range(start, start + 500)])
    d.options(lane="x", delay=0.3).enqueue("due first")
    time.sleep(0.5)  # every one came due with no claim running
    d.options(lane="x").enqueue("sent after")
    lane_x: list[str] = []
    for _ in range(100):  # claims promote in batches too: go on until lane x ran twice
        for r in backend.claim(["default"], worker="w", limit=2000, batch=5, lease_s=30):
            if r.lane == "x":
                lane_x.append(laneway.Job(app, r.id, record=r).args[0])
                backend.finish([Outcome(r.id, r.token, Verdict.SUCCEEDED)])
        if len(lane_x) == 2:
            break
    assert lane_x == ["due first", "sent after"]


def test_rule4_jobs_of_a_lane_due_at_the_same_moment_keep_their_send_order(
    backend: Backend, app: laneway.App
) -> None:
    @app.task(name="d")
    def d(i: int) -> None: ...

    d.options(lane="x", delay=0.2).enqueue_many([((i,), {}) for i in range(8)])  # one due time
    time.sleep(0.35)
    got = backend.claim(["default"], worker="w", limit=8, batch=8, lease_s=30)
    assert [laneway.Job(app, r.id, record=r).args[0] for r in got] == list(range(8))


def test_rule4_a_job_sent_with_a_past_run_at_joins_its_lane_when_sent(
    backend: Backend, app: laneway.App
) -> None:
    @app.task(name="d")
    def d(tag: str) -> None: ...

    d.options(lane="x", delay=0.2).enqueue("due first")
    d.options(lane="other", delay=0.2).enqueue("due elsewhere")
    time.sleep(0.4)
    # run_at before "due first" came due: still sent after it had joined the lane
    d.options(lane="x", run_at=time.time() - 60).enqueue("sent after")
    got = backend.claim(["default"], worker="w", limit=5, batch=5, lease_s=30)
    lane_x = [laneway.Job(app, r.id, record=r).args[0] for r in got if r.lane == "x"]
    assert lane_x == ["due first", "sent after"]


def test_rule4_a_waiting_worker_notices_a_delayed_job_coming_due(app: laneway.App, workers: Workers) -> None:
    ran: list[float] = []

    @app.task(name="d")
    def d(due: float) -> None:
        ran.append(time.time() - due)

    workers.start(app, concurrency=1, idle_wait_s=1.0)
    time.sleep(0.1)
    d.options(delay=0.3).enqueue(time.time() + 0.3)
    wait_for(lambda: bool(ran), 5, "delayed job")
    assert 0 <= ran[0] < 0.5 + 1.0


def test_rule4_many_workers_promote_a_due_job_once(app: laneway.App, workers: Workers) -> None:
    ran = []

    @app.task(name="once")
    def once(i: int) -> None:
        ran.append(i)

    for i in range(20):
        once.options(delay=0.2).enqueue(i)
    for _ in range(3):
        workers.start(app, concurrency=4)
    wait_for(lambda: len(ran) == 20, 10, "20 delayed jobs")
    time.sleep(0.3)
    assert sorted(ran) == list(range(20))
