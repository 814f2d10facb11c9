"""Every statement the SQLite backend runs, with the namespace's table names filled in.

The namespace is validated (``[a-z][a-z0-9_-]{0,39}``) and only ever lands inside a
double-quoted identifier; every value is a bound parameter. Hot statements name their
index with ``INDEXED BY`` so a planner change can never turn a claim into a scan (SQLite
raises an error instead of silently scanning when the index cannot serve the query).
The tables and indexes are described in ``schema.sql``.
"""

from __future__ import annotations

from typing import Any

from ..._records import JobRecord, OnDead, Status

JOB_COLUMNS = (
    "id, task, queue, lane, priority, payload, status, attempts, max_attempts, timeout_s, uniq, "
    "result_ttl_s, on_dead, enqueued_at, run_at, seq, token, worker, started_at, finished_at, "
    "result, error, traceback"
)
"""The columns of a ``JobRecord``, in its field order."""

LANE_PREFIX = "l:"
SOLO_PREFIX = "j:"


def lane_key(lane: str | None, job_id: str) -> str:
    """The key of a job's lane: its lane's, or a lane of its own when it has none."""
    return LANE_PREFIX + lane if lane is not None else SOLO_PREFIX + job_id


_STATUS = {status.value: status for status in Status}
_ON_DEAD = {policy.value: policy for policy in OnDead}


def record(row: Any) -> JobRecord:
    """A ``JobRecord`` from a row of ``JOB_COLUMNS``."""
    return JobRecord(
        row[0], row[1], row[2], row[3], row[4], row[5], _STATUS[row[6]], row[7], row[8], row[9],
        row[10], row[11], _ON_DEAD[row[12]], row[13], row[14], row[15], row[16], row[17], row[18],
        row[19], row[20], row[21], row[22],
    )  # fmt: skip


