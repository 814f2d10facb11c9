"""SPEC §3 rules 12-14: periodic jobs, scale, bad input never kills a worker."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest

import laneway
from laneway._app import new_id
from laneway._records import NewJob, OnDead, Status
from laneway.backends import Backend

from .conftest import Workers, drain, wait_for


def test_rule12_periodic_enqueues_one_job_per_tick_however_many_workers(
    app: laneway.App, workers: Workers
) -> None:
    ran: list[float] = []

    @app.periodic(every=timedelta(seconds=1), name="tick")
    def tick() -> None:
        ran.append(time.time())

    for _ in range(3):
        workers.start(app, concurrency=2)
    time.sleep(3.2)
    workers.stop()
    app.run_until_idle()  # a tick enqueued just before the stop runs here
    jobs = app.backend.list_jobs(limit=100)
    assert 2 <= len(jobs) <= 4  # three workers, one job per tick (a tick may be late or missed)
    assert len(ran) == len(jobs)


def test_a_raising_listener_is_logged_and_the_worker_carries_on(
    app: laneway.App, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def on_claim(self, records: object) -> None:
            raise RuntimeError("listener bug")

        def on_finish(self, outcome: object, accepted: bool) -> None:
            raise RuntimeError("listener bug")

    @app.task(name="ok")
    def ok(i: int) -> int:
        return i

    ok.enqueue_many([((i,), {}) for i in range(10)])
    stats = drain(app, concurrency=2, listener=Broken())
    assert stats.succeeded == 10
    assert "listener bug" in caplog.text


def test_a_burst_worker_does_not_stop_while_a_finishing_job_frees_its_lane(
    backend: Backend, app: laneway.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lane's second job becomes claimable only when the first finishes. The ack
    path here never claims, and the fetch loop's claim comes back empty exactly while
    the first job is being finished: the worker must claim again, not end its burst."""
    ran: list[int] = []

    @app.task(name="step")
    def step(i: int) -> None:
        ran.append(i)

    step.options(lane="L").enqueue(0)
    step.options(lane="L").enqueue(1)
    worker = app.worker(concurrency=2, idle_wait_s=0.05)
    claim, finish = backend.claim, backend.finish

    def slow_empty_claim(*args: object, **kw: object) -> list[object]:
        recs = claim(*args, **kw)  # type: ignore[arg-type]
        if not recs:  # let the running job finish before this empty answer arrives
            wait_for(lambda: worker.held == 0, 5, "the running job's ack")
        return recs  # type: ignore[return-value]

    def finish_without_claim(outcomes: object, queues: object, **kw: object) -> tuple[object, list[object]]:
        return finish(outcomes), []  # type: ignore[arg-type]

    monkeypatch.setattr(backend, "claim", slow_empty_claim)
    monkeypatch.setattr(backend, "finish_and_claim", finish_without_claim)
    stats = worker.run(burst=True)
    assert ran == [0, 1]
    assert stats.succeeded == 2


def test_rule12_claim_tick_is_at_most_once_per_tick(backend: Backend, app: laneway.App) -> None:
    @app.task(name="p")
    def p() -> None: ...

    def job() -> NewJob:
        return app._prepare(p, [((), {})], p.opts)[0]

    assert backend.claim_tick("p", 100.0, job()) is True
    assert backend.claim_tick("p", 100.0, job()) is False
    assert backend.claim_tick("p", 50.0, job()) is False
    assert backend.claim_tick("p", 160.0, job()) is True
    assert len(backend.list_jobs()) == 2


def test_rule12_a_periodic_lane_runs_ticks_one_at_a_time_and_each_calls_the_enqueue_hook(
    backend: Backend, app: laneway.App
) -> None:
    hooked: list[str] = []

    @app.periodic(
        every=timedelta(seconds=1), lane="nightly", name="ticked", enqueue=lambda j: hooked.append(j.id)
    )
    def ticked() -> None: ...

    worker = app.worker()
    worker._tick_schedules()
    time.sleep(1.05)  # the next one-second tick
    worker._tick_schedules()
    jobs = sorted(backend.list_jobs(), key=lambda r: r.enqueued_at)
    assert [(r.task, r.lane) for r in jobs] == [("ticked", "nightly")] * 2
    assert sorted(hooked) == sorted(r.id for r in jobs)  # as a producer's enqueue would
    claimed = backend.claim([app.default_queue], worker="w", limit=2, lease_s=30)
    assert [r.id for r in claimed] == [jobs[0].id]  # the later tick waits for the earlier one


def test_rule12_periodic_needs_a_valid_schedule(app: laneway.App) -> None:
    with pytest.raises(laneway.ConfigError, match="cron"):
        app.periodic("not a cron")(lambda: None)
    with pytest.raises(laneway.ConfigError, match="exactly one"):
        app.periodic()(lambda: None)


