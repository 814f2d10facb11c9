"""The SQLite backend's state changes, each run inside one open write transaction.

Every function takes the connection (already in ``BEGIN IMMEDIATE``, or the caller's
open transaction for ``connection=``), the namespace's statements and ``now``, and
leaves the tables consistent with the invariants written in ``schema.sql``:

- a job is a lane member (``lane_pos`` set) iff it is queued, retrying, or dead with
  ``on_dead='block'`` and a lane;
- a lane row exists iff the lane has members or a lease holds it; it is ``ready`` iff
  it is not held and its lowest member is queued, with that member's priority and seq.

Enqueueing keeps the lane row cheap: a new job takes the highest seq, so it can only be
its lane's head when the lane had no row at all (``INSERT ... ON CONFLICT DO NOTHING``).
Everything else that changes a lane's head goes through :func:`reindex`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import replace

from ..._records import EnqueueResult, JobRecord, NewJob, Outcome, Status, Verdict
from ._sql import SOLO_PREFIX, Sql, lane_key, record

PROMOTE_BATCH = 1000
"""Most due jobs one claim promotes (the rest are promoted by the next claims)."""
SWEEP_LEASES_BATCH = 500
"""Most expired leases one sweep recovers."""
PRUNE_BATCH = 5000
"""Most expired finished jobs one sweep deletes (keeps each sweep transaction short)."""

_CANCELLABLE = frozenset({Status.SCHEDULED, Status.QUEUED, Status.RETRYING, Status.DEAD})


def bump(conn: sqlite3.Connection, sql: Sql, counter: str, by: int) -> int:
    """Add ``by`` to counter ``seq`` or ``token``; returns the new (last) value."""
    row = conn.execute(sql.bump_counter, (by, counter)).fetchone()
    return int(row[0])


# --- lanes -------------------------------------------------------------------------------


def settle_lane(conn: sqlite3.Connection, sql: Sql, queue: str, key: str) -> None:
    """Rewrite an unheld lane's row from its head: ready or not, or gone when empty."""
    head = conn.execute(sql.lane_head, (queue, key)).fetchone()
    if head is None:
        conn.execute(sql.drop_lane, (queue, key))
        return
    status, priority, pos = head
    conn.execute(sql.set_lane, (queue, key, int(status == Status.QUEUED.value), priority, pos))


def reindex(conn: sqlite3.Connection, sql: Sql, queue: str, key: str) -> None:
    """Bring a lane's row up to date after its members changed, unless a lease holds it
    (the lane is settled when that lease lets go)."""
    row = conn.execute(sql.lane_held, (queue, key)).fetchone()
    if row is not None and row[0] is not None:
        return
    settle_lane(conn, sql, queue, key)


def release_lane(conn: sqlite3.Connection, sql: Sql, token: int, queue: str, key: str) -> None:
    """After jobs of lease ``token`` in this lane finished: free the lane once none of the
    lease's jobs there still runs."""
    if conn.execute(sql.lease_lane_busy, (token, queue, key)).fetchone() is None:
        row = conn.execute(sql.lane_held, (queue, key)).fetchone()
        if row is not None and row[0] in (None, token):
            settle_lane(conn, sql, queue, key)


# --- enqueue -----------------------------------------------------------------------------


