"""``PostgresBackend``: the contract on one PostgreSQL primary, one schema per namespace.

Every operation is one round trip: one call of a function from ``sql/`` (or one plain
statement for reads). Connections come from a ``psycopg_pool.ConnectionPool`` in
autocommit mode, so each call is a transaction of its own, unless the caller passes its
own connection (``enqueue``/``finish`` with ``connection=``), in which case the call joins
the caller's transaction and commits or rolls back with it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from ..._errors import ConfigError
from ..._names import check_namespace
from ..._records import (
    EnqueueResult,
    JobRecord,
    LaneInfo,
    NewJob,
    Outcome,
    QueueStats,
    Status,
)
from .._base import Backend, page_args, page_limit
from . import _schema
from ._async import AsyncEnqueuer
from ._listener import Listener
from ._queries import Queries
from ._rows import claim_params, enqueue_params, finish_params, to_record
from ._waiter import Waiter, until_due

log = logging.getLogger("laneway.postgres")

PROMOTE_BATCH = 1000
"""Due jobs moved into their lanes per ``promote`` statement (a claim moves at most 32)."""
PROMOTE_BATCHES = 10
"""Most promote statements per ``sweep``."""
SWEEP_LEASES = 1000
"""Expired leases recovered per ``sweep`` call."""
PRUNE_BATCH = 1000
"""Expired finished jobs deleted per statement: each batch is a short transaction."""
PRUNE_BATCHES = 10
"""Most prune batches per ``sweep`` (the next sweep goes on)."""
PURGE_BATCH = 5000
"""Jobs deleted per statement by ``purge``."""
OVERDUE_WAIT_S = 0.01
"""How long ``wait`` sleeps when due work is being promoted by another claim."""
WORKER_CONNECTIONS = 3
"""Pool connections a worker needs besides its slots: the fetch loop's claims, the acker's
finishes and the maintainer's heartbeats (the idle wait has a connection of its own)."""

CONNECT_TIMEOUT_S = 10
"""libpq's ``connect_timeout`` for the first connection when the URL sets none (libpq's
own default waits as long as the operating system does)."""
POOL_OPEN_S = 30.0
"""How long opening the pool may take once the first connection has succeeded."""

_WAITER_CLOSE_S = 2.0
"""How long ``close`` waits for a worker's pickup wait to end before leaving its connection."""
_DISCONNECT_STATES = frozenset({"57P01", "57P02", "57P03"})


def _is_disconnect(exc: psycopg.OperationalError) -> bool:
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _DISCONNECT_STATES


