"""SPEC §3 rule 8: retries with backoff, dead letters, on_dead policies."""

from __future__ import annotations

import time

import pytest

import laneway
from laneway._records import Status
from laneway.backends import Backend

from .conftest import Trace, Workers, drain, wait_for


def test_rule8_exception_retries_until_max_attempts_then_goes_dead(app: laneway.App) -> None:
    calls = []

    @app.task(name="boom", max_attempts=3)
    def boom() -> None:
        calls.append(1)
        raise ValueError("nope")

    job = boom.enqueue()
    deadline = time.monotonic() + 10
    while job.refresh().status is not Status.DEAD and time.monotonic() < deadline:
        drain(app)
        time.sleep(0.05)
    assert len(calls) == 3
    rec = job.refresh().record
    assert rec is not None and rec.attempts == 3
    assert rec.error and "ValueError: nope" in rec.error
    assert rec.traceback and "raise ValueError" in rec.traceback
    with pytest.raises(laneway.JobFailed, match="nope"):
        job.result(timeout=1)


def test_rule8_retry_waits_for_its_backoff(app: laneway.App) -> None:
    @app.task(name="later", max_attempts=2)
    def later() -> None:
        raise laneway.Retry(delay=0.5)

    job = later.enqueue()
    drain(app)
    rec = job.refresh().record
    assert rec is not None and rec.status is Status.RETRYING
    assert rec.run_at - app.backend.now() > 0.2


@pytest.mark.parametrize("delay", [float("inf"), float("nan"), 1e13])
def test_rule8_a_retry_delay_out_of_range_falls_back_to_the_backoff_and_the_job_stays_listable(
    app: laneway.App, delay: float
) -> None:
    @app.task(name="odd", max_attempts=2, backoff_s=30, backoff_max_s=30)
    def odd() -> None:
        raise laneway.Retry(delay=delay)

    job = odd.enqueue()
    drain(app)
    rec = job.refresh().record
    assert rec is not None and rec.status is Status.RETRYING
    assert 0 < rec.run_at - app.backend.now() <= 31  # the task's backoff, not the delay asked
    assert [j.id for j in app.backend.list_jobs()] == [job.id]


def test_rule8_fail_goes_dead_at_once(app: laneway.App) -> None:
    @app.task(name="fatal", max_attempts=5)
    def fatal() -> None:
        raise laneway.Fail("bad input")

    job = fatal.enqueue()
    drain(app)
    assert job.refresh().status is Status.DEAD and job.attempts == 1
    assert "bad input" in (job.error or "")


def test_rule8_retrying_head_blocks_only_its_own_lane(
    app: laneway.App, trace: Trace, workers: Workers
) -> None:
    @app.task(name="slowfail", max_attempts=2)
    def slowfail(lane: str, seq: int) -> None:
        trace.add("start", lane, seq)
        if lane == "stuck" and seq == 0 and len([1 for ln, s in trace.of("start") if ln == "stuck"]) == 1:
            raise laneway.Retry(delay=1.0)

    slowfail.options(lane="stuck").enqueue("stuck", 0)
    slowfail.options(lane="stuck").enqueue("stuck", 1)
    for i in range(5):
        slowfail.options(lane="free").enqueue("free", i)
    workers.start(app, concurrency=2)
    wait_for(lambda: len([1 for ln, _ in trace.of("start") if ln == "free"]) == 5, 5, "free lane")
    stuck = [s for ln, s in trace.of("start") if ln == "stuck"]
    assert stuck == [0], "stuck lane's second job must wait for the retry of its head"
    wait_for(lambda: len([1 for ln, _ in trace.of("start") if ln == "stuck"]) == 3, 5, "stuck lane")
    assert [s for ln, s in trace.of("start") if ln == "stuck"] == [0, 0, 1]


def test_rule8_dead_job_with_on_dead_skip_lets_its_lane_move_on(app: laneway.App) -> None:
    seen = []

    @app.task(name="t", max_attempts=1)
    def t(i: int) -> None:
        seen.append(i)
        if i == 0:
            raise RuntimeError("x")

    first = t.options(lane="x").enqueue(0)
    t.options(lane="x").enqueue(1)
    drain(app)
    assert seen == [0, 1]
    assert first.refresh().status is Status.DEAD