def enqueue(conn: sqlite3.Connection, sql: Sql, now: float, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
    """Store ``jobs`` (ids and unique keys checked, seqs in list order); see
    ``Backend.enqueue``. A job whose id is already stored is not stored again. Due delayed
    jobs of the queues a laned job joins are promoted first, so one that came due before
    this send goes before it in its lane: all of them, ``PROMOTE_BATCH`` at a time, so a
    backlog of due jobs is never overtaken (a claim promotes one batch and leaves the rest).
    A backlog costs the send about 11 us per due job, under the write lock."""
    for queue in dict.fromkeys(new.queue for new in jobs if new.lane is not None):
        while promote(conn, sql, now, queue) >= PROMOTE_BATCH:
            pass
    results: list[EnqueueResult] = []
    stored: list[tuple[NewJob, float, bool]] = []
    claimed_keys: dict[str, str] = {}
    taken_ids = {row[0] for row in conn.execute(sql.stored_ids, (json.dumps([new.id for new in jobs]),))}
    for new in jobs:
        if new.id in taken_ids:
            results.append(EnqueueResult(new.id, created=False))
            continue
        if new.unique is not None:
            existing = claimed_keys.get(new.unique)
            if existing is None:
                row = conn.execute(sql.find_unique, (new.unique,)).fetchone()
                existing = None if row is None else str(row[0])
            if existing is not None:
                results.append(EnqueueResult(existing, created=False))
                continue
            claimed_keys[new.unique] = new.id
        run_at = new.run_at if new.run_at is not None else now + new.delay_s
        stored.append((new, run_at, run_at > now))
        taken_ids.add(new.id)
        results.append(EnqueueResult(new.id, created=True))
    due = sum(1 for _, _, scheduled in stored if not scheduled)
    seq = bump(conn, sql, "seq", due) - due if due else 0
    rows = []
    lanes = []
    for new, run_at, scheduled in stored:
        key = lane_key(new.lane, new.id)
        job_seq = None
        if not scheduled:
            seq += 1
            job_seq = seq
            lanes.append((new.queue, key, new.priority, seq))
        status = Status.SCHEDULED if scheduled else Status.QUEUED
        rows.append((
            new.id, new.task, new.queue, new.lane, key, new.priority, new.payload, status.value,
            new.max_attempts, new.timeout_s, new.unique, new.unique, new.result_ttl_s, new.on_dead.value,
            now, run_at, job_seq, job_seq, run_at if scheduled else None,
        ))  # fmt: skip
    conn.executemany(sql.insert_job, rows)
    conn.executemany(sql.join_lane, lanes)
    return results


def claim_tick(conn: sqlite3.Connection, sql: Sql, now: float, name: str, tick: float, job: NewJob) -> bool:
    """Record ``tick`` for schedule ``name`` and enqueue ``job``, if the tick is new."""
    row = conn.execute(sql.get_tick, (name,)).fetchone()
    if row is not None and row[0] >= tick:
        return False
    conn.execute(sql.set_tick, (name, tick))
    if job.unique is None or conn.execute(sql.find_unique, (job.unique,)).fetchone() is None:
        enqueue(conn, sql, now, [job])
    return True


# --- claim -------------------------------------------------------------------------------


def promote(conn: sqlite3.Connection, sql: Sql, now: float, of_queue: str | None = None) -> int:
    """Move due scheduled jobs (of ``of_queue``, or of every queue) into their lanes (taking
    the next seqs, in due order) and due retrying heads back to queued, at most
    ``PROMOTE_BATCH``. Returns how many were moved."""
    if of_queue is None:
        due = conn.execute(sql.due_jobs, (now, PROMOTE_BATCH)).fetchall()
    else:
        due = conn.execute(sql.due_jobs_in_queue, (of_queue, now, PROMOTE_BATCH)).fetchall()
    if not due:
        return 0
    scheduled = [row for row in due if row[1] == Status.SCHEDULED.value]
    if scheduled:
        seq = bump(conn, sql, "seq", len(scheduled)) - len(scheduled)
        updates, lanes = [], []
        for job_id, _, queue, key, priority in scheduled:
            seq += 1
            updates.append((seq, seq, job_id))
            lanes.append((queue, key, priority, seq))
        conn.executemany(sql.promote_scheduled, updates)
        conn.executemany(sql.join_lane, lanes)
    for job_id, status, queue, key, _ in due:
        if status == Status.RETRYING.value:
            conn.execute(sql.promote_retrying, (job_id,))
            reindex(conn, sql, queue, key)
    return len(due)


def claim(
    conn: sqlite3.Connection,
    sql: Sql,
    now: float,
    queues: Sequence[str],
    *,
    worker: str,
    limit: int,
    batch: int,
    max_lanes: int | None,
    lease_s: float,
) -> list[JobRecord]:
    """Promote due jobs, then lease ready lanes; see ``Backend.claim``.

    With ``batch == 1`` one statement per queue takes the heads of as many ready lanes as
    wanted (``take_heads``); larger batches go lane by lane, so the first lane may fill
    the claim before the next is looked at (the "drain the sender" order).
    """
    promote(conn, sql, now)
    lanes_left = limit if max_lanes is None else min(limit, max_lanes)
    token = int(conn.execute(sql.next_token).fetchone()[0])
    taken: list[JobRecord] = []
    for queue in queues:
        if lanes_left <= 0 or len(taken) >= limit:
            break
        if batch == 1:
            rows = conn.execute(sql.take_heads, (token, worker, now, queue, lanes_left)).fetchall()
            got = sorted(map(record, rows), key=lambda rec: (-rec.priority, rec.seq or 0))
            lanes_left -= len(got)
            taken += got
        else:
            lanes_left = take_lanes(conn, sql, now, queue, token, worker, batch, limit, lanes_left, taken)
    if taken:
        bump(conn, sql, "token", 1)
        conn.execute(sql.hold_lanes, (token,))
        conn.execute(sql.insert_lease, (token, worker, now + lease_s))
    return taken


def take_lanes(
    conn: sqlite3.Connection,
    sql: Sql,
    now: float,
    queue: str,
    token: int,
    worker: str,
    batch: int,
    limit: int,
    lanes_left: int,
    taken: list[JobRecord],
) -> int:
    """Lease ready lanes of ``queue`` one by one, each up to ``batch`` consecutive queued
    jobs, appending to ``taken``; returns how many more lanes may be taken."""
    for (key,) in conn.execute(sql.ready_lanes, (queue, min(lanes_left, limit - len(taken)))).fetchall():
        got: list[JobRecord] = []
        for row in conn.execute(sql.lane_members, (queue, key, min(batch, limit - len(taken)))).fetchall():
            rec = record(row)
            if rec.status is not Status.QUEUED:
                break
            got.append(replace(rec, status=Status.RUNNING, attempts=rec.attempts + 1, token=token,
                               worker=worker, started_at=now))  # fmt: skip
        if got:
            conn.executemany(sql.start_job, [(token, worker, now, rec.id) for rec in got])
            taken += got
            lanes_left -= 1
        if lanes_left <= 0 or len(taken) >= limit:
            break
    return lanes_left


def extend(
    conn: sqlite3.Connection, sql: Sql, now: float, tokens: Sequence[int], lease_s: float
) -> list[bool]:
    """Push each live lease's expiry to ``now + lease_s``; never revives an expired one."""
    return [conn.execute(sql.extend_lease, (now + lease_s, token, now)).rowcount == 1 for token in tokens]


# --- finish ------------------------------------------------------------------------------


def finish(
    conn: sqlite3.Connection, sql: Sql, now: float, outcomes: Sequence[Outcome], *, held: bool = False
) -> list[bool]:
    """Apply each outcome that its lease still covers; see ``Backend.finish``.

    Each outcome is one guarded ``UPDATE`` (it changes the job only while it runs under
    the outcome's token); freeing lanes and ending leases is done once per batch, after
    every outcome, which leaves the same state as doing it after each.

    ``held``: the caller's transaction has held the file's write lock since before the
    handler ran (a transactional task). Nobody can have swept the lease meanwhile, nor can
    anyone claim the job without that sweep, so a lease that still exists is enough, even
    if it ran out while the handler held the lock (its heartbeat waits for the same lock).
    """
    alive: dict[int, bool] = {}
    accepted: list[bool] = []
    lanes: dict[tuple[str, str], int] = {}
    solo_done: list[tuple[str, str]] = []
    for out in outcomes:
        if out.token not in alive:
            row = conn.execute(sql.lease_expiry, (out.token,)).fetchone()
            alive[out.token] = row is not None and (held or row[0] > now)
        lane = apply_outcome(conn, sql, now, out) if alive[out.token] else None
        accepted.append(lane is not None)
        if lane is None:
            continue
        if lane[1].startswith(SOLO_PREFIX) and out.verdict in (Verdict.SUCCEEDED, Verdict.DEAD):
            solo_done.append(lane)  # a lane of one job that left it: nothing can follow
        else:
            lanes[lane] = out.token
    conn.executemany(sql.drop_lane, solo_done)
    for (queue, key), token in lanes.items():
        release_lane(conn, sql, token, queue, key)
    for token, ok in alive.items():
        if ok:
            conn.execute(sql.drop_lease_if_idle, (token,))
    return accepted


def apply_outcome(conn: sqlite3.Connection, sql: Sql, now: float, out: Outcome) -> tuple[str, str] | None:
    """Change the job as ``out`` says if it runs under ``out.token``; returns its lane."""
    verdict, ids = out.verdict, (out.job_id, out.token)
    if verdict is Verdict.SUCCEEDED:
        rows = conn.execute(sql.succeed, (out.result, now, now, *ids)).fetchall()
    elif verdict is Verdict.RETRY:
        due = now + out.delay_s
        rows = conn.execute(sql.retry_later, (due, due, out.error, out.traceback, *ids)).fetchall()
    elif verdict is Verdict.DEAD:
        rows = conn.execute(sql.go_dead, (out.error, out.traceback, now, *ids)).fetchall()
    else:
        rows = conn.execute(sql.release, ids).fetchall()
    return (rows[0][0], rows[0][1]) if rows else None


# --- sweep -------------------------------------------------------------------------------


def sweep_needed(conn: sqlite3.Connection, sql: Sql, now: float, worker: str | None) -> bool:
    """A cheap read: is there any lease or finished job for ``sweep`` to act on?"""
    if conn.execute(sql.any_expired_lease, (now,)).fetchone() is not None:
        return True
    if worker is not None and conn.execute(sql.any_worker_lease, (worker,)).fetchone() is not None:
        return True
    return conn.execute(sql.any_expired_job, (now,)).fetchone() is not None


def sweep(conn: sqlite3.Connection, sql: Sql, now: float, worker: str | None) -> int:
    """Recover expired (or ``worker``'s) leases and prune expired finished jobs."""
    tokens = [row[0] for row in conn.execute(sql.expired_leases, (now, SWEEP_LEASES_BATCH))]
    if worker is not None:
        tokens += [row[0] for row in conn.execute(sql.worker_leases, (worker,)) if row[0] not in tokens]
    recovered = 0
    for token in tokens:
        recovered += recover_lease(conn, sql, now, token)
    conn.execute(sql.prune, (now, PRUNE_BATCH))
    return recovered


def recover_lease(conn: sqlite3.Connection, sql: Sql, now: float, token: int) -> int:
    """Give a lost lease's running jobs back to the head of their lanes (or dead when out
    of attempts), free its lanes and delete it. Returns the number of jobs recovered.

    Only a lane's first job (lowest seq) can have been running: the rest of a batch behind
    it never started and get back the attempt their claim counted."""
    jobs = conn.execute(sql.lease_jobs, (token,)).fetchall()
    lanes: dict[tuple[str, str], None] = {}
    for job_id, queue, key, attempts, max_attempts in jobs:
        if (queue, key) in lanes:  # behind the lane's first job of this lease
            conn.execute(sql.release, (job_id, token)).fetchall()  # as a release: attempt back
        elif attempts >= max_attempts:
            error = f"lease expired: worker lost while running attempt {attempts} of {max_attempts}"
            conn.execute(sql.go_dead, (error, None, now, job_id, token)).fetchall()
        else:
            conn.execute(
                sql.requeue_lost, ("lease expired: worker lost; re-queued", job_id, token)
            ).fetchall()
        lanes[(queue, key)] = None
    for queue, key in lanes:
        release_lane(conn, sql, token, queue, key)
    conn.execute(sql.drop_lease, (token,))
    return len(jobs)


# --- operate -----------------------------------------------------------------------------


def cancel(conn: sqlite3.Connection, sql: Sql, now: float, job_id: str) -> bool:
    """Cancel a scheduled, queued, retrying or dead job; its lane moves on."""
    row = conn.execute(sql.job_state, (job_id,)).fetchone()
    if row is None or Status(row[0]) not in _CANCELLABLE:
        return False
    conn.execute(sql.cancel, (now, now, job_id))
    if row[5] is not None:  # it was a lane member: the head may have changed
        reindex(conn, sql, row[1], row[2])
    return True


def retry(conn: sqlite3.Connection, sql: Sql, now: float, job_id: str) -> bool:
    """Put a dead or cancelled job back at the head of its lane with attempts reset."""
    row = conn.execute(sql.job_state, (job_id,)).fetchone()
    if row is None or row[0] not in (Status.DEAD.value, Status.CANCELLED.value):
        return False
    _, queue, key, uniq, seq, _ = row
    if uniq is not None and conn.execute(sql.find_unique, (uniq,)).fetchone() is not None:
        return False
    if seq is None:  # cancelled before it ever joined its lane
        seq = bump(conn, sql, "seq", 1)
    conn.execute(sql.revive, (now, seq, seq, job_id))
    reindex(conn, sql, queue, key)
    return True


def purge(conn: sqlite3.Connection, sql: Sql, status: Status, queue: str | None) -> int:
    """Delete every job in final ``status`` (of ``queue``); blocked lanes move on."""
    blocked = conn.execute(sql.blocking_lanes_of, (status.value, queue)).fetchall()
    deleted = conn.execute(sql.purge, (status.value, queue)).rowcount
    for lane_queue, key in blocked:
        reindex(conn, sql, lane_queue, key)
    return int(deleted)