def test_rule13_blocked_and_retrying_lanes_never_delay_other_lanes(
    backend: Backend, app: laneway.App
) -> None:
    @app.task(name="t", max_attempts=1, on_dead="block")
    def t(i: int) -> None: ...

    for i in range(30):
        t.options(lane=f"blocked{i}").enqueue(i)
        t.options(lane=f"blocked{i}").enqueue(i)
        t.options(lane=f"delayed{i}", delay=60).enqueue(i)
    recs = backend.claim(["default"], worker="w", limit=30, lease_s=30)
    from laneway._records import Outcome, Verdict

    backend.finish([Outcome(r.id, r.token or 0, Verdict.DEAD, error="x") for r in recs])
    fresh = t.options(lane="fresh").enqueue(0)
    got = backend.claim(["default"], worker="w", limit=5, lease_s=30)
    assert [r.id for r in got] == [fresh.id]


def test_rule13_an_idle_lane_leaves_nothing_behind(backend: Backend, app: laneway.App) -> None:
    @app.task(name="t")
    def t() -> None: ...

    for i in range(20):
        t.options(lane=f"l{i}").enqueue()
    assert len(backend.lanes("default")) == 20
    drain(app)
    assert backend.lanes("default") == []
    stats = {s.queue: s for s in backend.stats()}
    assert stats["default"].lanes == 0 and stats["default"].succeeded == 20


def test_rule14_unknown_task_is_recorded_as_a_failure_and_the_worker_goes_on(app: laneway.App) -> None:
    @app.task(name="ok")
    def ok() -> int:
        return 1

    ghost = app.send_task("no.such.task", max_attempts=1)
    good = ok.enqueue()
    drain(app)
    assert ghost.refresh().status is Status.DEAD
    assert "UnknownTask" in (ghost.error or "") and "no.such.task" in (ghost.error or "")
    assert good.result(timeout=5) == 1


def test_rule14_undecodable_payload_goes_dead_with_decode_error(backend: Backend, app: laneway.App) -> None:
    @app.task(name="ok")
    def ok() -> int:
        return 1

    garbage = NewJob(
        id=new_id(),
        task="ok",
        queue="default",
        lane="g",
        priority=2,
        payload=b"\xff\x00garbage",
        max_attempts=5,
        timeout_s=None,
        unique=None,
        result_ttl_s=60,
        on_dead=OnDead.SKIP,
    )
    backend.enqueue([garbage])
    good = ok.options(lane="g").enqueue()
    drain(app)
    rec = backend.get_job(garbage.id)
    assert rec is not None and rec.status is Status.DEAD and rec.attempts == 1
    assert "DecodeError" in (rec.error or "")
    assert good.result(timeout=5) == 1


def test_rule14_handler_raising_system_exit_fails_only_its_job(app: laneway.App, workers: Workers) -> None:
    @app.task(name="quitter", max_attempts=1)
    def quitter() -> None:
        raise SystemExit(3)

    @app.task(name="ok")
    def ok() -> int:
        return 1

    bad = quitter.enqueue()
    w = workers.start(app, concurrency=2)
    wait_for(lambda: bad.refresh().status is Status.DEAD, 5, "quitter dead")
    assert "SystemExit" in (bad.error or "")
    assert ok.enqueue().result(timeout=5) == 1
    assert w.stats.dead == 1


def test_rule14_memory_error_in_a_handler_fails_only_its_job(app: laneway.App) -> None:
    @app.task(name="hog", max_attempts=1)
    def hog() -> None:
        raise MemoryError("simulated")

    job = hog.enqueue()
    drain(app)
    assert job.refresh().status is Status.DEAD and "MemoryError" in (job.error or "")


def test_names_from_users_are_validated(app: laneway.App) -> None:
    @app.task(name="t")
    def t() -> None: ...

    with pytest.raises(laneway.ConfigError, match="queue"):
        t.options(queue="bad queue{}").enqueue()
    with pytest.raises(laneway.ConfigError, match="lane"):
        t.options(lane="").enqueue()
    with pytest.raises(laneway.ConfigError, match="namespace"):
        laneway.App("memory://", namespace="Bad Namespace")
    with pytest.raises(laneway.ConfigError, match="priority"):
        t.options(priority=999).enqueue()
    assert app.backend.list_jobs() == []


def test_os_environ_url_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANEWAY_URL", "memory://")
    assert laneway.App().url == "memory://"
    monkeypatch.delenv("LANEWAY_URL")
    assert laneway.App().url == "sqlite:///laneway.db"
    assert os.environ.get("LANEWAY_URL") is None


def test_the_latest_run_at_and_longest_delay_accepted_are_stored_and_listed(app: laneway.App) -> None:
    from laneway._constants import MAX_EPOCH_S, MAX_SECONDS

    @app.task(name="far")
    def far() -> None: ...

    jobs = [far.options(run_at=MAX_EPOCH_S).enqueue(), far.options(delay=MAX_SECONDS).enqueue()]
    for job in jobs:
        got = app.get_job(job.id)
        assert got is not None and got.status is laneway.Status.SCHEDULED
    assert {j.id for j in app.backend.list_jobs()} == {j.id for j in jobs}
    assert app.backend.claim(["default"], worker="w", limit=2, lease_s=30) == []
