"""Exactly-once effects on PostgreSQL: a ``transactional=True`` task's writes commit with
its completion, so ``kill -9`` of workers mid-handler leaves no duplicate and no missing row.

Worker processes run ``WORKER`` (``python -c WORKER NAMESPACE TABLE``, which imports only
laneway and psycopg, so they start fast). Each handler inserts one row keyed by
its argument into a plain table (no UNIQUE constraint, which would hide duplicates), then
sleeps a little so that kills land while its transaction is open. Every fraction of a
second the parent SIGKILLs a random worker that holds a lease right now (so the kill lands
on running jobs, not on a process still starting) and starts a new one, until every job has
succeeded; then it counts the rows.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

import laneway
from tests.conftest import POSTGRES_URL, fresh_namespace, require_server

JOBS = 2_000
LANES = 200
WORKERS = 4
KILL_EVERY_S = (0.15, 0.4)
LEASE_S = 2.0
DEADLINE_S = 240.0
ROOT = Path(__file__).resolve().parents[2]


WORKER = f"""
import os, random, sys, time
import laneway
from psycopg import sql

namespace, table = sys.argv[1], sys.argv[2]
app = laneway.App({POSTGRES_URL!r}, namespace=namespace, lease_s={LEASE_S!r})
insert = sql.SQL("INSERT INTO {{}} (n, pid) VALUES (%s, %s)").format(sql.Identifier(table))

@app.task(name="tx.write", transactional=True)
def write(n, connection):
    connection.execute(insert, [n, os.getpid()])
    time.sleep(random.uniform(0.02, 0.06))

app.worker(concurrency=4, idle_wait_s=0.2, sweep_s=0.5, grace_s=1.0).run()
"""
"""The worker process: the same task as ``make_app``'s, run until killed."""


def make_app(namespace: str) -> tuple[laneway.App, laneway.Task]:
    """The producer's side: the task registered under the name the workers run."""
    app = laneway.App(POSTGRES_URL, namespace=namespace, lease_s=LEASE_S)

    @app.task(name="tx.write", transactional=True)
    def write(n: int, connection: psycopg.Connection[Any]) -> None:
        raise AssertionError("runs only in the worker processes")

    return app, write


@pytest.fixture
def scene() -> Iterator[tuple[laneway.App, laneway.Task, str, str]]:
    require_server(POSTGRES_URL, "PostgreSQL")
    namespace = fresh_namespace()
    table = f"effects_{namespace}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE {} (n integer NOT NULL, pid integer NOT NULL)").format(
                sql.Identifier(table)
            )
        )
    app, write = make_app(namespace)
    try:
        yield app, write, namespace, table
    finally:
        drop = getattr(app.backend, "drop_namespace", None)
        if callable(drop):
            drop()
        app.close()
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))


def _spawn(namespace: str, table: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-c", WORKER, namespace, table]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _leasing_pids(namespace: str) -> set[int]:
    """Processes holding a lease now (worker ids are ``host:pid:random``)."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        rows = conn.execute(
            sql.SQL("SELECT DISTINCT worker FROM {}.leases").format(sql.Identifier(namespace))
        )
        return {int(worker.split(":")[1]) for (worker,) in rows}


def _succeeded(app: laneway.App) -> int:
    return sum(s.succeeded for s in app.backend.stats())


def _chaos(app: laneway.App, namespace: str, table: str) -> int:
    """Run workers, SIGKILL one at random intervals and replace it, until all jobs are done."""
    procs = [_spawn(namespace, table) for _ in range(WORKERS)]
    kills = 0
    deadline = time.monotonic() + DEADLINE_S
    try:
        while _succeeded(app) < JOBS and time.monotonic() < deadline:
            time.sleep(random.uniform(*KILL_EVERY_S))
            busy = _leasing_pids(namespace)
            working = [i for i, proc in enumerate(procs) if proc.pid in busy]
            if not working:
                continue
            victim = random.choice(working)
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait()
            kills += 1
            procs[victim] = _spawn(namespace, table)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    return kills


def test_sigkilled_workers_leave_no_duplicate_and_no_missing_effect(
    scene: tuple[laneway.App, laneway.Task, str, str],
) -> None:
    app, write, namespace, table = scene
    write.enqueue_many([((n,), {}) for n in range(0, JOBS, 2)])
    for lane in range(LANES):
        calls: list[tuple[tuple[int], dict[str, Any]]] = [
            ((n,), {}) for n in range(1, JOBS, 2) if n % LANES == lane
        ]
        write.options(lane=f"lane{lane}").enqueue_many(calls)
    kills = _chaos(app, namespace, table)
    assert _succeeded(app) == JOBS, f"only {_succeeded(app)} of {JOBS} jobs succeeded"
    done = app.backend.list_jobs(status=laneway.Status.SUCCEEDED, limit=JOBS)
    redelivered = sum(rec.attempts - 1 for rec in done)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        ident = sql.Identifier(table)
        dupes = conn.execute(
            sql.SQL("SELECT count(*) FROM (SELECT n FROM {} GROUP BY n HAVING count(*) > 1) AS d").format(
                ident
            )
        ).fetchone()
        distinct = conn.execute(sql.SQL("SELECT count(DISTINCT n) FROM {}").format(ident)).fetchone()
        total = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident)).fetchone()
    print(f"{JOBS} jobs, {kills} kills, {redelivered} redeliveries, effects: {total[0] if total else None}")
    assert dupes == (0,), "a job's effect was committed twice"
    assert distinct == (JOBS,), "a job's effect is missing"
    assert total == (JOBS,)
    assert kills >= 10, f"only {kills} kills: the run was too short to show anything"
    assert redelivered > 0, "no kill landed on a running job"