_TEMPLATES = {
    # --- enqueue ---------------------------------------------------------------------
    "stored_ids": 'SELECT id FROM "{ns}_jobs" WHERE id IN (SELECT value FROM json_each(?))',
    "find_unique": 'SELECT id FROM "{ns}_jobs" INDEXED BY "{ns}_jobs_unique" WHERE uniq_live = ?',
    "insert_job": (
        'INSERT INTO "{ns}_jobs" (id, task, queue, lane, lane_key, priority, payload, status, '
        "max_attempts, timeout_s, uniq, uniq_live, result_ttl_s, on_dead, enqueued_at, run_at, seq, "
        "lane_pos, wake_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    "join_lane": (
        'INSERT INTO "{ns}_lanes" (queue, lane_key, ready, priority, head_seq) VALUES (?, ?, 1, ?, ?) '
        "ON CONFLICT (queue, lane_key) DO NOTHING"
    ),
    "bump_counter": 'UPDATE "{ns}_counters" SET value = value + ? WHERE name = ? RETURNING value',
    "get_tick": 'SELECT tick FROM "{ns}_ticks" WHERE name = ?',
    "set_tick": (
        'INSERT INTO "{ns}_ticks" (name, tick) VALUES (?, ?) '
        "ON CONFLICT (name) DO UPDATE SET tick = excluded.tick"
    ),
    # --- promotion of due jobs -----------------------------------------------------------
    "due_jobs": (
        'SELECT id, status, queue, lane_key, priority FROM "{ns}_jobs" INDEXED BY "{ns}_jobs_wake" '
        "WHERE wake_at <= ? ORDER BY wake_at LIMIT ?"
    ),
    "due_jobs_in_queue": (
        'SELECT id, status, queue, lane_key, priority FROM "{ns}_jobs" INDEXED BY "{ns}_jobs_wake_q" '
        "WHERE queue = ? AND wake_at <= ? ORDER BY wake_at LIMIT ?"
    ),
    "any_due": 'SELECT 1 FROM "{ns}_jobs" INDEXED BY "{ns}_jobs_wake" WHERE wake_at <= ? LIMIT 1',
    "next_wake": 'SELECT min(wake_at) FROM "{ns}_jobs" INDEXED BY "{ns}_jobs_wake" WHERE wake_at IS NOT NULL',
    "promote_scheduled": (
        "UPDATE \"{ns}_jobs\" SET status = 'queued', seq = ?, lane_pos = ?, wake_at = NULL WHERE id = ?"
    ),
    "promote_retrying": "UPDATE \"{ns}_jobs\" SET status = 'queued', wake_at = NULL WHERE id = ?",
    # --- lanes ---------------------------------------------------------------------------
    "any_ready": 'SELECT 1 FROM "{ns}_lanes" INDEXED BY "{ns}_lanes_ready" WHERE queue = ? AND ready = 1 LIMIT 1',
    "ready_lanes": (
        'SELECT lane_key FROM "{ns}_lanes" INDEXED BY "{ns}_lanes_ready" '
        "WHERE queue = ? AND ready = 1 ORDER BY priority DESC, head_seq LIMIT ?"
    ),
    "lane_members": (
        f'SELECT {JOB_COLUMNS} FROM "{{ns}}_jobs" INDEXED BY "{{ns}}_jobs_lane" '
        "WHERE queue = ? AND lane_key = ? AND lane_pos IS NOT NULL ORDER BY lane_pos LIMIT ?"
    ),
    "lane_head": (
        'SELECT status, priority, lane_pos FROM "{ns}_jobs" INDEXED BY "{ns}_jobs_lane" '
        "WHERE queue = ? AND lane_key = ? AND lane_pos IS NOT NULL ORDER BY lane_pos LIMIT 1"
    ),
    "lane_held": 'SELECT held FROM "{ns}_lanes" WHERE queue = ? AND lane_key = ?',
    "set_lane": (
        'INSERT INTO "{ns}_lanes" (queue, lane_key, ready, priority, head_seq, held) '
        "VALUES (?, ?, ?, ?, ?, NULL) ON CONFLICT (queue, lane_key) DO UPDATE SET "
        "ready = excluded.ready, priority = excluded.priority, head_seq = excluded.head_seq, held = NULL"
    ),
    "drop_lane": 'DELETE FROM "{ns}_lanes" WHERE queue = ? AND lane_key = ?',
    # --- claim, lease, finish --------------------------------------------------------------
    "next_token": "SELECT value + 1 FROM \"{ns}_counters\" WHERE name = 'token'",
    "take_heads": (
        "UPDATE \"{ns}_jobs\" SET status = 'running', attempts = attempts + 1, token = ?1, worker = ?2, "
        "started_at = ?3, lane_pos = NULL WHERE rid IN ("
        ' SELECT j.rid FROM "{ns}_lanes" AS l INDEXED BY "{ns}_lanes_ready"'
        ' JOIN "{ns}_jobs" AS j INDEXED BY "{ns}_jobs_lane"'
        "  ON j.queue = l.queue AND j.lane_key = l.lane_key AND j.lane_pos = l.head_seq"
        " WHERE l.queue = ?4 AND l.ready = 1 AND j.status = 'queued'"
        f" ORDER BY l.priority DESC, l.head_seq LIMIT ?5) RETURNING {JOB_COLUMNS}"
    ),
    "hold_lanes": (
        'UPDATE "{ns}_lanes" SET held = ?1, ready = 0 WHERE (queue, lane_key) IN '
        '(SELECT queue, lane_key FROM "{ns}_jobs" INDEXED BY "{ns}_jobs_token" WHERE token = ?1)'
    ),
    "start_job": (
        "UPDATE \"{ns}_jobs\" SET status = 'running', attempts = attempts + 1, token = ?, worker = ?, "
        "started_at = ?, lane_pos = NULL WHERE id = ?"
    ),
    "insert_lease": 'INSERT INTO "{ns}_leases" (token, worker, expires_at) VALUES (?, ?, ?)',
    "extend_lease": 'UPDATE "{ns}_leases" SET expires_at = ? WHERE token = ? AND expires_at > ?',
    "lease_expiry": 'SELECT expires_at FROM "{ns}_leases" WHERE token = ?',
    "drop_lease_if_idle": (
        'DELETE FROM "{ns}_leases" WHERE token = ?1 AND NOT EXISTS '
        '(SELECT 1 FROM "{ns}_jobs" INDEXED BY "{ns}_jobs_token" WHERE token = ?1)'
    ),
    "drop_lease": 'DELETE FROM "{ns}_leases" WHERE token = ?',
    "lease_lane_busy": (
        'SELECT 1 FROM "{ns}_jobs" INDEXED BY "{ns}_jobs_token" '
        "WHERE token = ? AND queue = ? AND lane_key = ? LIMIT 1"
    ),
    # Outcomes: each changes the job only if it still runs under the outcome's token
    # (the last two parameters: id, token), and returns its lane.
    "succeed": (
        "UPDATE \"{ns}_jobs\" SET status = 'succeeded', result = ?, finished_at = ?, token = NULL, "
        "uniq_live = NULL, expires_at = ? + result_ttl_s WHERE id = ? AND token = ? RETURNING queue, lane_key"
    ),
    "retry_later": (
        "UPDATE \"{ns}_jobs\" SET status = 'retrying', run_at = ?, wake_at = ?, error = ?, traceback = ?, "
        "token = NULL, lane_pos = seq WHERE id = ? AND token = ? RETURNING queue, lane_key"
    ),
    "go_dead": (
        "UPDATE \"{ns}_jobs\" SET status = 'dead', error = ?, traceback = ?, finished_at = ?, token = NULL, "
        "uniq_live = NULL, expires_at = NULL, wake_at = NULL, "
        "lane_pos = CASE WHEN on_dead = 'block' AND lane IS NOT NULL THEN seq END "
        "WHERE id = ? AND token = ? RETURNING queue, lane_key"
    ),
    "release": (
        "UPDATE \"{ns}_jobs\" SET status = 'queued', attempts = attempts - 1, token = NULL, lane_pos = seq "
        "WHERE id = ? AND token = ? RETURNING queue, lane_key"
    ),
    "requeue_lost": (
        "UPDATE \"{ns}_jobs\" SET status = 'queued', token = NULL, lane_pos = seq, error = ? "
        "WHERE id = ? AND token = ? RETURNING queue, lane_key"
    ),
    # --- sweep -----------------------------------------------------------------------------
    "expired_leases": (
        'SELECT token FROM "{ns}_leases" INDEXED BY "{ns}_leases_expiry" WHERE expires_at <= ? '
        "ORDER BY expires_at LIMIT ?"
    ),
    "worker_leases": 'SELECT token FROM "{ns}_leases" INDEXED BY "{ns}_leases_worker" WHERE worker = ?',
    "lease_jobs": (
        'SELECT id, queue, lane_key, attempts, max_attempts FROM "{ns}_jobs" INDEXED BY "{ns}_jobs_token" '
        "WHERE token = ? ORDER BY queue, lane_key, seq"
    ),
    "any_expired_lease": (
        'SELECT 1 FROM "{ns}_leases" INDEXED BY "{ns}_leases_expiry" WHERE expires_at <= ? LIMIT 1'
    ),
    "any_worker_lease": 'SELECT 1 FROM "{ns}_leases" INDEXED BY "{ns}_leases_worker" WHERE worker = ? LIMIT 1',
    "any_expired_job": (
        'SELECT 1 FROM "{ns}_jobs" INDEXED BY "{ns}_jobs_expires" WHERE expires_at <= ? LIMIT 1'
    ),
    "prune": (
        'DELETE FROM "{ns}_jobs" WHERE rid IN (SELECT rid FROM "{ns}_jobs" INDEXED BY "{ns}_jobs_expires" '
        "WHERE expires_at <= ? LIMIT ?)"
    ),
    # --- operate ---------------------------------------------------------------------------
    "get_job": f'SELECT {JOB_COLUMNS} FROM "{{ns}}_jobs" WHERE id = ?',
    "job_state": 'SELECT status, queue, lane_key, uniq, seq, lane_pos FROM "{ns}_jobs" WHERE id = ?',
    "cancel": (
        "UPDATE \"{ns}_jobs\" SET status = 'cancelled', finished_at = ?, expires_at = ? + result_ttl_s, "
        "uniq_live = NULL, lane_pos = NULL, wake_at = NULL WHERE id = ?"
    ),
    "revive": (
        "UPDATE \"{ns}_jobs\" SET status = 'queued', attempts = 0, run_at = ?, finished_at = NULL, "
        "expires_at = NULL, wake_at = NULL, uniq_live = uniq, seq = ?, lane_pos = ? WHERE id = ?"
    ),
    "blocking_lanes_of": (
        'SELECT DISTINCT queue, lane_key FROM "{ns}_jobs" '
        "WHERE status = ? AND (?2 IS NULL OR queue = ?2) AND lane_pos IS NOT NULL"
    ),
    "purge": 'DELETE FROM "{ns}_jobs" WHERE status = ? AND (?2 IS NULL OR queue = ?2)',
    "list_jobs": (
        f'SELECT {JOB_COLUMNS} FROM "{{ns}}_jobs" WHERE (?1 IS NULL OR queue = ?1) '
        "AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR lane = ?3) ORDER BY rid DESC LIMIT ?4 OFFSET ?5"
    ),
    "count_by_status": 'SELECT queue, status, count(*) FROM "{ns}_jobs" GROUP BY queue, status',
    "oldest_queued": ("SELECT queue, min(run_at) FROM \"{ns}_jobs\" WHERE status = 'queued' GROUP BY queue"),
    "count_lanes": (
        "SELECT queue, count(*) FROM \"{ns}_lanes\" WHERE lane_key >= 'l:' AND lane_key < 'l;' GROUP BY queue"
    ),
    "lane_summaries": (
        "SELECT lane, lane_key, count(*), min(seq), id, status, attempts, enqueued_at "
        'FROM "{ns}_jobs" WHERE queue = ? AND lane IS NOT NULL '
        "AND (lane_pos IS NOT NULL OR token IS NOT NULL) GROUP BY lane_key"
    ),
    "held_lanes": 'SELECT lane_key FROM "{ns}_lanes" WHERE queue = ? AND held IS NOT NULL',
    "put_meta": (
        'INSERT INTO "{ns}_meta" (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'
    ),
    "delete_meta": 'DELETE FROM "{ns}_meta" WHERE key = ?',
    "get_meta": 'SELECT key, value FROM "{ns}_meta" WHERE substr(key, 1, length(?1)) = ?1',
}


