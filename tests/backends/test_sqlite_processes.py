"""Worker and producer PROCESSES sharing one SQLite file, with and without ``kill -9``.

RELIABILITY.md faults 1 and 3 on SQLite: every lane runs in send order, nothing is lost,
duplicates happen only for work in flight on a killed worker, and an acknowledged
enqueue survives its producer being killed in the middle of the next transaction.

This module is also the children's entry point::

    python -m tests.backends.test_sqlite_processes worker URL NS HISTORY CONCURRENCY LEASE_S WORK_MS BURST
    python -m tests.backends.test_sqlite_processes zygote URL NS ACKS_DIR
    python -m tests.backends.test_sqlite_processes unique URL NS TIMES

How acks are timed: a worker's ACK line carries the time taken just before the outcome
is sent (``laneway._observe.HistoryListener``): the lane is released later, so a next
job of the lane never starts earlier in a correct run. A ``kill -9`` between the commit
and the line would lose the ACK (a false "lost"), so an accepted job with no ACK line is
rebuilt from the file (worker = the job's ``worker`` column, token and earliest time =
that worker's last recorded claim of the job, time = the job's ``finished_at``, which
SQLite's clock gives to the millisecond), and the test reports how many were rebuilt.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import laneway
from laneway._codec import decode_call
from laneway._history import Event, EventKind, HistoryRecorder, Report, check_history, load_history
from laneway._observe import HistoryListener
from laneway._records import JobRecord
from laneway.backends.sqlite import SQLiteBackend

ROOT = Path(__file__).resolve().parents[2]
SOAK = os.environ.get("LANEWAY_SOAK") == "1"
QUEUE = "q"
TASK = "step"


# --- the children --------------------------------------------------------------------------------


def _lane_seq(rec: JobRecord) -> tuple[str | None, int]:
    return rec.lane, int(decode_call(rec.payload).args[1])


def run_worker(
    url: str, ns: str, history: str, concurrency: int, lease_s: float, work_ms: float, burst: bool
) -> None:
    app = laneway.App(url, namespace=ns, lease_s=lease_s)
    worker = app.worker(QUEUE, concurrency=concurrency, heartbeat_s=lease_s / 4, sweep_s=0.25,
                        idle_wait_s=0.2, grace_s=2)  # fmt: skip
    recorder = HistoryRecorder(history, worker=worker.id)
    worker.listeners.append(HistoryListener(recorder, _lane_seq, time.time))

    @app.task(name=TASK, queue=QUEUE, max_attempts=1000)
    def step(lane: str, seq: int) -> None:
        job = laneway.current_job()
        assert job is not None and job.record is not None
        recorder.record(
            EventKind.START, job.id, lane, seq, token=job.record.token, attempt=job.record.attempts
        )
        if work_ms:
            time.sleep(random.uniform(0, work_ms) / 1000)
        recorder.record(EventKind.EFFECT, job.id, lane, seq, token=job.record.token)

    worker.run(burst=burst)
    recorder.close()
    app.close()


def run_producer(url: str, ns: str, seed: int, acks: str) -> None:
    """Enqueue batches forever, appending each id to ``acks`` only after its batch committed
    (one unbuffered write per batch: a kill tears at most the last line).

    Even seeds use ``enqueue_many`` (the backend's own short transaction); odd seeds open
    ``backend.transaction()`` and enqueue the batch one job at a time with
    ``connection=``, so they spend most of their life inside an open transaction.
    """
    rng = random.Random(seed)
    backend = SQLiteBackend(url, namespace=ns)
    app = laneway.App(backend=backend)

    @app.task(name=TASK, queue=QUEUE)
    def step(lane: str, seq: int, pad: str) -> None: ...

    fd = os.open(acks, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    n = 0
    while True:
        calls: list[tuple[tuple[str, int, str], dict[str, object]]] = [
            ((f"p{seed}-{rng.randrange(20)}", n + i, "x" * rng.randrange(400)), {}) for i in range(25)
        ]
        opts: dict[str, object] = {"lane": calls[0][0][0]}
        if rng.random() < 0.2:
            opts["delay"] = 3600
        if rng.random() < 0.2:
            opts["unique"] = f"u{seed}-{rng.randrange(5)}"
        bound = step.options(**opts)
        if seed % 2 == 0:
            jobs = bound.enqueue_many(calls)
        else:
            with backend.transaction() as conn:
                jobs = [bound.enqueue(*args, connection=conn) for args, _ in calls]
        n += len(calls)
        os.write(fd, "".join(f"{job.id}\n" for job in jobs).encode())


def run_zygote(url: str, ns: str, acks_dir: str) -> None:
    """Fork producers on request, so 50 of them cost 50 forks, not 50 interpreter starts.

    Commands on stdin: ``start SEED`` (answers the pid once the producer is running) and
    ``kill PID`` (SIGKILL, reap, answer ``killed PID``).
    """
    for line in sys.stdin:
        command, arg = line.split()
        if command == "start":
            pid = os.fork()
            if pid == 0:
                try:
                    run_producer(url, ns, int(arg), os.path.join(acks_dir, f"{arg}.acks"))
                finally:
                    os._exit(1)
            print(pid, flush=True)
        else:
            os.kill(int(arg), signal.SIGKILL)
            _, status = os.waitpid(int(arg), 0)
            print("killed", int(arg), os.waitstatus_to_exitcode(status), flush=True)


def run_unique(url: str, ns: str, times: int) -> None:
    """Enqueue the same unique key ``times`` times, printing the id each call got."""
    app = laneway.App(url, namespace=ns)

    @app.task(name=TASK, queue=QUEUE)
    def step(lane: str, seq: int) -> None: ...

    for i in range(times):
        print(step.options(unique="the-one", lane="u").enqueue("u", i).id, flush=True)
    app.close()


def _main(argv: list[str]) -> None:
    role, url, ns = argv[:3]
    if role == "worker":
        history, concurrency, lease_s, work_ms, burst = argv[3:8]
        run_worker(url, ns, history, int(concurrency), float(lease_s), float(work_ms), burst == "1")
    elif role == "unique":
        run_unique(url, ns, int(argv[3]))
    elif role == "zygote":
        run_zygote(url, ns, argv[3])
    else:
        raise SystemExit(f"unknown role {role!r}")


def spawn(
    *args: object, stdout: int | None = subprocess.DEVNULL, stdin: int | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.backends.test_sqlite_processes", *map(str, args)],
        cwd=ROOT, stdin=stdin, stdout=stdout, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def wait_for_file(path: Path, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not (path.exists() and path.stat().st_size > 0):
        assert time.monotonic() < deadline, f"{path} never got a line"
        time.sleep(0.002)


# --- the parent's helpers ----------------------------------------------------------------------


def enqueue_lanes(url: str, ns: str, lanes: int, per_lane: int) -> list[tuple[str, str | None, int]]:
    """Enqueue ``per_lane`` jobs on each of ``lanes`` lanes, interleaved, in one transaction;
    returns every job's (id, lane, seq)."""
    backend = SQLiteBackend(url, namespace=ns, synchronous="NORMAL")
    app = laneway.App(backend=backend)

    @app.task(name=TASK, queue=QUEUE)
    def step(lane: str, seq: int) -> None: ...

    expected: list[tuple[str, str | None, int]] = []
    try:
        with backend.transaction() as conn:
            for seq in range(per_lane):
                for i in range(lanes):
                    job = step.options(lane=f"lane{i}").enqueue(f"lane{i}", seq, connection=conn)
                    expected.append((job.id, f"lane{i}", seq))
    finally:
        backend.close()
    return expected


def check_invariants(db: Path, ns: str) -> list[str]:
    """The model test's consistency check of the file (imported late: children do not need
    Hypothesis)."""
    from .test_sqlite_model import check_invariants as check

    return check(db, ns)


def busy_pids(db: Path, ns: str) -> set[int]:
    """Pids of the worker processes that hold running jobs right now (worker ids are
    ``host:pid:random``)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            f'SELECT DISTINCT worker FROM "{ns}_jobs" WHERE status = ?', ("running",)
        ).fetchall()
    conn.close()
    return {int(worker.split(":")[1]) for (worker,) in rows}


def judge(
    history: Path, db: Path, ns: str, expected: list[tuple[str, str | None, int]], **kw: object
) -> Report:
    """Check the recorded history, lost ACK lines rebuilt from the file (see the module docstring)."""
    with sqlite3.connect(db) as conn:
        done = {
            row[0]: (row[1], row[2])
            for row in conn.execute(
                f'SELECT id, finished_at, worker FROM "{ns}_jobs" WHERE status = ?', ("succeeded",)
            )
        }
    conn.close()
    events = load_history(history)
    acked = {e.job_id for e in events if e.kind is EventKind.ACK and e.job_id in done}
    last_claim = {(e.job_id, e.worker): e for e in events if e.kind is EventKind.CLAIM}
    rebuilt = 0
    for job_id, lane, seq in expected:
        if job_id in done and job_id not in acked:
            finished_at, worker = done[job_id]
            claim = last_claim.get((job_id, worker))
            token, at = (claim.token, max(finished_at, claim.time)) if claim else (None, finished_at)
            events.append(Event(EventKind.ACK, job_id, lane, seq, worker, token, at))
            rebuilt += 1
    print(f"{len(events)} events, {rebuilt} ACK lines rebuilt from the file")
    return check_history(events, expected=expected, **kw)  # type: ignore[arg-type]


def succeeded(backend: SQLiteBackend) -> int:
    return sum(s.succeeded for s in backend.stats())


def stop_all(procs: list[subprocess.Popen[bytes]], grace_s: float = 10) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# --- the tests ---------------------------------------------------------------------------------


def test_four_worker_processes_drain_2000_laned_jobs_in_order_without_loss_or_duplicates(
    tmp_path: Path,
) -> None:
    db, history, ns = tmp_path / "laneway.db", tmp_path / "history", "procs"
    url = f"sqlite:///{db}"
    expected = enqueue_lanes(url, ns, lanes=200, per_lane=10)
    workers = [spawn("worker", url, ns, history, 4, 30, 1, 1) for _ in range(4)]
    try:
        for p in workers:
            assert p.wait(120) == 0
    finally:
        stop_all(workers)
    report = judge(history, db, ns, expected, allow_duplicates_for=set())
    assert report.ok, report.details()
    claimers = {e.worker for e in load_history(history) if e.kind is EventKind.CLAIM}
    assert len(claimers) == 4, "every process took part"
    assert check_invariants(db, ns) == []


def test_one_unique_key_enqueued_1000_times_from_8_processes_makes_exactly_one_job(tmp_path: Path) -> None:
    """RELIABILITY fault 11: every caller gets the one job's id."""
    db, ns = tmp_path / "laneway.db", "uniq"
    url = f"sqlite:///{db}"
    SQLiteBackend(url, namespace=ns).close()
    procs = [spawn("unique", url, ns, 125, stdout=subprocess.PIPE) for _ in range(8)]
    ids: list[str] = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        ids += out.decode().split()
    assert len(ids) == 1000 and len(set(ids)) == 1
    with sqlite3.connect(db) as conn:
        assert conn.execute(f'SELECT count(*) FROM "{ns}_jobs"').fetchone()[0] == 1
    conn.close()


def test_acknowledged_enqueues_survive_kill_9_of_producers_mid_transaction(tmp_path: Path) -> None:
    """50 producer processes (five at a time, competing for the write lock) are killed at
    random moments while they enqueue batches; every id a producer wrote down after its
    commit is in the file, and the file is intact."""
    db, ns, acks = tmp_path / "laneway.db", "crash", tmp_path / "acks"
    url = f"sqlite:///{db}"
    acks.mkdir()
    SQLiteBackend(url, namespace=ns).close()
    zygote = spawn("zygote", url, ns, acks, stdout=subprocess.PIPE, stdin=subprocess.PIPE)
    assert zygote.stdin is not None and zygote.stdout is not None
    rng = random.Random(4)

    def ask(command: str) -> str:
        assert zygote.stdin is not None and zygote.stdout is not None
        zygote.stdin.write(f"{command}\n".encode())
        zygote.stdin.flush()
        return zygote.stdout.readline().decode().strip()

    try:
        for round_ in range(10):
            seeds = range(5 * round_, 5 * round_ + 5)
            pids = [int(ask(f"start {seed}")) for seed in seeds]
            for seed in seeds:  # every producer is past its first commit: kills land mid-stream
                wait_for_file(acks / f"{seed}.acks")
            for pid in pids:
                time.sleep(rng.uniform(0.005, 0.06))
                assert ask(f"kill {pid}") == f"killed {pid} -9"
    finally:
        zygote.stdin.close()
        zygote.wait(10)
        zygote.stdout.close()
    acknowledged: set[str] = set()
    for path in acks.iterdir():
        acknowledged.update(
            line.decode() for line in path.read_bytes().split(b"\n")[:-1]
        )  # the last may be torn
    assert len(acknowledged) > 1000, "the producers got far enough to be killed mid-stream"
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {row[0] for row in conn.execute(f'SELECT id FROM "{ns}_jobs"')}
    finally:
        conn.close()
    assert acknowledged - stored == set()
    assert check_invariants(db, ns) == []


def test_kill_9_of_random_worker_processes_loses_nothing_and_keeps_every_lane_in_order(
    tmp_path: Path,
) -> None:
    """RELIABILITY fault 1 at CI size (``LANEWAY_SOAK=1``: 20,000 jobs, 6 workers, 30 kills)."""
    n_jobs, n_workers, kills, work_ms = (20_000, 6, 30, 20) if SOAK else (5_000, 4, 10, 2)
    db, history, ns = tmp_path / "laneway.db", tmp_path / "history", "chaos"
    url = f"sqlite:///{db}"
    expected = enqueue_lanes(url, ns, lanes=n_jobs // 10, per_lane=10)
    rng = random.Random(1)
    args = ("worker", url, ns, history, 4, 2.0, work_ms, 0)
    workers = [spawn(*args) for _ in range(n_workers)]
    backend = SQLiteBackend(url, namespace=ns)
    deadline = time.monotonic() + (600 if SOAK else 100)  # ~25 s on an idle 2-core VM
    killed = 0
    try:
        while time.monotonic() < deadline and (done := succeeded(backend)) < n_jobs:
            time.sleep(rng.uniform(0.01, 0.05))
            # Kills spread over the run by progress (not by time, which a fast machine
            # outruns), each on a worker that holds running jobs: on work in flight.
            busy = [i for i, p in enumerate(workers) if p.pid in busy_pids(db, ns)]
            if killed < kills and busy and done >= n_jobs * (killed + 1) // (kills + 2):
                victim = rng.choice(busy)
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait()
                workers[victim] = spawn(*args)
                killed += 1
    finally:
        stop_all(workers)
        backend.close()
    assert killed == kills
    report = judge(history, db, ns, expected)
    assert report.ok, report.details()
    conn = sqlite3.connect(db)
    try:
        redelivered = conn.execute(f'SELECT count(*) FROM "{ns}_jobs" WHERE attempts > 1').fetchone()[0]
    finally:
        conn.close()
    assert redelivered >= kills, "every kill hit work in flight, which ran again"
    assert check_invariants(db, ns) == []


if __name__ == "__main__":
    _main(sys.argv[1:])


def _queued_elsewhere(url: str) -> int:
    """The queued count as a fresh process sees it (it opens and closes the file)."""
    code = f"import laneway; b = laneway.App({url!r}, namespace='t').backend; print(b.stats()[0].queued); b.close()"
    return int(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )


def test_jobs_a_forked_child_enqueues_are_seen_by_every_process_after_the_parent_closes(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'fork.db'}"
    app = laneway.App(url, namespace="t")

    @app.task(name="job")
    def job(i: int) -> None: ...

    job.enqueue(0)  # the parent has used the backend: its pool holds a connection
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # a producer forked after the app was used (multiprocessing, gunicorn --preload)
        try:
            job.enqueue(1)
            os.write(ready_w, b"1")
            os.read(go_r, 1)  # meanwhile the parent closed and another process checkpointed
            for i in range(2, 12):
                job.enqueue(i)
        finally:
            os._exit(0)
    os.read(ready_r, 1)
    app.backend.close()
    assert _queued_elsewhere(url) == 2  # its last connection closing checkpoints the WAL
    os.write(go_w, b"1")
    os.waitpid(pid, 0)
    assert _queued_elsewhere(url) == 12  # was 2: the child wrote into a WAL file already deleted


def test_a_child_forked_while_a_thread_used_the_database_refuses_to_touch_it(tmp_path: Path) -> None:
    from laneway.backends.sqlite._db import Database, parse_url

    db = Database(parse_url(f"sqlite:///{tmp_path / 'busy.db'}", synchronous="FULL", busy_timeout_s=5))
    with db.connection():  # in use at the fork
        pid = os.fork()
        if pid == 0:
            refused = 0
            for _ in range(2):  # a retry is refused too: the child can never lock the file safely
                try:
                    with db.connection():
                        pass
                except laneway.LanewayError as exc:
                    refused += "forked while a thread used" in str(exc)
            os._exit(3 if refused == 2 else 4)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3
    db.close()
