"""SPEC §3 rules 1, 2, 3 and 5: lane order, lane holding, priority, pull without backlog."""

from __future__ import annotations

import random
import threading
import time

import laneway
from laneway.backends import Backend

from .conftest import Trace, Workers, drain, wait_for


def test_rule1_lane_order_holds_across_several_workers(
    app: laneway.App, trace: Trace, workers: Workers
) -> None:
    @app.task(name="step")
    def step(lane: int, seq: int) -> None:
        trace.add("start", lane, seq)
        time.sleep(random.uniform(0, 0.002))
        trace.add("end", lane, seq)

    for seq in range(20):
        for lane in range(8):
            step.options(lane=f"L{lane}").enqueue(lane, seq)
    for _ in range(3):
        workers.start(app, concurrency=4)
    wait_for(lambda: len(trace.of("end")) == 160, 30, "160 jobs")
    trace.assert_lanes_serial()
    for lane in range(8):
        assert [s for ln, s in trace.of("start") if ln == lane] == list(range(20))


def test_rule1_lane_order_survives_retries(app: laneway.App, trace: Trace, workers: Workers) -> None:
    failed: set[tuple[int, int]] = set()

    @app.task(name="flaky", max_attempts=5)
    def flaky(lane: int, seq: int) -> None:
        trace.add("start", lane, seq)
        try:
            if seq % 3 == 1 and (lane, seq) not in failed:
                failed.add((lane, seq))
                raise RuntimeError("first attempt fails")
        finally:
            trace.add("end", lane, seq)

    for seq in range(9):
        for lane in range(4):
            flaky.options(lane=f"L{lane}").enqueue(lane, seq)
    workers.start(app, concurrency=4)
    workers.start(app, concurrency=4)
    wait_for(lambda: len(trace.of("end")) == 36 + 12, 30, "all jobs and their retries")
    trace.assert_lanes_serial()
    for lane in range(4):
        starts = [s for ln, s in trace.of("start") if ln == lane]
        expected = [s for seq in range(9) for s in ([seq, seq] if seq % 3 == 1 else [seq])]
        assert starts == expected


def test_rule1_jobs_without_lane_run_in_parallel(app: laneway.App, workers: Workers) -> None:
    inside = []
    peak = []
    lock = threading.Lock()

    @app.task(name="solo")
    def solo() -> None:
        with lock:
            inside.append(1)
            peak.append(len(inside))
        time.sleep(0.1)
        with lock:
            inside.pop()

    for _ in range(4):
        solo.enqueue()
    w = workers.start(app, concurrency=4)
    wait_for(lambda: w.stats.succeeded == 4, 10, "4 jobs")
    assert max(peak) >= 2


def test_rule2_a_claim_takes_up_to_batch_consecutive_jobs_of_one_lane(
    backend: Backend, app: laneway.App
) -> None:
    @app.task(name="b")
    def b(i: int) -> None: ...

    for i in range(5):
        b.options(lane="x").enqueue(i)
    recs = backend.claim(["default"], worker="w", limit=10, batch=3, lease_s=30)
    assert [laneway.Job(app, r.id, record=r).args for r in recs] == [[0], [1], [2]]
    assert len({r.token for r in recs}) == 1
    # the lane is held: nothing more from it until every claimed job is finished
    assert backend.claim(["default"], worker="w2", limit=10, batch=3, lease_s=30) == []


def test_rule2_lane_is_held_until_everything_its_lease_took_is_finished(
    backend: Backend, app: laneway.App
) -> None:
    from laneway._records import Outcome, Verdict

    @app.task(name="b")
    def b(i: int) -> None: ...

    for i in range(4):
        b.options(lane="x").enqueue(i)
    first = backend.claim(["default"], worker="w", limit=2, batch=2, lease_s=30)
    assert backend.finish([Outcome(first[0].id, first[0].token or 0, Verdict.SUCCEEDED)]) == [True]
    assert backend.claim(["default"], worker="w2", limit=2, batch=2, lease_s=30) == []
    assert backend.finish([Outcome(first[1].id, first[1].token or 0, Verdict.SUCCEEDED)]) == [True]
    nxt = backend.claim(["default"], worker="w2", limit=2, batch=2, lease_s=30)
    assert [laneway.Job(app, r.id, record=r).args for r in nxt] == [[2], [3]]


def test_rule3_higher_priority_lane_heads_are_claimed_first(backend: Backend, app: laneway.App) -> None:
    @app.task(name="p")
    def p(tag: str) -> None: ...

    p.options(lane="a", priority=laneway.LOW).enqueue("low")
    p.options(lane="b", priority=laneway.BULK).enqueue("bulk")
    p.options(lane="c", priority=laneway.HIGH).enqueue("high")
    p.options(priority=laneway.NORMAL).enqueue("normal")
    order = []
    while recs := backend.claim(["default"], worker="w", limit=1, lease_s=30):
        order.append(laneway.Job(app, recs[0].id, record=recs[0]).args[0])
    assert order == ["high", "normal", "low", "bulk"]


