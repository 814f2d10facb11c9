"""``SQLiteBackend``: the backend contract on one SQLite file (see the package docstring)."""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..._errors import ConfigError, LanewayError
from ..._names import check_namespace
from ..._records import EnqueueResult, JobRecord, LaneInfo, NewJob, Outcome, QueueStats, Status
from .._base import Backend, page_args, page_limit
from . import _inspect as inspect
from . import _ops as ops
from ._db import CLOCK_TICK_S, Database, clock, in_savepoint, is_busy, parse_url
from ._schema import drop_namespace, ensure_schema, require_schema
from ._sql import Sql

DEFAULT_BUSY_TIMEOUT_S = 30.0
"""How long one operation keeps retrying while other processes hold the write lock."""
WAIT_POLL_MIN_S = 0.002
"""First pause of ``wait`` between looks at the file's change counter."""
WAIT_POLL_MAX_S = 0.008
"""Longest pause of ``wait`` between looks (bounds pickup latency; ~125 cheap reads/s)."""


class SQLiteBackend(Backend):
    """Jobs, lanes and leases in one SQLite file in WAL mode, shared by any number of
    threads and processes on one machine.

    Args:
        url: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``; the options
            ``?synchronous=NORMAL`` and ``?busy_timeout_s=10`` override the arguments below.
        namespace: prefix of every table (``[a-z][a-z0-9_-]{0,39}``).
        synchronous: SQLite's ``synchronous`` level for every connection. ``FULL`` (default)
            syncs the WAL at every commit: an acknowledged enqueue survives power loss.
            ``NORMAL`` survives any crash of the processes (``kill -9``) but may lose the
            last commits on power loss or an OS crash; it is several times faster.
        busy_timeout_s: how long an operation retries while other processes write.
        create: create or migrate the namespace's tables when needed (default); with
            False the namespace must exist at this laneway's version, and nothing is
            written on opening (the operator commands open it so).

    Raises:
        ConfigError: for an invalid URL, option or namespace, an ``sqlite:///:memory:`` URL
            (it cannot be shared between workers), a file that cannot be opened or (unless
            ``create=False``) written, or a file written by a newer laneway; with
            ``create=False``, a namespace missing or older.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str,
        synchronous: str = "FULL",
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
        create: bool = True,
    ) -> None:
        settings = parse_url(url, synchronous=synchronous, busy_timeout_s=busy_timeout_s)
        if create and os.path.exists(settings.path) and not os.access(settings.path, os.W_OK):
            raise ConfigError(  # else it opens, and every write fails with a bare sqlite3 error
                f"the SQLite database {settings.path!r} is read-only for this process (user "
                f"{os.getuid()}): workers and producers need to write it"
            )
        self.url = url
        self.namespace = check_namespace(namespace)
        self._sql = Sql(self.namespace)
        self._db = Database(settings)
        self._names = {settings.path, os.path.realpath(settings.path)}  # parse_url made it absolute
        try:
            if create:
                self.schema_version = ensure_schema(self._db, self.namespace)
            else:
                self.schema_version = require_schema(self._db, self.namespace)
        except BaseException:
            self._db.close()
            raise

    def __repr__(self) -> str:
        return f"<SQLiteBackend {self._db.settings.path} namespace={self.namespace}>"

    @property
    def path(self) -> str:
        """The database file."""
        return self._db.settings.path

    # --- enqueue -----------------------------------------------------------------------

    def enqueue(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[EnqueueResult]:
        if connection is not None:
            conn = self._caller_transaction(connection)
            return ops.enqueue(conn, self._sql, clock(conn), jobs)
        if not jobs:
            return []
        return self._db.write(lambda conn, now: ops.enqueue(conn, self._sql, now, jobs), "enqueue")

    def claim_tick(self, name: str, tick: float, job: NewJob) -> bool:
        return self._db.write(
            lambda conn, now: ops.claim_tick(conn, self._sql, now, name, tick, job), "claim_tick"
        )

    # --- claim and lease -------------------------------------------------------------------

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
        queues = list(queues)
        # A read first: idle workers must not queue for the write lock to learn "nothing".
        if not self._db.read(lambda conn: inspect.claimable(conn, self._sql, queues, clock(conn))):
            return []

        def body(conn: sqlite3.Connection, now: float) -> list[JobRecord]:
            return ops.claim(
                conn, self._sql, now, queues, worker=worker, limit=limit, batch=max(1, batch),
                max_lanes=max_lanes, lease_s=lease_s,
            )  # fmt: skip

        return self._db.write(body, "claim")

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
        """``finish`` then ``claim`` in one transaction: one commit (one disk sync with
        ``synchronous=FULL``) per ack-and-refill of a worker. The claim runs in a savepoint:
        if it fails, the outcomes still commit and no jobs are returned."""
        if not outcomes:
            return super().finish_and_claim(
                outcomes, queues, worker=worker, limit=limit, batch=batch, lease_s=lease_s
            )
        queues = list(queues)

        def body(conn: sqlite3.Connection, now: float) -> tuple[list[bool], list[JobRecord]]:
            accepted = ops.finish(conn, self._sql, now, outcomes)
            if limit <= 0 or not queues:
                return accepted, []
            claim = functools.partial(
                ops.claim, conn, self._sql, now, queues, worker=worker, limit=limit, batch=max(1, batch),
                max_lanes=None, lease_s=lease_s,
            )  # fmt: skip
            return accepted, in_savepoint(conn, claim, default=[])

        return self._db.write(body, "finish_and_claim")

    def extend(self, tokens: Sequence[int], lease_s: float) -> list[bool]:
        if not tokens:
            return []
        return self._db.write(lambda conn, now: ops.extend(conn, self._sql, now, tokens, lease_s), "extend")

    def finish(self, outcomes: Sequence[Outcome], *, connection: Any = None) -> list[bool]:
        if connection is not None:  # a write transaction: see ops.finish's ``held``
            conn = self._caller_transaction(connection)
            return ops.finish(conn, self._sql, clock(conn), outcomes, held=True)
        if not outcomes:
            return []
        return self._db.write(lambda conn, now: ops.finish(conn, self._sql, now, outcomes), "finish")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A connection inside an open ``BEGIN IMMEDIATE`` transaction: committed when the
        block ends, rolled back when it raises. Pass it as ``connection=`` to ``enqueue``
        and ``finish``. It holds the file's write lock for the whole block, so keep the
        block short; other laneway calls of this process wait for it (up to
        ``busy_timeout_s``)."""
        with self._db.connection() as conn, self._db.write_lock():
            self._db.begin(conn)
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if conn.in_transaction:
                conn.execute("COMMIT")

    def sweep(self, *, worker: str | None = None) -> int:
        if not self._db.read(lambda conn: ops.sweep_needed(conn, self._sql, clock(conn), worker)):
            return 0
        return self._db.write(lambda conn, now: ops.sweep(conn, self._sql, now, worker), "sweep")

    def wait(self, queues: Sequence[str], timeout_s: float) -> None:
        deadline = time.monotonic() + max(0.0, timeout_s)
        try:
            with self._db.connection() as conn:
                self._wait_on(conn, list(queues), deadline)
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
        except (sqlite3.ProgrammingError, LanewayError):
            if not self._db.closed:
                raise

    def _wait_on(self, conn: sqlite3.Connection, queues: list[str], deadline: float) -> None:
        """Sleep in short naps, looking at the change counter between them; look at the
        tables again only when another connection committed something."""
        version = inspect.data_version(conn)
        while True:
            now, read_at = clock(conn), time.monotonic()
            due = inspect.work_state(conn, self._sql, queues, now)
            if due is not None and due <= now:
                return
            nap = WAIT_POLL_MIN_S
            while True:
                left = deadline - time.monotonic()
                if due is not None:  # due on the backend's clock, counted down locally
                    left = min(left, due - now - (time.monotonic() - read_at) + CLOCK_TICK_S)
                if left <= 0:
                    return
                time.sleep(min(nap, left))
                nap = min(nap * 2, WAIT_POLL_MAX_S)
                changed = inspect.data_version(conn)
                if changed != version:
                    version = changed
                    break

    # --- inspect and operate -----------------------------------------------------------------

    def now(self) -> float:
        """The machine's wall clock as SQLite reads it: every process of one machine shares it."""
        return self._db.read(clock)

    def get_job(self, job_id: str) -> JobRecord | None:
        return self._db.read(lambda conn: inspect.get_job(conn, self._sql, job_id))

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
        return self._db.read(
            lambda conn: inspect.list_jobs(
                conn, self._sql, queue=queue, status=status, lane=lane, limit=limit, offset=offset
            )
        )

    def cancel(self, job_id: str) -> bool:
        return self._db.write(lambda conn, now: ops.cancel(conn, self._sql, now, job_id), "cancel")

    def retry(self, job_id: str) -> bool:
        return self._db.write(lambda conn, now: ops.retry(conn, self._sql, now, job_id), "retry")

    def purge(self, *, status: Status = Status.DEAD, queue: str | None = None) -> int:
        if status.pending:
            raise ConfigError(f"purge takes a final status, not {status.value!r}")
        return self._db.write(lambda conn, _now: ops.purge(conn, self._sql, status, queue), "purge")

    def stats(self) -> list[QueueStats]:
        return self._db.read_snapshot(lambda conn: inspect.stats(conn, self._sql, clock(conn)))

    def lanes(self, queue: str, *, limit: int = 100) -> list[LaneInfo]:
        limit = page_limit(limit)
        return self._db.read_snapshot(lambda conn: inspect.lanes(conn, self._sql, clock(conn), queue, limit))

    def put_meta(self, key: str, value: bytes | None) -> None:
        def put(conn: sqlite3.Connection, _now: float) -> None:
            if value is None:
                conn.execute(self._sql.delete_meta, (key,))
            else:
                conn.execute(self._sql.put_meta, (key, bytes(value)))

        self._db.write(put, "put_meta")

    def get_meta(self, prefix: str) -> dict[str, bytes]:
        return self._db.read(lambda conn: inspect.get_meta(conn, self._sql, prefix))

    def close(self) -> None:
        self._db.close()

    def drop_namespace(self) -> None:
        """Drop every table of this namespace (tests and tear-down)."""
        drop_namespace(self._db, self.namespace)

    # --- the caller's transaction --------------------------------------------------------------

    def _caller_transaction(self, connection: Any) -> sqlite3.Connection:
        """Check that ``connection`` is an ``sqlite3.Connection`` to this file, and make
        sure a transaction is open on it (never committed here)."""
        if not isinstance(connection, sqlite3.Connection):
            raise ConfigError(
                f"connection= must be an sqlite3.Connection to {self.path!r}, not {type(connection).__name__}"
            )
        main = [row[2] for row in connection.execute("PRAGMA database_list") if row[1] == "main"]
        if not main or (main[0] not in self._names and not _same_file(main[0], self.path)):
            raise ConfigError(f"connection= is open on {main[0] if main else '?'!r}, not on {self.path!r}")
        if not connection.in_transaction:
            if connection.isolation_level is None or getattr(connection, "autocommit", None) is True:
                raise ConfigError(
                    "connection= is in autocommit mode with no open transaction: run BEGIN IMMEDIATE "
                    "on it first (or use backend.transaction())"
                )
            self._db.begin(connection)
        return connection


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