class PostgresBackend(Backend):
    """Queues in PostgreSQL (``postgresql://`` or ``postgres://`` URLs).

    Args:
        url: a libpq URL or connection string.
        namespace: the schema that holds this app's tables and functions.
        pool_size: most connections this backend opens (plus one to ``LISTEN``); a
            worker with more slots than ``pool_size - 3`` grows it (``reserve``).
        migrate: bring the schema up to date on first use (else call ``migrate()``).

    Raises:
        ConfigError: a URL libpq cannot parse (an unknown option, say).
        psycopg.OperationalError: the server refused the connection or could not be
            reached within the URL's ``connect_timeout`` (``CONNECT_TIMEOUT_S`` when the
            URL has none), with libpq's reason, at once rather than as a pool timeout.
    """

    def __init__(
        self, url: str, *, namespace: str = "laneway", pool_size: int = 16, migrate: bool = True
    ) -> None:
        try:
            conninfo = conninfo_to_dict(url)  # a misspelt option fails here, not as a pool timeout
        except psycopg.ProgrammingError as exc:
            raise ConfigError(f"PostgreSQL URL: {exc}") from None
        # One plain connection first: the pool retries a refused connection in the
        # background for its whole open timeout and then reports only that it timed out.
        timeout = conninfo.get("connect_timeout", CONNECT_TIMEOUT_S)
        psycopg.connect(url, connect_timeout=timeout).close()
        self.url = url
        self.namespace = check_namespace(namespace)
        self.schema = _schema.check_schema_name(self.namespace)
        self.channel = f"laneway.{self.schema}"
        self._q = Queries.for_schema(self.schema)
        self._pool = ConnectionPool(
            url, min_size=1, max_size=pool_size, kwargs={"autocommit": True}, open=False,
            name=f"laneway-{self.schema}",
        )  # fmt: skip
        self._pool.open(wait=True, timeout=POOL_OPEN_S)
        self._resize_lock = threading.Lock()
        self._closed = False
        try:
            if migrate:
                self._ensure_schema()
        except BaseException:
            self._pool.close()
            raise
        self._listener = Listener(url, self.channel, self._poke)
        self._waiter = Waiter(url, self.channel, self._q, OVERDUE_WAIT_S)
        self._waiter_lock = threading.Lock()
        self._async = AsyncEnqueuer(url)

    def __repr__(self) -> str:
        return f"<PostgresBackend namespace={self.namespace}>"

    def reserve(self, slots: int) -> None:
        """Grow the pool to ``slots`` connections (a transactional job holds one while it
        runs) plus ``WORKER_CONNECTIONS`` for the worker's claims, acks and heartbeats."""
        want = slots + WORKER_CONNECTIONS
        with self._resize_lock:
            if want > self._pool.max_size:
                self._pool.resize(self._pool.min_size, want)

    # --- plumbing -------------------------------------------------------------------------

    def _rows(
        self, query: sql.Composed, params: Sequence[Any] | dict[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        """Run one statement on a pooled connection (its own transaction); retried once
        on a fresh connection when the server dropped the pooled one."""
        try:
            return self._rows_once(query, params)
        except psycopg.OperationalError as exc:
            if not _is_disconnect(exc):
                raise
            log.warning("connection lost (%s); retrying on a fresh connection", exc)
            self._pool.check()
            return self._rows_once(query, params)

    def _rows_once(
        self, query: sql.Composed, params: Sequence[Any] | dict[str, Any]
    ) -> list[tuple[Any, ...]]:
        with self._pool.connection() as conn:
            return conn.execute(query, params).fetchall()

    def _scalar(self, query: sql.Composed, params: Sequence[Any] = ()) -> Any:
        rows = self._rows(query, params)
        return rows[0][0] if rows else None

    def _in_callers(self, connection: Any, query: sql.Composed, params: Sequence[Any]) -> psycopg.Cursor[Any]:
        """Run ``query`` in the caller's ``connection`` (its transaction): a psycopg 3
        ``Connection`` open on the database of this backend's URL, else ``ConfigError``."""
        if not isinstance(connection, psycopg.Connection):
            raise ConfigError(f"connection= takes a psycopg (3) Connection, not {type(connection).__name__}")
        try:
            return connection.execute(query, params)
        except (psycopg.errors.InvalidSchemaName, psycopg.errors.UndefinedFunction) as exc:
            raise ConfigError(
                f"connection= has no laneway schema {self.schema!r} (is it open on the database of "
                f"this app's URL?): {str(exc).splitlines()[0]}"
            ) from exc

    def _ensure_schema(self) -> None:
        with self._pool.connection() as conn:
            if _schema.installed_version(conn, self.schema) == _schema.latest_version():
                return
            applied = _schema.migrate(conn, self.schema)
        if applied:
            log.info("namespace %s: applied schema migrations %s", self.namespace, applied)

    def migrate(self) -> list[int]:
        """Apply the schema migrations this namespace lacks; returns the versions applied."""
        with self._pool.connection() as conn:
            return _schema.migrate(conn, self.schema)

    def require_schema(self) -> None:
        """Raise ``ConfigError`` (and close) unless the namespace is installed and at this
        laneway's migration: for callers that must not create or change the schema."""
        version = self.schema_version()
        try:
            if version is None:
                raise ConfigError(
                    f"no laneway namespace {self.namespace!r} in this PostgreSQL database "
                    "(check the URL and the namespace; `laneway migrate` creates it)"
                )
            _schema.refuse_newer(self.schema, version)
            if version < _schema.latest_version():
                raise ConfigError(
                    f"namespace {self.namespace!r} is at migration {version}, this laneway needs "
                    f"{_schema.latest_version()}: run `laneway migrate` (a worker also migrates it when it starts)"
                )
        except ConfigError:
            self.close()
            raise

    def schema_version(self) -> int | None:
        """The namespace's installed migration version (None if never installed)."""
        with self._pool.connection() as conn:
            return _schema.installed_version(conn, self.schema)

    def _poke(self) -> None:
        self._rows(self._q.notify, [self.channel, ""])

    # --- enqueue --------------------------------------------------------------------------

    def enqueue(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[EnqueueResult]:
        if not jobs:
            return []
        if connection is not None:
            params = [*enqueue_params(jobs), False]
            rows = self._in_callers(connection, self._q.enqueue, params).fetchall()
        else:
            rows = self._rows(self._q.enqueue, [*enqueue_params(jobs), True])
        return [EnqueueResult(row[0], row[1]) for row in rows]

    async def enqueue_async(self, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        """``enqueue`` on a native ``psycopg.AsyncConnection`` of the running loop."""
        if not jobs:
            return []
        rows = await self._async.rows(self._q.enqueue, [*enqueue_params(jobs), True])
        return [EnqueueResult(row[0], row[1]) for row in rows]

    def claim_tick(self, name: str, tick: float, job: NewJob) -> bool:
        return bool(self._scalar(self._q.claim_tick, [name, tick, *enqueue_params([job])]))

    # --- claim and lease ------------------------------------------------------------------

    def claim(
        self,
        queues: Sequence[str],
        *,
        worker: str,
        limit: int,
        batch: int = 1,
        max_lanes: int | None = None,
        lease_s: float,
    ) -> list[JobRecord]:
        if limit <= 0 or not queues or (max_lanes is not None and max_lanes <= 0):
            return []
        params = claim_params(queues, worker, limit, batch, max_lanes, lease_s)
        return [to_record(row) for row in self._rows(self._q.claim, params)]

    def extend(self, tokens: Sequence[int], lease_s: float) -> list[bool]:
        if not tokens:
            return []
        return list(self._scalar(self._q.extend, [list(tokens), lease_s]))

    def finish(self, outcomes: Sequence[Outcome], *, connection: Any = None) -> list[bool]:
        if not outcomes:
            return []
        params = finish_params(outcomes)
        if connection is not None:
            row = self._in_callers(connection, self._q.finish, params).fetchone()
            return list(row[0]) if row else [False] * len(outcomes)
        return list(self._scalar(self._q.finish, params))

    def finish_and_claim(
        self,
        outcomes: Sequence[Outcome],
        queues: Sequence[str],
        *,
        worker: str,
        limit: int,
        batch: int = 1,
        lease_s: float,
    ) -> tuple[list[bool], list[JobRecord]]:
        """``finish`` then ``claim`` in one round trip and one transaction (one commit).

        If that call fails, the outcomes are sent again on their own (an outcome that did
        commit is then reported refused, which only costs a log line) and no job is
        returned; the jobs a lost reply had claimed come back when their lease runs out.
        """
        if limit <= 0 or not queues:
            return self.finish(outcomes), []
        params = [*finish_params(outcomes), list(queues), worker, limit, max(batch, 1), lease_s]
        try:
            rows = self._rows(self._q.finish_and_claim, params)
        except psycopg.Error:
            log.exception("finish_and_claim failed; sending the outcomes on their own")
            return self.finish(outcomes), []
        accepted = list(rows[0][0]) if rows else []
        return accepted, [to_record(row[1:]) for row in rows if row[1] is not None]

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection inside an open transaction: committed when the block ends
        normally, rolled back when it raises. Pass it as ``connection=`` to ``enqueue``
        and ``finish`` so they commit (or not) with the caller's own writes."""
        with self._pool.connection() as conn, conn.transaction():
            yield conn

    def sweep(self, *, worker: str | None = None) -> int:
        """Recover expired leases, prune expired results, and move due work into its lanes
        (claims do a little of that on the way; a burst of transactional enqueues or of
        delayed jobs coming due is joined here, in the background)."""
        recovered = int(self._scalar(self._q.sweep, [worker, SWEEP_LEASES]) or 0)
        for _ in range(PRUNE_BATCHES):
            if int(self._scalar(self._q.prune, [PRUNE_BATCH]) or 0) < PRUNE_BATCH:
                break
        self.promote(budget=PROMOTE_BATCHES)
        return recovered

    def wait(self, queues: Sequence[str], timeout_s: float) -> None:
        if timeout_s <= 0 or self._closed:
            return
        due_in = self._scalar(self._q.due_in, [list(queues)])
        self._listener.wait(queues, until_due(timeout_s, due_in, OVERDUE_WAIT_S))

    def wait_and_claim(
        self,
        queues: Sequence[str],
        timeout_s: float,
        *,
        worker: str,
        limit: int,
        batch: int = 1,
        lease_s: float,
    ) -> list[JobRecord]:
        """Wait for a notification on a ``LISTEN`` connection of the calling worker's own
        and claim on that same connection the moment anything arrives: no thread
        hand-off and no cold server process on the pickup path. One thread at a time
        (a second concurrent caller gets the plain ``wait`` then ``claim``)."""
        if limit <= 0 or not queues or self._closed:
            return []
        if not self._waiter_lock.acquire(blocking=False):
            return super().wait_and_claim(
                queues, timeout_s, worker=worker, limit=limit, batch=batch, lease_s=lease_s
            )
        try:
            params = claim_params(queues, worker, limit, batch, None, lease_s)
            return self._waiter.wait_and_claim(queues, timeout_s, params)
        finally:
            self._waiter_lock.release()

    def promote(self, queues: Sequence[str] | None = None, *, budget: int = 1) -> int:
        """Move due delayed jobs and waiting laned jobs of ``queues`` (default: every queue)
        into their lanes now, in at most ``budget`` batches of ``PROMOTE_BATCH``. Enqueues
        and claims do this on the way; ``sweep`` does it in the background and ``stats`` and
        ``lanes`` first, so that they count every lane. Returns how many jobs moved."""
        total = 0
        for _ in range(budget):
            if queues is None:
                moved = int(self._scalar(self._q.promote_all, [PROMOTE_BATCH]) or 0)
            else:
                moved = int(self._scalar(self._q.promote, [list(queues), PROMOTE_BATCH]) or 0)
            total += moved
            if moved < PROMOTE_BATCH:
                break
        return total

    # --- inspect and operate ----------------------------------------------------------------

    def now(self) -> float:
        return float(self._rows(_NOW)[0][0])

    def get_job(self, job_id: str) -> JobRecord | None:
        rows = self._rows(self._q.get_job, [job_id])
        return to_record(rows[0]) if rows else None

    def list_jobs(
        self,
        *,
        queue: str | None = None,
        status: Status | None = None,
        lane: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[JobRecord]:
        limit, offset, status = page_args(limit, offset, status)
        where: list[sql.Composable] = []
        params: list[Any] = []
        if queue is not None:
            where.append(sql.SQL("j.queue = %s"))
            params.append(queue)
        if status is not None:
            where.append(_STATUS_FILTER.get(status, sql.SQL("j.status = %s")))
            if status not in _STATUS_FILTER:
                params.append(status.value)
        if lane is not None:
            where.append(sql.SQL("j.lane = %s"))
            params.append(lane)
        query = self._q.list_jobs
        if where:
            query = query + sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where)
        query = query + sql.SQL(" ORDER BY j.nid DESC LIMIT %s OFFSET %s")
        return [to_record(row) for row in self._rows(query, [*params, limit, offset])]

    def cancel(self, job_id: str) -> bool:
        return bool(self._scalar(self._q.cancel, [job_id]))

    def retry(self, job_id: str) -> bool:
        return bool(self._scalar(self._q.retry, [job_id]))

    def purge(self, *, status: Status = Status.DEAD, queue: str | None = None) -> int:
        if status.pending:
            raise ConfigError(f"purge takes a final status, not {status.value!r}")
        total = 0
        while (deleted := int(self._scalar(self._q.purge, [status.value, queue, PURGE_BATCH]) or 0)) > 0:
            total += deleted
        return total

    def _promote_to_read(self, queues: Sequence[str] | None = None) -> None:
        """``promote`` before a read, so it counts every lane; skipped for a role that may
        only read (the operator commands), whose counts then show due laned jobs as queued
        but their lanes only once a worker has promoted them."""
        try:
            self.promote(queues)
        except psycopg.errors.InsufficientPrivilege:
            log.debug("this role may not promote due jobs; reading without", exc_info=True)

    def stats(self) -> list[QueueStats]:
        self._promote_to_read()
        return [_queue_stats(row) for row in self._rows(self._q.stats)]

    def lanes(self, queue: str, *, limit: int = 100) -> list[LaneInfo]:
        limit = page_limit(limit)
        self._promote_to_read([queue])
        rows = self._rows(self._q.lanes, {"queue": queue, "limit": limit})
        return sorted((_lane_info(queue, row) for row in rows), key=lambda i: -i.head_age_s)

    def put_meta(self, key: str, value: bytes | None) -> None:
        if value is None:
            self._rows_no_result(self._q.del_meta, [key])
        else:
            self._rows_no_result(self._q.put_meta, [key, value])

    def _rows_no_result(self, query: sql.Composed, params: Sequence[Any]) -> None:
        with self._pool.connection() as conn:
            conn.execute(query, params)

    def get_meta(self, prefix: str) -> dict[str, bytes]:
        return {row[0]: bytes(row[1]) for row in self._rows(self._q.get_meta, [prefix])}

    # --- life cycle -------------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._waiter.closed = True
        self._listener.close()
        idle = self._waiter_lock.acquire(blocking=False)
        if not idle:  # a worker is waiting on the waiter's connection: wake it
            try:
                self._poke()
            except psycopg.Error:
                log.debug("could not poke the pickup wait; it ends within its timeout")
        if idle or self._waiter_lock.acquire(timeout=_WAITER_CLOSE_S):
            try:
                self._waiter.close()
            finally:
                self._waiter_lock.release()
        self._async.close()
        self._pool.close()

    def drop_namespace(self) -> None:
        """Delete the namespace's schema and everything in it (tests, teardown)."""
        with self._pool.connection() as conn:
            _schema.drop(conn, self.schema)


_NOW = sql.SQL("SELECT extract(epoch FROM clock_timestamp())::float8").format()
_STATUS_FILTER: dict[Status, sql.Composable] = {
    Status.SCHEDULED: sql.SQL("j.status = 'waiting' AND j.run_at > clock_timestamp()"),
    Status.QUEUED: sql.SQL(
        "(j.status = 'queued' OR (j.status = 'waiting' AND j.run_at <= clock_timestamp()))"
    ),
}


def _queue_stats(r: tuple[Any, ...]) -> QueueStats:
    return QueueStats(
        queue=r[0], scheduled=r[1], queued=r[2], running=r[3], retrying=r[4], succeeded=r[5],
        dead=r[6], cancelled=r[7], oldest_queued_age_s=r[8], lanes=r[9],
    )  # fmt: skip


def _lane_info(queue: str, r: tuple[Any, ...]) -> LaneInfo:
    return LaneInfo(
        queue=queue, lane=r[0], held=r[1], head_id=r[2], head_status=Status(r[3]), head_attempts=r[4],
        head_age_s=r[5], depth=r[6], blocked=r[3] == Status.DEAD.value,
    )  # fmt: skip
