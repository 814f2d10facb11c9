"""Read-only queries of the SQLite backend: jobs, counts, lanes, meta, and wake-up checks.

Each runs on an autocommit connection (or in one read snapshot where several statements
must agree) and never takes the write lock, so operators and waiting workers do not
slow down claims. The operator queries (``stats``, ``lanes``, filtered ``list_jobs``)
scan the jobs of a namespace; the worker's path never calls them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from ..._records import JobRecord, LaneInfo, QueueStats, Status
from ._sql import Sql, record


def get_job(conn: sqlite3.Connection, sql: Sql, job_id: str) -> JobRecord | None:
    """The job with ``job_id``, or None."""
    row = conn.execute(sql.get_job, (job_id,)).fetchone()
    return None if row is None else record(row)


def list_jobs(
    conn: sqlite3.Connection,
    sql: Sql,
    *,
    queue: str | None,
    status: Status | None,
    lane: str | None,
    limit: int,
    offset: int,
) -> list[JobRecord]:
    """Jobs matching every filter given, newest first."""
    params = (queue, None if status is None else status.value, lane, limit, offset)
    return [record(row) for row in conn.execute(sql.list_jobs, params)]


def stats(conn: sqlite3.Connection, sql: Sql, now: float) -> list[QueueStats]:
    """Counts per queue, for every queue with jobs (call inside one read snapshot)."""
    counts: dict[str, dict[str, int]] = {}
    for queue, status, n in conn.execute(sql.count_by_status):
        counts.setdefault(queue, {})[status] = n
    oldest = dict(conn.execute(sql.oldest_queued).fetchall())
    lanes = dict(conn.execute(sql.count_lanes).fetchall())
    out = []
    for queue in sorted(counts):
        c = counts[queue]
        out.append(QueueStats(
            queue=queue, scheduled=c.get("scheduled", 0), queued=c.get("queued", 0),
            running=c.get("running", 0), retrying=c.get("retrying", 0),
            succeeded=c.get("succeeded", 0), dead=c.get("dead", 0), cancelled=c.get("cancelled", 0),
            lanes=lanes.get(queue, 0),
            oldest_queued_age_s=(now - oldest[queue]) if oldest.get(queue) is not None else None,
        ))  # fmt: skip
    return out


def lanes(conn: sqlite3.Connection, sql: Sql, now: float, queue: str, limit: int) -> list[LaneInfo]:
    """Lanes of ``queue`` with pending work, oldest head first (call in one snapshot)."""
    held = {row[0] for row in conn.execute(sql.held_lanes, (queue,))}
    infos = []
    for lane, key, depth, _, head_id, head_status, attempts, enqueued_at in conn.execute(
        sql.lane_summaries, (queue,)
    ):
        status = Status(head_status)
        infos.append(LaneInfo(
            queue=queue, lane=lane, depth=depth, head_id=head_id, head_status=status,
            head_attempts=attempts, head_age_s=now - enqueued_at, held=key in held,
            blocked=status is Status.DEAD,
        ))  # fmt: skip
    infos.sort(key=lambda info: -info.head_age_s)
    return infos[:limit]


def get_meta(conn: sqlite3.Connection, sql: Sql, prefix: str) -> dict[str, bytes]:
    """Every meta value whose key starts with ``prefix``."""
    return {key: bytes(value) for key, value in conn.execute(sql.get_meta, (prefix,))}


def work_state(conn: sqlite3.Connection, sql: Sql, queues: Sequence[str], now: float) -> float | None:
    """When work on ``queues`` may next be claimable: ``now`` if a lane is ready or a
    scheduled or retrying job (of any queue) is due, else the earliest such job's due
    time, or None when nothing waits on a timer."""
    for queue in queues:
        if conn.execute(sql.any_ready, (queue,)).fetchone() is not None:
            return now
    row = conn.execute(sql.next_wake).fetchone()
    if row is None or row[0] is None:
        return None
    due = float(row[0])
    return now if due <= now else due


def claimable(conn: sqlite3.Connection, sql: Sql, queues: Sequence[str], now: float) -> bool:
    """Whether a claim on ``queues`` could find anything to do right now."""
    for queue in queues:
        if conn.execute(sql.any_ready, (queue,)).fetchone() is not None:
            return True
    return conn.execute(sql.any_due, (now,)).fetchone() is not None


def data_version(conn: sqlite3.Connection) -> int:
    """A number that changes whenever another connection commits to the file."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])