def test_rule3_within_a_priority_older_lanes_come_first(backend: Backend, app: laneway.App) -> None:
    @app.task(name="p")
    def p(tag: int) -> None: ...

    for i in range(10):
        p.options(lane=f"l{i}").enqueue(i)
    got = [
        laneway.Job(app, r.id, record=r).args[0]
        for r in backend.claim(["default"], worker="w", limit=10, lease_s=30)
    ]
    assert got == list(range(10))


def test_rule3_within_a_lane_send_order_beats_priority(backend: Backend, app: laneway.App) -> None:
    @app.task(name="p")
    def p(tag: str) -> None: ...

    p.options(lane="a", priority=laneway.BULK).enqueue("first")
    p.options(lane="a", priority=laneway.HIGH).enqueue("second")
    p.options(lane="b", priority=laneway.NORMAL).enqueue("other")
    recs = backend.claim(["default"], worker="w", limit=3, lease_s=30)
    # lane a's priority is its head's (BULK), so lane b comes first; and "second"
    # never overtakes "first"
    assert [laneway.Job(app, r.id, record=r).args[0] for r in recs] == ["other", "first"]


def test_rule3_queues_are_claimed_in_the_order_the_worker_lists_them(
    backend: Backend, app: laneway.App
) -> None:
    @app.task(name="q")
    def q(tag: str) -> None: ...

    q.options(queue="default", priority=laneway.HIGH).enqueue("default")
    q.options(queue="critical", priority=laneway.BULK).enqueue("critical")
    recs = backend.claim(["critical", "default"], worker="w", limit=1, lease_s=30)
    assert laneway.Job(app, recs[0].id, record=recs[0]).args == ["critical"]


def test_rule5_worker_never_holds_more_jobs_than_its_slots(app: laneway.App, workers: Workers) -> None:
    @app.task(name="slow")
    def slow() -> None:
        time.sleep(0.05)

    slow.enqueue_many([((), {})] * 60)
    w = workers.start(app, concurrency=3)
    peak = 0
    deadline = time.monotonic() + 20
    while w.stats.succeeded < 60 and time.monotonic() < deadline:
        running = [r for r in app.backend.list_jobs(status=laneway.Status.RUNNING, limit=1000)]
        peak = max(peak, len(running))
        assert w.held <= 3
        time.sleep(0.01)
    assert w.stats.succeeded == 60
    assert 1 <= peak <= 3


def test_rule5_a_late_worker_gets_work_on_its_first_claim(app: laneway.App, workers: Workers) -> None:
    """The rz scenario at test size: two busy workers hold no private backlog."""

    @app.task(name="slow")
    def slow(i: int) -> None:
        time.sleep(0.05)

    slow.enqueue_many([((i,), {}) for i in range(200)])
    first = [workers.start(app, concurrency=2, worker_id=f"early{i}") for i in range(2)]
    wait_for(lambda: sum(w.stats.claimed for w in first) >= 8, 10, "early workers busy")
    late = workers.start(app, concurrency=2, worker_id="late")
    wait_for(lambda: late.stats.claimed > 0, 2, "late worker's first claim")
    assert late.stats.claimed > 0
    for w in first:
        assert w.held <= 2


def test_rule5_burst_worker_returns_when_nothing_is_due(app: laneway.App) -> None:
    @app.task(name="n")
    def n() -> None: ...

    n.enqueue_many([((), {})] * 5)
    n.options(delay=60).enqueue()
    stats = drain(app, concurrency=2)
    assert stats.succeeded == 5


def test_rule2_a_claim_of_thousands_of_one_lanes_jobs_is_leased_and_finished_whole(
    app: laneway.App, backend: Backend
) -> None:
    from laneway._records import Outcome, Verdict

    @app.task(name="deep", queue="messages")
    def deep(i: int) -> None: ...

    n = 5_000  # Redis: more values than Lua's unpack takes in one call
    deep.options(lane="deep").enqueue_many([((i,), {}) for i in range(n)])
    recs = backend.claim(["messages"], worker="w", limit=n, batch=n, lease_s=30)
    assert len(recs) == n and len({r.token for r in recs}) == 1
    assert backend.extend([recs[0].token], 30) == [True]
    assert backend.finish([Outcome(r.id, r.token, Verdict.SUCCEEDED) for r in recs]) == [True] * n
    assert backend.claim(["messages"], worker="w", limit=1, lease_s=30) == []
    stats = {s.queue: s for s in backend.stats()}
    assert stats["messages"].running == 0 and stats["messages"].queued == 0
