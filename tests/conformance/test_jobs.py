"""SPEC §2 and §3 rules 9-11: producing work, timeouts, unique jobs, results."""

from __future__ import annotations

import asyncio
import time

import pytest

import laneway
from laneway._records import Status
from laneway.backends import Backend

from .conftest import drain


def test_enqueue_returns_a_job_handle_with_status(app: laneway.App) -> None:
    @app.task(name="t")
    def t(x: int, *, y: int) -> int:
        return x + y

    job = t.enqueue(1, y=2)
    assert isinstance(job, laneway.Job) and job.status is Status.QUEUED
    assert job.args == [1] and job.kwargs == {"y": 2}
    loaded = app.get_job(job.id)
    assert loaded is not None and loaded.task_name == "t"
    assert app.get_job("0" * 32) is None


def test_options_returns_a_bound_copy_and_task_kwargs_never_collide(
    backend: Backend, app: laneway.App
) -> None:
    @app.task(name="t")
    def t(queue: str, lane: str) -> str:
        return queue + lane

    bound = t.options(queue="other", lane="l1")
    job = bound.enqueue(queue="q-arg", lane="lane-arg")
    rec = backend.get_job(job.id)
    assert rec is not None and rec.queue == "other" and rec.lane == "l1"
    assert job.kwargs == {"queue": "q-arg", "lane": "lane-arg"}
    assert t.enqueue("a", "b").refresh().queue == "default"


def test_unknown_option_is_a_clear_error(app: laneway.App) -> None:
    @app.task(name="t")
    def t() -> None: ...

    with pytest.raises(laneway.ConfigError, match="unknown option"):
        t.options(lanes="x")


def test_enqueue_many_stores_all_in_order_in_one_call(app: laneway.App) -> None:
    @app.task(name="t")
    def t(i: int) -> None: ...

    jobs = t.options(lane="x").enqueue_many([((i,), {}) for i in range(50)])
    assert len({j.id for j in jobs}) == 50
    seen = []

    @app.task(name="u")
    def u(i: int) -> None: ...

    recs = app.backend.claim(["default"], worker="w", limit=50, batch=50, lease_s=30)
    seen = [laneway.Job(app, r.id, record=r).args[0] for r in recs]
    assert seen == list(range(50))


def test_enqueue_async_works_from_asyncio(app: laneway.App) -> None:
    @app.task(name="t")
    def t(i: int) -> None: ...

    async def produce() -> list[laneway.Job]:
        return list(await asyncio.gather(*(t.enqueue_async(i) for i in range(10))))

    jobs = asyncio.run(produce())
    assert len({j.id for j in jobs}) == 10
    assert drain(app).succeeded == 10


def test_encode_error_names_the_argument_and_writes_nothing(app: laneway.App) -> None:
    @app.task(name="t")
    def t(a: object, b: object = None) -> None: ...

    with pytest.raises(laneway.EncodeError, match="keyword argument 'b'"):
        t.enqueue(1, b=object())
    with pytest.raises(laneway.EncodeError, match="argument 0"):
        t.enqueue_many([((1,), {}), ((object(),), {})])
    assert app.backend.list_jobs() == []


def test_payload_over_the_limit_is_refused_and_exactly_the_limit_round_trips(backend: Backend) -> None:
    app = laneway.App(backend=backend, max_payload_bytes=1000)

    @app.task(name="t")
    def t(s: str) -> str:
        return s

    overhead = len(app.codec.encode_call([""], {}, {}))
    exact = "x" * (1000 - overhead)
    with pytest.raises(laneway.PayloadTooLarge, match="1001 bytes"):
        t.enqueue(exact + "y")
    assert backend.list_jobs() == []
    job = t.enqueue(exact)
    rec = backend.get_job(job.id)
    assert rec is not None and len(rec.payload) == 1000
    drain(app)
    assert job.result(timeout=5) == exact


def test_rule9_sync_handler_past_its_timeout_is_interrupted_and_counts_as_failed(app: laneway.App) -> None:
    @app.task(name="slow", timeout=0.2, max_attempts=1)
    def slow() -> None:
        for _ in range(300):
            time.sleep(0.01)

    job = slow.enqueue()
    start = time.monotonic()
    drain(app)
    assert time.monotonic() - start < 2
    assert job.refresh().status is Status.DEAD
    assert "JobTimeout" in (job.error or "")


def test_rule9_a_sync_handler_that_catches_its_timeout_still_fails_the_attempt(app: laneway.App) -> None:
    caught = []

    @app.task(name="stubborn", timeout=0.2, max_attempts=1)
    def stubborn() -> str:
        try:
            time.sleep(1)
        except Exception as exc:  # a common retry-or-log pattern swallows the interruption
            caught.append(type(exc).__name__)
        return "done anyway"

    job = stubborn.enqueue()
    drain(app)
    assert caught == ["JobTimeout"]
    assert job.refresh().status is Status.DEAD
    assert "caught the interruption" in (job.error or "")


