"""The SQLite backend's own promises: URLs, durability settings, namespaces, transactional
enqueue and finish, schema versions and migrations, and life cycle."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import laneway
from laneway._records import NewJob, OnDead, Outcome, Status, Verdict
from laneway.backends import open_backend
from laneway.backends.sqlite import SQLiteBackend
from laneway.backends.sqlite._schema import SCHEMA_VERSION


def new_job(*, lane: str | None = None, queue: str = "default", delay_s: float = 0.0) -> NewJob:
    return NewJob(
        id=uuid.uuid4().hex, task="t", queue=queue, lane=lane, priority=2, payload=b'{"a":[],"k":{},"h":{}}',
        max_attempts=5, timeout_s=None, unique=None, result_ttl_s=60.0, on_dead=OnDead.SKIP, delay_s=delay_s,
    )  # fmt: skip


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "laneway.db"


@pytest.fixture
def backend(db_path: Path) -> Iterator[SQLiteBackend]:
    b = SQLiteBackend(f"sqlite:///{db_path}", namespace="ns")
    yield b
    b.close()


@pytest.fixture
def caller(db_path: Path, backend: SQLiteBackend) -> Iterator[sqlite3.Connection]:
    """A connection of the application's own to the same file (legacy transaction mode)."""
    conn = sqlite3.connect(db_path, timeout=5)
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT)")
    conn.commit()
    yield conn
    conn.close()


# --- URLs and settings ------------------------------------------------------------------------


def test_relative_and_absolute_urls_open_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = SQLiteBackend("sqlite:///jobs.db", namespace="ns")
    absolute = SQLiteBackend(f"sqlite:///{tmp_path / 'jobs.db'}", namespace="ns")
    try:
        assert str(tmp_path).startswith("/")  # so the URL above has four slashes
        job = new_job()
        relative.enqueue([job])
        assert absolute.get_job(job.id) is not None
        assert (tmp_path / "jobs.db").exists()
    finally:
        relative.close()
        absolute.close()


def test_a_relative_url_keeps_naming_the_same_file_after_the_process_changes_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    backend = SQLiteBackend("sqlite:///jobs.db", namespace="ns")
    try:
        job = new_job()
        backend.enqueue([job])
        monkeypatch.chdir(tmp_path / "elsewhere")  # a task working in a temporary directory
        with backend._db.connection() as a, backend._db.connection() as b:  # a new pooled one too
            assert a is not b
        assert backend.get_job(job.id) is not None
        assert not (tmp_path / "elsewhere" / "jobs.db").exists()
    finally:
        backend.close()


