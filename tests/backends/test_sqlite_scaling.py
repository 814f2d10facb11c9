"""What the SQLite backend costs: claims that do not grow with the data, a cheap idle wait
that still wakes within milliseconds, and many threads (and a forked child) on one file."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from laneway._records import NewJob, OnDead, Outcome, Priority, Status, Verdict
from laneway.backends.sqlite import SQLiteBackend
from laneway.backends.sqlite import _ops as ops
from laneway.backends.sqlite._sql import _TEMPLATES, Sql


def new_job(
    *, lane: str | None = None, queue: str = "default", delay_s: float = 0.0, priority: int = Priority.NORMAL,
    on_dead: OnDead = OnDead.SKIP,
) -> NewJob:  # fmt: skip
    return NewJob(
        id=uuid.uuid4().hex, task="t", queue=queue, lane=lane, priority=priority, payload=b"{}",
        max_attempts=5, timeout_s=None, unique=None, result_ttl_s=60.0, on_dead=on_dead, delay_s=delay_s,
    )  # fmt: skip


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "laneway.db"


@pytest.fixture
def backend(db_path: Path) -> Iterator[SQLiteBackend]:
    b = SQLiteBackend(f"sqlite:///{db_path}?synchronous=NORMAL", namespace="ns")
    yield b
    b.close()


def claim_and_finish_steps(path: Path) -> int:
    """SQLite VM instructions one claim of one job plus its ack execute (rolled back after,
    so the state is measured as it is)."""
    sql = Sql("ns")
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.set_progress_handler(count, 1)
        now = time.time()
        got = ops.claim(conn, sql, now, ["default"], worker="w", limit=1, batch=1, max_lanes=None, lease_s=30)
        assert len(got) == 1 and got[0].priority == Priority.HIGH
        assert ops.finish(conn, sql, now, [Outcome(got[0].id, got[0].token or 0, Verdict.SUCCEEDED)]) == [
            True
        ]
        conn.set_progress_handler(None, 1)
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    return steps


def test_claim_cost_does_not_grow_with_lanes_depth_or_waiting_and_blocked_jobs(
    backend: SQLiteBackend, db_path: Path
) -> None:
    """Given one high-priority job, claiming and acking it executes the same number of SQLite
    VM instructions whether or not the file also holds 5,000 ready lanes, a lane 5,000 deep,
    3,000 delayed jobs, 1,000 retrying heads, 1,000 blocked lanes and 500 held lanes (a scan
    anywhere would multiply the count)."""
    backend.enqueue([new_job(lane="target", priority=Priority.HIGH)])
    small = claim_and_finish_steps(db_path)

    low = Priority.LOW
    backend.enqueue([new_job(lane=f"ready{i}", priority=low) for i in range(5000)])
    backend.enqueue([new_job(lane="deep", priority=low) for _ in range(5000)])
    backend.enqueue([new_job(lane=f"later{i}", delay_s=3600, priority=low) for i in range(3000)])
    for kind, n, verdict in (
        ("retry", 1000, Verdict.RETRY),
        ("block", 1000, Verdict.DEAD),
        ("held", 500, None),
    ):
        backend.enqueue([new_job(lane=f"{kind}{i}", queue="side", on_dead=OnDead.BLOCK) for i in range(n)])
        backend.enqueue([new_job(lane=f"{kind}{i}", queue="side") for i in range(n)])
        heads = backend.claim(["side"], worker="w", limit=n, lease_s=3600)
        if verdict is not None:
            backend.finish([Outcome(r.id, r.token or 0, verdict, delay_s=3600) for r in heads])
    big = claim_and_finish_steps(db_path)
    assert big <= small * 1.1 + 20, f"claim+ack took {big} VM steps with a big file, {small} with a small one"


def prepare(conn: sqlite3.Connection, statement: str) -> None:
    """Prepare ``statement`` (as EXPLAIN QUERY PLAN) with as many NULLs as it has parameters."""
    for count in range(32):
        try:
            conn.execute(f"EXPLAIN QUERY PLAN {statement}", [None] * count)
            return
        except sqlite3.ProgrammingError as exc:
            if "bindings" not in str(exc):
                raise
    raise AssertionError(f"could not prepare {statement}")


def test_every_hot_statement_is_served_by_its_index_without_a_sort(backend: SQLiteBackend) -> None:
    """``INDEXED BY`` makes SQLite refuse to prepare a statement its index cannot serve, so
    preparing them all proves the plans; the ready-lane order must come from the index."""
    sql = Sql("ns")
    with backend._db.connection() as conn:
        for name in _TEMPLATES:
            prepare(conn, getattr(sql, name))
        plan = " / ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql.ready_lanes}", ("q", 5)))
    assert "ns_lanes_ready" in plan and "TEMP B-TREE" not in plan, plan


# --- wait -------------------------------------------------------------------------------------


def waited(backend: SQLiteBackend, queues: list[str], timeout_s: float) -> threading.Thread:
    thread = threading.Thread(target=backend.wait, args=(queues, timeout_s))
    thread.start()
    return thread


def test_wait_wakes_within_milliseconds_when_another_process_enqueues(
    backend: SQLiteBackend, db_path: Path
) -> None:
    producer = SQLiteBackend(
        f"sqlite:///{db_path}", namespace="ns"
    )  # its own connections, as another process
    latencies = []
    try:
        for _ in range(5):
            thread = waited(backend, ["default"], 5.0)
            time.sleep(0.05)
            start = time.monotonic()
            producer.enqueue([new_job()])
            thread.join(5)
            latencies.append(time.monotonic() - start)
            assert backend.claim(["default"], worker="w", limit=1, lease_s=30)
    finally:
        producer.close()
    assert sorted(latencies)[2] < 0.05, latencies  # the median; a loaded CI box may be slow once


def test_wait_ignores_commits_that_make_nothing_ready_on_its_queues(backend: SQLiteBackend) -> None:
    start = time.monotonic()
    thread = waited(backend, ["mine"], 0.4)
    for i in range(20):
        backend.enqueue([new_job(queue="other")])
        backend.put_meta(f"k{i}", b"v")
        time.sleep(0.01)
    thread.join(5)
    assert time.monotonic() - start >= 0.39


def test_wait_returns_when_the_earliest_delayed_job_comes_due(backend: SQLiteBackend) -> None:
    backend.enqueue([new_job(delay_s=0.3)])
    start = time.monotonic()
    backend.wait(["default"], 5.0)
    assert 0.25 <= time.monotonic() - start < 0.4
    assert len(backend.claim(["default"], worker="w", limit=1, lease_s=30)) == 1


def test_idle_wait_burns_little_cpu(backend: SQLiteBackend) -> None:
    cpu, wall = time.thread_time(), time.monotonic()
    backend.wait(["default"], 1.0)
    assert time.monotonic() - wall >= 0.99
    assert time.thread_time() - cpu < 0.05


# --- threads and processes ------------------------------------------------------------------------


def test_many_threads_share_one_backend_and_every_lane_stays_in_order(backend: SQLiteBackend) -> None:
    """8 producer/worker threads on one backend: every job runs once, each lane in send order."""
    order: dict[str, list[str]] = {}
    sent: dict[str, list[str]] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def produce_and_work(n: int) -> None:
        try:
            for batch in range(5):
                jobs = [new_job(lane=f"lane{(n + i) % 6}") for i in range(20)]
                with lock:  # send order per lane = the order enqueue calls commit
                    backend.enqueue(jobs)
                    for job in jobs:
                        sent.setdefault(job.lane or "", []).append(job.id)
                work(n, batch)
        except BaseException as exc:
            errors.append(exc)

    def work(n: int, _batch: int) -> None:
        for _ in range(40):
            got = backend.claim(["default"], worker=f"w{n}", limit=3, batch=2, lease_s=30)
            with lock:
                for rec in got:
                    order.setdefault(rec.lane or "", []).append(rec.id)
            backend.finish([Outcome(r.id, r.token or 0, Verdict.SUCCEEDED) for r in got])

    threads = [threading.Thread(target=produce_and_work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    while got := backend.claim(["default"], worker="last", limit=50, batch=50, lease_s=30):
        for rec in got:
            order.setdefault(rec.lane or "", []).append(rec.id)
        backend.finish([Outcome(r.id, r.token or 0, Verdict.SUCCEEDED) for r in got])
    assert order == sent
    assert [s.succeeded for s in backend.stats()] == [800]
    assert len(backend._db._all) <= 9, "a connection per concurrent user, not per call"


def test_concurrent_writers_share_one_commit_and_a_failing_one_fails_alone(backend: SQLiteBackend) -> None:
    """Group commit: writes queued while the process's write lock is busy run in one
    transaction, each in its own savepoint, so one body's error undoes only its writes."""
    db = backend._db
    db.write(lambda conn, _now: conn.execute("CREATE TABLE t (i INTEGER)"))
    commits: list[str] = []
    for conn in db._all:
        conn.set_trace_callback(lambda stmt: commits.append(stmt) if stmt == "COMMIT" else None)
    outcomes: dict[int, object] = {}

    def body(i: int) -> object:
        def run(conn: sqlite3.Connection, _now: float) -> int:
            conn.execute("INSERT INTO t VALUES (?)", (i,))
            if i == 3:
                raise ValueError("this one fails")
            return i

        return run

    def writer(i: int) -> None:
        try:
            outcomes[i] = db.write(body(i))  # type: ignore[arg-type]
        except ValueError as exc:
            outcomes[i] = exc

    with db.write_lock():  # hold the lock so that all six queue up
        threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        time.sleep(0.2)
    for t in threads:
        t.join(10)
    assert isinstance(outcomes.pop(3), ValueError)
    assert outcomes == {0: 0, 1: 1, 2: 2, 4: 4, 5: 5}
    with db.connection() as conn:
        assert sorted(row[0] for row in conn.execute("SELECT i FROM t")) == [0, 1, 2, 4, 5]
    assert len(commits) == 1