def test_rule8_dead_job_with_on_dead_block_blocks_its_lane_until_retried(app: laneway.App) -> None:
    seen = []
    fail = [True]

    @app.task(name="t", max_attempts=1, on_dead="block")
    def t(i: int) -> None:
        seen.append(i)
        if i == 0 and fail[0]:
            raise RuntimeError("x")

    first = t.options(lane="x").enqueue(0)
    t.options(lane="x").enqueue(1)
    t.options(lane="y").enqueue(9)
    drain(app)
    assert sorted(seen) == [0, 9], "lane x is blocked behind its dead head; lane y is not"
    lanes = {info.lane: info for info in app.backend.lanes("default")}
    assert lanes["x"].blocked and lanes["x"].head_id == first.id
    fail[0] = False
    assert app.backend.retry(first.id)
    drain(app)
    assert seen[2:] == [0, 1]


def test_rule8_purging_a_blocking_dead_job_unblocks_its_lane(app: laneway.App) -> None:
    seen = []

    @app.task(name="t", max_attempts=1, on_dead="block")
    def t(i: int) -> None:
        seen.append(i)
        if i == 0:
            raise RuntimeError("x")

    t.options(lane="x").enqueue(0)
    t.options(lane="x").enqueue(1)
    drain(app)
    assert seen == [0]
    assert app.backend.purge(status=Status.DEAD) == 1
    drain(app)
    assert seen == [0, 1]


def test_rule8_on_dead_can_be_set_per_queue(app: laneway.App) -> None:
    app.configure_queue("payments", on_dead="block")
    seen = []

    @app.task(name="pay", queue="payments", max_attempts=1)
    def pay(i: int) -> None:
        seen.append(i)
        raise RuntimeError("x")

    pay.options(lane="acct").enqueue(0)
    pay.options(lane="acct").enqueue(1)
    drain(app, ["payments"])
    assert seen == [0]


def test_rule8_retrying_a_dead_job_puts_it_back_at_the_head_of_its_lane(
    backend: Backend, app: laneway.App
) -> None:
    seen = []
    fail = [True]

    @app.task(name="t", max_attempts=1)
    def t(i: int) -> None:
        seen.append(i)
        if i == 0 and fail[0]:
            raise RuntimeError("x")

    dead = t.options(lane="x").enqueue(0)
    drain(app)
    assert dead.refresh().status is Status.DEAD
    t.options(lane="x").enqueue(1)
    t.options(lane="x").enqueue(2)
    fail[0] = False
    assert backend.retry(dead.id)
    assert dead.refresh().status is Status.QUEUED and dead.attempts == 0
    drain(app, concurrency=1)
    assert seen == [0, 0, 1, 2]


def test_rule8_dead_jobs_can_be_listed_and_purged(app: laneway.App) -> None:
    @app.task(name="t", max_attempts=1)
    def t() -> None:
        raise RuntimeError("x")

    t.enqueue()
    t.enqueue()
    drain(app)
    dead = app.backend.list_jobs(status=Status.DEAD)
    assert len(dead) == 2
    assert app.backend.purge(status=Status.DEAD) == 2
    assert app.backend.list_jobs(status=Status.DEAD) == []


def test_rule8_a_retry_refused_for_a_taken_unique_key_leaves_no_lane_behind(
    backend: Backend, app: laneway.App
) -> None:
    if type(backend).__name__ == "RedisClusterBackend":
        pytest.skip("unique keys hold per shard on Redis Cluster (docs/backends/redis.md, Limits)")

    @app.task(name="t")
    def t(i: int) -> None: ...

    old = t.options(lane="gone", unique="k").enqueue(1)
    assert old.cancel()
    t.options(unique="k").enqueue(2)  # the key is taken again, by a job without a lane
    assert backend.retry(old.id) is False
    assert [s.lanes for s in backend.stats()] == [0]  # PostgreSQL kept an empty "gone" lane
    assert backend.lanes("default", limit=1) == []


def test_rule14_error_text_no_backend_can_store_is_escaped_and_the_batch_is_finished(
    app: laneway.App,
) -> None:
    @app.task(name="odd", max_attempts=1)
    def odd(i: int) -> None:
        if i == 0:
            raise OSError("no file /data/caf\udce9.txt\x00")  # os.fsdecode of a Latin-1 name, a C string

    jobs = odd.enqueue_many([((i,), {}) for i in range(4)])
    drain(app, concurrency=4)
    statuses = [j.refresh().status for j in jobs]
    assert statuses == [Status.DEAD] + [Status.SUCCEEDED] * 3
    assert "caf\\udce9.txt\\x00" in (jobs[0].error or "")