def test_opening_without_create_refuses_a_missing_namespace_and_writes_nothing(db_path: Path) -> None:
    SQLiteBackend(f"sqlite:///{db_path}", namespace="prod").close()
    with pytest.raises(laneway.ConfigError, match="no laneway namespace 'prdo'"):
        open_backend(f"sqlite:///{db_path}", "prdo", create=False)
    with sqlite3.connect(db_path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert tables and not [t for t in tables if t.startswith("prdo")]  # was a full set of tables
    open_backend(f"sqlite:///{db_path}", "prod", create=False).close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///:memory:", "cannot be shared between workers"),
        ("sqlite://", "names no file"),
        ("sqlite:///", "names no file"),
        ("sqlite://host/x.db", "no host"),
        ("sqlite:///x.db?journal=off", "unknown SQLite URL option"),
        ("sqlite:///x.db?synchronous=sometimes", "synchronous must be one of"),
        ("sqlite:///x.db?busy_timeout_s=soon", "busy_timeout_s must be a number"),
        ("sqlite:///x.db?busy_timeout_s=inf", "busy_timeout_s must be a number"),  # was OverflowError
        ("sqlite:///x.db?busy_timeout_s=-1", "busy_timeout_s must be a number"),
    ],
)
def test_unusable_urls_are_refused_with_a_clear_config_error(
    url: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(laneway.ConfigError, match=message):
        SQLiteBackend(url, namespace="ns")


def test_a_read_only_file_is_a_config_error_for_writers_and_readable_by_read_commands(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    SQLiteBackend(f"sqlite:///{db_path}", namespace="ns").close()
    real = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if mode == os.W_OK else real(p, mode)
    )  # root writes all
    with pytest.raises(laneway.ConfigError, match="read-only for this process"):
        SQLiteBackend(f"sqlite:///{db_path}", namespace="ns")
    open_backend(f"sqlite:///{db_path}", "ns", create=False).close()


def test_a_file_in_a_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(laneway.ConfigError, match="cannot open SQLite database"):
        SQLiteBackend(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}", namespace="ns")


def test_file_is_in_wal_mode_with_synchronous_full_by_default(backend: SQLiteBackend, db_path: Path) -> None:
    with backend._db.connection() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_url_options_override_the_keyword_arguments(db_path: Path) -> None:
    b = SQLiteBackend(
        f"sqlite:///{db_path}?synchronous=normal&busy_timeout_s=2.5", namespace="ns", synchronous="FULL"
    )
    try:
        with b._db.connection() as conn:
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert b._db.settings.busy_timeout_s == 2.5
    finally:
        b.close()


def test_open_backend_picks_sqlite_for_sqlite_urls(db_path: Path) -> None:
    b = open_backend(f"sqlite:///{db_path}", "ns")
    try:
        assert isinstance(b, SQLiteBackend)
    finally:
        b.close()


# --- namespaces -----------------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", ["", "Upper", "1abc", 'x"; DROP TABLE t; --', "a" * 41, "sp ace"])
def test_invalid_namespaces_are_refused_before_any_sql_runs(db_path: Path, namespace: str) -> None:
    with pytest.raises(laneway.ConfigError, match="namespace"):
        SQLiteBackend(f"sqlite:///{db_path}", namespace=namespace)
    assert not db_path.exists()


def test_two_namespaces_in_one_file_never_see_each_others_work(db_path: Path) -> None:
    a = SQLiteBackend(f"sqlite:///{db_path}", namespace="app-one")  # a hyphen needs quoting
    b = SQLiteBackend(f"sqlite:///{db_path}", namespace="app_two")
    try:
        job = new_job(lane="shared")
        a.enqueue([job])
        a.put_meta("k", b"a")
        assert b.get_job(job.id) is None
        assert b.claim(["default"], worker="w", limit=5, lease_s=30) == []
        assert b.stats() == [] and b.get_meta("") == {}
        assert [r.id for r in a.claim(["default"], worker="w", limit=5, lease_s=30)] == [job.id]
    finally:
        a.close()
        b.close()


def test_drop_namespace_removes_only_that_namespaces_tables(db_path: Path) -> None:
    keep = SQLiteBackend(f"sqlite:///{db_path}", namespace="keep")
    gone = SQLiteBackend(f"sqlite:///{db_path}", namespace="gone")
    try:
        gone.drop_namespace()
        with keep._db.connection() as conn:
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert not any(n.startswith("gone_") for n in names)
        assert {"keep_jobs", "keep_lanes", "keep_leases", "keep_schema"} <= names
    finally:
        keep.close()
        gone.close()


# --- transactional enqueue and finish -------------------------------------------------------------


def test_enqueue_in_a_callers_transaction_is_visible_only_after_commit(
    backend: SQLiteBackend, caller: sqlite3.Connection
) -> None:
    app = laneway.App(backend=backend)

    @app.task(name="ship")
    def ship(order: int) -> None: ...

    caller.execute("INSERT INTO orders (id, note) VALUES (1, 'paid')")
    job = ship.enqueue(1, connection=caller)
    assert backend.get_job(job.id) is None, "not visible before the caller commits"
    caller.commit()
    rec = backend.get_job(job.id)
    assert rec is not None and rec.status is Status.QUEUED
    assert [r.id for r in backend.claim(["default"], worker="w", limit=1, lease_s=30)] == [job.id]


def test_class_tasks_and_enqueue_hooks_enqueue_in_a_callers_transaction(
    backend: SQLiteBackend, caller: sqlite3.Connection
) -> None:
    app = laneway.App(backend=backend)
    seen: list[list[object]] = []

    @app.task(name="Resize")
    class Resize:
        def __init__(self, image: int) -> None:
            self.image = image

        def process(self) -> None: ...

    @app.task(name="hooked", enqueue=lambda job: seen.append(job.args))
    def hooked(image: int) -> None: ...

    a = Resize.enqueue(7, connection=caller)  # used to read its row back, unseen before the commit
    b = hooked.enqueue(8, connection=caller)
    caller.commit()
    assert seen == [[8]]
    assert {backend.get_job(j.id).task for j in (a, b)} == {"Resize", "hooked"}  # type: ignore[union-attr]


def test_enqueue_in_a_rolled_back_transaction_leaves_no_trace(
    backend: SQLiteBackend, caller: sqlite3.Connection
) -> None:
    job = new_job(lane="orders")
    backend.enqueue([job], connection=caller)  # opens the transaction on the caller's behalf
    assert caller.in_transaction
    caller.rollback()
    assert backend.get_job(job.id) is None
    assert backend.claim(["default"], worker="w", limit=5, lease_s=30) == []
    assert backend.lanes("default") == [] and backend.stats() == []


def test_autocommit_connection_needs_an_explicit_transaction(db_path: Path, backend: SQLiteBackend) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        with pytest.raises(laneway.ConfigError, match="autocommit"):
            backend.enqueue([new_job()], connection=conn)
        conn.execute("BEGIN IMMEDIATE")
        job = new_job()
        backend.enqueue([job], connection=conn)
        assert backend.get_job(job.id) is None
        conn.execute("COMMIT")
        assert backend.get_job(job.id) is not None
    finally:
        conn.close()


def test_connection_to_another_file_or_of_another_kind_is_refused(
    tmp_path: Path, backend: SQLiteBackend
) -> None:
    other = sqlite3.connect(tmp_path / "other.db")
    try:
        with pytest.raises(laneway.ConfigError, match="not on"):
            backend.enqueue([new_job()], connection=other)
        with pytest.raises(laneway.ConfigError, match="sqlite3.Connection"):
            backend.enqueue([new_job()], connection=object())
    finally:
        other.close()


def test_transaction_commits_the_handlers_writes_and_the_finish_together(backend: SQLiteBackend) -> None:
    backend.enqueue([new_job(), new_job()])
    first, second = backend.claim(["default"], worker="w", limit=2, lease_s=30)
    with backend.transaction() as conn:
        conn.execute("CREATE TABLE effects (job TEXT)")
        conn.execute("INSERT INTO effects VALUES (?)", (first.id,))
        assert backend.finish([Outcome(first.id, first.token or 0, Verdict.SUCCEEDED)], connection=conn) == [
            True
        ]
    with pytest.raises(RuntimeError), backend.transaction() as conn:
        conn.execute("INSERT INTO effects VALUES (?)", (second.id,))
        backend.finish([Outcome(second.id, second.token or 0, Verdict.SUCCEEDED)], connection=conn)
        raise RuntimeError("handler failed after its writes")
    done, running = backend.get_job(first.id), backend.get_job(second.id)
    assert done is not None and done.status is Status.SUCCEEDED
    assert running is not None and running.status is Status.RUNNING, "the rolled back finish never happened"
    with backend._db.connection() as conn:
        assert [row[0] for row in conn.execute("SELECT job FROM effects")] == [first.id]


def test_transactional_task_commits_its_writes_only_when_it_succeeds(
    backend: SQLiteBackend, caller: sqlite3.Connection
) -> None:
    app = laneway.App(backend=backend, backoff_s=0.01, backoff_max_s=0.01)

    @app.task(name="record", transactional=True, max_attempts=1)
    def record(order: int, fail: bool, connection: sqlite3.Connection) -> None:
        connection.execute("INSERT INTO orders (id, note) VALUES (?, 'written')", (order,))
        if fail:
            raise RuntimeError("rolled back")

    good, bad = record.enqueue(1, False), record.enqueue(2, True)
    app.worker(concurrency=2, idle_wait_s=0.02).run(burst=True)
    assert good.refresh().status is Status.SUCCEEDED
    assert bad.refresh().status is Status.DEAD and "rolled back" in (bad.error or "")
    assert [row[0] for row in caller.execute("SELECT id FROM orders")] == [1]


def test_waiting_worker_wakes_when_a_caller_commits(
    backend: SQLiteBackend, caller: sqlite3.Connection
) -> None:
    woke: list[float] = []

    def waiter() -> None:
        backend.wait(["default"], 5.0)
        woke.append(time.monotonic())

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.1)
    backend.enqueue([new_job()], connection=caller)
    time.sleep(0.1)
    assert not woke, "an uncommitted enqueue must not wake anyone"
    committed = time.monotonic()
    caller.commit()
    thread.join(5)
    assert woke and woke[0] - committed < 0.1