class Sql:
    """The statements of ``_TEMPLATES`` for one (validated) namespace, as attributes."""

    stored_ids: str
    find_unique: str
    insert_job: str
    join_lane: str
    bump_counter: str
    get_tick: str
    set_tick: str
    due_jobs: str
    due_jobs_in_queue: str
    any_due: str
    next_wake: str
    promote_scheduled: str
    promote_retrying: str
    any_ready: str
    ready_lanes: str
    lane_members: str
    lane_head: str
    lane_held: str
    set_lane: str
    drop_lane: str
    next_token: str
    take_heads: str
    hold_lanes: str
    start_job: str
    insert_lease: str
    extend_lease: str
    lease_expiry: str
    drop_lease_if_idle: str
    drop_lease: str
    lease_lane_busy: str
    succeed: str
    retry_later: str
    go_dead: str
    release: str
    requeue_lost: str
    expired_leases: str
    worker_leases: str
    lease_jobs: str
    any_expired_lease: str
    any_worker_lease: str
    any_expired_job: str
    prune: str
    get_job: str
    job_state: str
    cancel: str
    revive: str
    blocking_lanes_of: str
    purge: str
    list_jobs: str
    count_by_status: str
    oldest_queued: str
    count_lanes: str
    lane_summaries: str
    held_lanes: str
    put_meta: str
    delete_meta: str
    get_meta: str

    def __init__(self, namespace: str) -> None:
        for name, template in _TEMPLATES.items():
            setattr(self, name, template.replace("{ns}", namespace))
        missing = set(self.__annotations__) - set(_TEMPLATES)
        if missing:
            raise AssertionError(f"statements without SQL: {sorted(missing)}")