def test_rule9_async_handler_past_its_timeout_is_cancelled(app: laneway.App) -> None:
    cancelled = []

    @app.task(name="aslow", timeout=0.2, max_attempts=1)
    async def aslow() -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    job = aslow.enqueue()
    start = time.monotonic()
    drain(app)
    assert time.monotonic() - start < 2
    assert cancelled == [True]
    assert job.refresh().status is Status.DEAD and "JobTimeout" in (job.error or "")


def test_rule9_timeout_can_be_set_per_call(app: laneway.App) -> None:
    @app.task(name="slow", max_attempts=1)
    def slow() -> None:
        time.sleep(1)

    job = slow.options(timeout=0.1).enqueue()
    drain(app)
    assert job.refresh().status is Status.DEAD


def test_rule10_unique_returns_the_pending_job_instead_of_adding_one(app: laneway.App) -> None:
    @app.task(name="t")
    def t(i: int) -> None: ...

    a = t.options(unique="k").enqueue(1)
    b = t.options(unique="k").enqueue(2)
    c, d = t.options(unique="k2").enqueue_many([((1,), {}), ((2,), {})])
    assert a.id == b.id and c.id == d.id and a.id != c.id
    assert len(app.backend.list_jobs()) == 2
    drain(app)
    e = t.options(unique="k").enqueue(3)
    assert e.id != a.id, "a finished job frees its unique key"


def test_rule10_unique_holds_while_running_and_scheduled(backend: Backend, app: laneway.App) -> None:
    @app.task(name="t")
    def t() -> None: ...

    a = t.options(unique="k", delay=30).enqueue()
    assert t.options(unique="k").enqueue().id == a.id
    b = t.options(unique="r").enqueue()
    backend.claim(["default"], worker="w", limit=5, lease_s=30)
    assert t.options(unique="r").enqueue().id == b.id


def test_rule11_result_is_kept_and_none_is_not_stored(app: laneway.App) -> None:
    @app.task(name="t")
    def t(x: int) -> dict[str, int] | None:
        return {"double": 2 * x} if x else None

    job = t.enqueue(21)
    empty = t.enqueue(0)
    drain(app)
    assert job.result(timeout=5) == {"double": 42}
    assert empty.result(timeout=5) is None
    rec = app.backend.get_job(empty.id)
    assert rec is not None and rec.result is None and rec.status is Status.SUCCEEDED


def test_rule11_result_expires_after_result_ttl(app: laneway.App) -> None:
    @app.task(name="t", result_ttl=0.2)
    def t() -> int:
        return 1

    job = t.enqueue()
    drain(app)
    assert job.result(timeout=5) == 1
    time.sleep(0.3)
    app.backend.sweep()
    assert app.backend.get_job(job.id) is None


def test_result_waits_and_times_out(app: laneway.App) -> None:
    @app.task(name="t")
    def t() -> None: ...

    job = t.enqueue()
    with pytest.raises(TimeoutError):
        job.result(timeout=0.1)


def test_cancel_stops_a_queued_job_and_its_lane_moves_on(app: laneway.App) -> None:
    seen = []

    @app.task(name="t")
    def t(i: int) -> None:
        seen.append(i)

    a = t.options(lane="x").enqueue(0)
    t.options(lane="x").enqueue(1)
    assert a.cancel() is True and a.status is Status.CANCELLED
    drain(app)
    assert seen == [1]
    with pytest.raises(laneway.JobCancelled):
        a.result(timeout=1)
    assert a.cancel() is False


def test_enqueue_of_an_id_already_stored_is_not_stored_again(backend: Backend, app: laneway.App) -> None:
    @app.task(name="t")
    def t(i: int) -> int:
        return i

    first = app._prepare(t, [((1,), {})], t.opts)[0]
    assert backend.enqueue([first])[0].created is True
    drain(app)
    again = backend.enqueue([first])
    assert again[0].id == first.id and again[0].created is False
    rec = backend.get_job(first.id)
    assert rec is not None and rec.status is Status.SUCCEEDED, "the finished job was not overwritten"


def test_listing_refuses_negative_paging_and_takes_a_status_by_its_value(
    backend: Backend, app: laneway.App
) -> None:
    @app.task(name="t")
    def t() -> None: ...

    t.enqueue()
    for bad in ({"limit": -1}, {"offset": -2}, {"limit": 1.5}, {"status": "nonsense"}):
        with pytest.raises(laneway.ConfigError):
            backend.list_jobs(**bad)  # type: ignore[arg-type]
    with pytest.raises(laneway.ConfigError):
        backend.lanes("default", limit=-1)
    assert len(backend.list_jobs(status="queued")) == 1  # type: ignore[arg-type]


def test_a_queue_named_twice_is_claimed_from_once(backend: Backend, app: laneway.App) -> None:
    @app.task(name="t")
    def t(i: int) -> None: ...

    jobs = [t.enqueue(i) for i in range(2)]
    got = backend.claim(["default", "default"], worker="w", limit=4, lease_s=30)  # raised on PostgreSQL
    assert sorted(r.id for r in got) == sorted(j.id for j in jobs)
    assert app.worker("default,default").queues.count("default") == 1