# --- schema versions ------------------------------------------------------------------------------

SCHEMA_V1 = """
CREATE TABLE "{ns}_schema" (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL);
CREATE TABLE "{ns}_jobs" (
    rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, task TEXT NOT NULL, queue TEXT NOT NULL, lane TEXT,
    lane_key TEXT NOT NULL, priority INTEGER NOT NULL, payload BLOB NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL, timeout_s REAL, uniq TEXT,
    uniq_live TEXT, result_ttl_s REAL NOT NULL, on_dead TEXT NOT NULL, enqueued_at REAL NOT NULL,
    run_at REAL NOT NULL, seq INTEGER, lane_pos INTEGER, wake_at REAL, token INTEGER, worker TEXT,
    started_at REAL, finished_at REAL, result BLOB, error TEXT, traceback TEXT);
CREATE INDEX "{ns}_jobs_lane" ON "{ns}_jobs" (queue, lane_key, lane_pos) WHERE lane_pos IS NOT NULL;
CREATE INDEX "{ns}_jobs_wake" ON "{ns}_jobs" (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX "{ns}_jobs_token" ON "{ns}_jobs" (token, queue, lane_key) WHERE token IS NOT NULL;
CREATE UNIQUE INDEX "{ns}_jobs_unique" ON "{ns}_jobs" (uniq_live) WHERE uniq_live IS NOT NULL;
CREATE TABLE "{ns}_lanes" (queue TEXT NOT NULL, lane_key TEXT NOT NULL, ready INTEGER NOT NULL,
    priority INTEGER NOT NULL, head_seq INTEGER NOT NULL, held INTEGER, PRIMARY KEY (queue, lane_key)) WITHOUT ROWID;
CREATE INDEX "{ns}_lanes_ready" ON "{ns}_lanes" (queue, priority DESC, head_seq) WHERE ready = 1;
CREATE TABLE "{ns}_leases" (token INTEGER PRIMARY KEY, worker TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE INDEX "{ns}_leases_expiry" ON "{ns}_leases" (expires_at);
CREATE INDEX "{ns}_leases_worker" ON "{ns}_leases" (worker);
CREATE TABLE "{ns}_counters" (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE "{ns}_ticks" (name TEXT PRIMARY KEY, tick REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE "{ns}_meta" (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
INSERT INTO "{ns}_schema" VALUES (1, 0);
INSERT INTO "{ns}_counters" VALUES ('seq', 1), ('token', 7);
INSERT INTO "{ns}_jobs" (id, task, queue, lane, lane_key, priority, payload, status, attempts, max_attempts,
    result_ttl_s, on_dead, enqueued_at, run_at, seq, finished_at)
    VALUES ('old-done', 't', 'default', NULL, 'j:old-done', 2, x'7b7d', 'succeeded', 1, 5, 1.0, 'skip', 1, 1, NULL, 100);
INSERT INTO "{ns}_jobs" (id, task, queue, lane, lane_key, priority, payload, status, max_attempts,
    result_ttl_s, on_dead, enqueued_at, run_at, seq, lane_pos)
    VALUES ('waiting', 't', 'default', 'L', 'l:L', 2, x'7b7d', 'queued', 5, 60, 'skip', 1, 1, 1, 1);
INSERT INTO "{ns}_lanes" VALUES ('default', 'l:L', 1, 2, 1, NULL);
"""