def test_finish_and_claim_acks_and_refills_in_one_commit(backend: SQLiteBackend) -> None:
    """The worker's ack-and-refill is one transaction: the lane its ack frees is claimed
    again in the same call, with one commit (one disk sync)."""
    first, second = new_job(lane="x"), new_job(lane="x")
    backend.enqueue([first, second])
    (running,) = backend.claim(["default"], worker="w", limit=5, lease_s=30)
    commits: list[str] = []
    for conn in backend._db._all:
        conn.set_trace_callback(lambda stmt: commits.append(stmt) if stmt == "COMMIT" else None)
    accepted, claimed = backend.finish_and_claim(
        [Outcome(running.id, running.token or 0, Verdict.SUCCEEDED)],
        ["default"],
        worker="w",
        limit=1,
        lease_s=30,
    )
    assert accepted == [True] and [r.id for r in claimed] == [second.id]
    assert len(commits) == 1


def test_finish_and_claim_keeps_the_acks_when_its_claim_fails(
    backend: SQLiteBackend, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    job = new_job()
    backend.enqueue([job, new_job()])
    (running,) = backend.claim(["default"], worker="w", limit=1, lease_s=30)

    def broken(*_args: object, **_kw: object) -> None:
        raise RuntimeError("claim broke")

    monkeypatch.setattr(ops, "claim", broken)
    accepted, claimed = backend.finish_and_claim(
        [Outcome(running.id, running.token or 0, Verdict.SUCCEEDED)],
        ["default"],
        worker="w",
        limit=1,
        lease_s=30,
    )
    assert accepted == [True] and claimed == []
    rec = backend.get_job(job.id)
    assert rec is not None and rec.status is Status.SUCCEEDED
    assert "claim broke" in caplog.text


FORK_SCRIPT = """
import os, sys, uuid
from laneway._records import NewJob, OnDead, Outcome, Verdict
from laneway.backends.sqlite import SQLiteBackend

b = SQLiteBackend(sys.argv[1], namespace="ns")
job = NewJob(id=uuid.uuid4().hex, task="t", queue="default", lane=None, priority=2, payload=b"{}",
             max_attempts=5, timeout_s=None, unique=None, result_ttl_s=60.0, on_dead=OnDead.SKIP)
b.enqueue([job])                       # the parent now has pooled connections
pid = os.fork()
if pid == 0:                           # the child must open its own
    got = b.claim(["default"], worker="child", limit=1, lease_s=30)
    ok = b.finish([Outcome(got[0].id, got[0].token or 0, Verdict.SUCCEEDED)]) == [True]
    os._exit(0 if ok else 2)
_, status = os.waitpid(pid, 0)
rec = b.get_job(job.id)
b.close()
sys.exit(os.waitstatus_to_exitcode(status) or (0 if rec.status.value == "succeeded" and rec.worker == "child" else 3))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_its_own_connections_and_the_parent_keeps_working(db_path: Path) -> None:
    """In a fresh interpreter (fork is only safe without other threads): a backend used
    before ``fork`` works in the child, and the parent sees the child's ack."""
    done = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT, f"sqlite:///{db_path}"], timeout=60, check=False
    )
    assert done.returncode == 0