def test_a_file_written_with_schema_version_1_is_migrated_when_opened(db_path: Path) -> None:
    """Given a namespace laid out by schema version 1 (no expires_at), opening it with this
    laneway migrates it in place: its work is still there and old results get pruned."""
    with sqlite3.connect(db_path, isolation_level=None) as conn:
        conn.executescript(SCHEMA_V1.replace("{ns}", "old"))
    conn.close()
    b = SQLiteBackend(f"sqlite:///{db_path}", namespace="old")
    try:
        assert b.schema_version == SCHEMA_VERSION == 3
        with b._db.connection() as c:
            assert [row[0] for row in c.execute('SELECT version FROM "old_schema" ORDER BY version')] == [
                1,
                2,
                3,
            ]
            assert (
                c.execute("SELECT count(*) FROM sqlite_master WHERE name = 'old_jobs_wake_q'").fetchone()[0]
                == 1
            )
            assert (
                c.execute("SELECT count(*) FROM sqlite_master WHERE name = 'old_jobs_expires'").fetchone()[0]
                == 1
            )
        assert b.sweep() == 0
        assert b.get_job("old-done") is None, "finished under v1, expired long ago: pruned"
        claimed = b.claim(["default"], worker="w", limit=5, lease_s=30)
        assert [r.id for r in claimed] == ["waiting"] and (claimed[0].token or 0) > 7
    finally:
        b.close()


def test_a_file_from_a_newer_laneway_is_refused(db_path: Path) -> None:
    SQLiteBackend(f"sqlite:///{db_path}", namespace="ns").close()
    with sqlite3.connect(db_path) as conn:
        conn.execute('INSERT INTO "ns_schema" VALUES (?, 0)', (SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(laneway.ConfigError, match="newer than this laneway"):
        SQLiteBackend(f"sqlite:///{db_path}", namespace="ns")


def test_many_threads_opening_a_fresh_file_create_the_schema_once(db_path: Path) -> None:
    opened: list[SQLiteBackend] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            opened.append(SQLiteBackend(f"sqlite:///{db_path}", namespace="ns"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == [] and len(opened) == 8
        with opened[0]._db.connection() as conn:
            assert conn.execute('SELECT count(*) FROM "ns_schema"').fetchone()[0] == 1
    finally:
        for b in opened:
            b.close()


# --- life cycle -----------------------------------------------------------------------------------


def test_a_closed_backend_refuses_further_use_and_closes_every_connection(backend: SQLiteBackend) -> None:
    with backend._db.connection():
        with backend._db.connection():
            pass
    conns = list(backend._db._all)
    assert len(conns) >= 2
    backend.close()
    for conn in conns:
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")
    with pytest.raises(laneway.LanewayError, match="closed"):
        backend.get_job("x")
    backend.close()  # idempotent


def test_operations_wait_out_another_processs_write_lock(db_path: Path, backend: SQLiteBackend) -> None:
    """Given another connection holding the write lock for a while, writes are retried until
    it is released (no 'database is locked'), and only fail after busy_timeout_s."""
    blocker = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        threading.Timer(0.3, lambda: blocker.execute("COMMIT")).start()
        start = time.monotonic()
        backend.enqueue([new_job()])
        assert time.monotonic() - start >= 0.25
        impatient = SQLiteBackend(f"sqlite:///{db_path}?busy_timeout_s=0.1", namespace="ns")
        try:
            blocker.execute("BEGIN IMMEDIATE")
            with pytest.raises(sqlite3.OperationalError, match="stayed locked"):
                impatient.enqueue([new_job()])
            blocker.execute("ROLLBACK")
        finally:
            impatient.close()
    finally:
        blocker.close()


def test_a_job_timing_out_while_it_waits_for_the_write_lock_does_not_leave_the_lock_held(
    tmp_path: Path,
) -> None:
    app = laneway.App(f"sqlite:///{tmp_path / 'lock.db'}?busy_timeout_s=3", namespace="t")
    errors: list[str] = []

    @app.task(queue="q", transactional=True)
    def hold(connection: object = None) -> None:
        time.sleep(1.0)  # holds the process's write lock

    @app.task(
        queue="q", timeout=0.4, max_attempts=1, error=lambda job, exc: errors.append(type(exc).__name__)
    )
    def fan_out() -> None:
        time.sleep(0.1)
        child.enqueue()  # waits for the lock; the timeout fires meanwhile, the lock comes later

    @app.task(queue="q")
    def child() -> None: ...

    hold.enqueue()
    job = fan_out.enqueue()
    worker = app.worker(["q"], concurrency=2, idle_wait_s=0.05)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while job.refresh().status is not Status.DEAD and time.monotonic() < deadline:
            time.sleep(0.05)
        assert job.refresh().status is Status.DEAD and errors == ["JobTimeout"]
        assert not app.backend._db._write_lock.locked()  # type: ignore[attr-defined]
        child.enqueue()  # was DatabaseBusy after busy_timeout_s: the lock leaked to nobody
    finally:
        worker.stop()
        thread.join(10)
        app.close()


def test_a_transactional_task_running_longer_than_its_lease_commits(tmp_path: Path) -> None:
    app = laneway.App(f"sqlite:///{tmp_path / 'long.db'}", namespace="t", lease_s=1.0)

    @app.task(name="long", transactional=True, max_attempts=1)
    def long(connection: sqlite3.Connection) -> None:
        connection.execute("CREATE TABLE IF NOT EXISTS done (n INTEGER)")
        connection.execute("INSERT INTO done VALUES (1)")
        time.sleep(1.5)  # holds the write lock: the heartbeat cannot renew the lease meanwhile

    job = long.enqueue()
    app.worker(idle_wait_s=0.05).run(burst=True)
    assert job.refresh().status is Status.SUCCEEDED  # was refused at commit, for ever
    with sqlite3.connect(tmp_path / "long.db") as conn:
        assert conn.execute("SELECT count(*) FROM done").fetchone() == (1,)
    app.close()


def test_a_laned_send_promotes_its_own_queues_backlog_not_other_queues(backend: SQLiteBackend) -> None:
    backend.enqueue([new_job(queue="other", delay_s=0.1) for _ in range(1500)])
    backend.enqueue([new_job(queue="q", delay_s=0.1) for _ in range(1500)])
    time.sleep(0.3)
    backend.enqueue([new_job(lane="L", queue="q")])
    with backend._db.connection() as conn:
        waiting = dict(
            conn.execute(
                'SELECT queue, count(*) FROM "ns_jobs" WHERE wake_at IS NOT NULL GROUP BY queue'
            ).fetchall()
        )
    assert waiting == {"other": 1500}  # q's whole backlog joined; other's is its own claims' work
