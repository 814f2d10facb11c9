"""Connections to one SQLite file: URL parsing, a per-process pool, and busy retries.

Every write runs in a ``BEGIN IMMEDIATE`` transaction through :meth:`Database.write`:

- Threads of one process take a process-wide lock before they ask SQLite for the write
  lock, so they queue on a cheap ``threading.Lock`` instead of spinning on
  ``SQLITE_BUSY`` against each other; the bodies queued behind the lock run together in
  the next transaction, one savepoint each, with one commit (group commit).
- Between processes, ``SQLITE_BUSY`` ("database is locked") is retried with jittered
  exponential backoff (0.1 ms up to 2 ms) until ``busy_timeout_s`` has passed. SQLite's
  own busy handler is switched off: its fixed sleeps (1, 2, 5, 10, ... 100 ms) cost more
  latency than the transactions they wait for.
- A transaction body may be run more than once (it is retried from the start after a
  busy error), so bodies only touch the database and their own return value.

Connections are pooled, one checked out per operation, so threads that come and go
(``asyncio.to_thread``) do not leak connections. After a ``fork`` the child opens fresh
connections and never touches the parent's (SQLite forbids using a connection across a
fork).
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from ..._checks import seconds
from ..._errors import ConfigError, LanewayError
from ..._timeouts import shielded

T = TypeVar("T")
log = logging.getLogger("laneway.backends.sqlite")

SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")
_BACKOFF_FIRST_S = 0.0001
_BACKOFF_MAX_S = 0.002
_BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (primary result codes)


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the database is and how to open it."""

    path: str
    synchronous: str
    busy_timeout_s: float


def parse_url(url: str, *, synchronous: str, busy_timeout_s: float) -> Settings:
    """Read ``sqlite:///relative.db`` or ``sqlite:////abs/path.db`` (``?synchronous=NORMAL``,
    ``?busy_timeout_s=10`` override the keyword arguments).

    Raises:
        ConfigError: for another scheme, a host part, an empty path, ``:memory:``, an
            unknown option or an invalid value.
    """
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise ConfigError(f"not an SQLite URL: {url!r} (use sqlite:///relative.db or sqlite:////abs/path.db)")
    if parts.netloc:
        raise ConfigError(f"SQLite URLs have no host: {url!r} (use three slashes: sqlite:///path.db)")
    path = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    if not path:
        raise ConfigError(f"SQLite URL {url!r} names no file (use sqlite:///path.db)")
    if path == ":memory:" or path.startswith("file:"):
        raise ConfigError(
            f"{url!r}: an in-memory SQLite database cannot be shared between workers; "
            "use memory:// for a single process or sqlite:///path.db for a file"
        )
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "synchronous":
            synchronous = value
        elif key == "busy_timeout_s":
            try:
                busy_timeout_s = float(value)
            except ValueError:
                raise ConfigError(f"busy_timeout_s must be a number of seconds, not {value!r}") from None
        else:
            raise ConfigError(f"unknown SQLite URL option {key!r} (known: synchronous, busy_timeout_s)")
    level = synchronous.upper()
    if level not in SYNCHRONOUS_LEVELS:
        raise ConfigError(f"synchronous must be one of {', '.join(SYNCHRONOUS_LEVELS)}, not {synchronous!r}")
    # One absolute path: a connection the pool opens after an os.chdir finds the same file.
    return Settings(os.path.abspath(path), level, seconds(busy_timeout_s, "busy_timeout_s"))


# SQLite keeps time as whole milliseconds; rounding undoes julianday's float noise (~50 us).
_CLOCK_SQL = "SELECT round((julianday('now') - 2440587.5) * 86400000.0) / 1000.0"
CLOCK_TICK_S = 0.001
"""SQLite's clock moves in whole milliseconds."""


def clock(conn: sqlite3.Connection) -> float:
    """The backend's clock: Unix seconds as SQLite reads the machine's clock (whole
    milliseconds), not the calling process's ``time.time()``, so a process whose Python
    clock is patched or skewed still measures deadlines on the one clock every process
    shares."""
    return cast(float, conn.execute(_CLOCK_SQL).fetchone()[0])


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite saying another connection holds a lock we need."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _BUSY_CODES
    text = str(exc)
    return "database is locked" in text or "database is busy" in text or "database table is locked" in text


class DatabaseBusy(LanewayError, sqlite3.OperationalError):
    """Another process held the database's write lock for longer than ``busy_timeout_s``."""


GROUP_MAX = 64
"""Most queued write bodies one transaction runs (group commit)."""


@dataclass(eq=False, slots=True)
class _Write:
    """One caller's transaction body waiting for a group commit."""

    body: Callable[[sqlite3.Connection, float], Any]
    done: bool = False
    result: Any = None
    error: BaseException | None = None


def in_savepoint(conn: sqlite3.Connection, step: Callable[[], T], *, default: T) -> T:
    """Run ``step()`` inside a savepoint of the open transaction; if it fails (other than
    busy, which fails the whole transaction so that it is retried), undo only its
    changes, log the error and return ``default``."""
    conn.execute("SAVEPOINT laneway_step")
    try:
        result = step()
    except sqlite3.OperationalError as exc:
        if is_busy(exc):
            raise
        conn.execute("ROLLBACK TO laneway_step")
        log.exception("a step of a transaction failed and was undone alone")
        result = default
    except Exception:
        conn.execute("ROLLBACK TO laneway_step")
        log.exception("a step of a transaction failed and was undone alone")
        result = default
    conn.execute("RELEASE laneway_step")
    return result


def _run_in_savepoint(conn: sqlite3.Connection, request: _Write) -> None:
    """Run one body of a group: its changes stay only if it does not raise."""
    conn.execute("SAVEPOINT laneway_write")
    try:
        request.result, request.error = request.body(conn, clock(conn)), None
    except sqlite3.OperationalError as exc:
        if is_busy(exc):
            raise  # the whole group is retried
        conn.execute("ROLLBACK TO laneway_write")
        request.error = exc
    except Exception as exc:  # noqa: BLE001 - delivered to the caller whose body raised it
        conn.execute("ROLLBACK TO laneway_write")
        request.error = exc
    conn.execute("RELEASE laneway_write")


_OPEN: weakref.WeakSet[Database] = weakref.WeakSet()  # closed before a fork (_before_fork)


def _before_fork() -> None:
    for db in list(_OPEN):
        db._close_idle()


os.register_at_fork(before=_before_fork)


class Database:
    """A pool of connections to one SQLite file (WAL mode) with retried write transactions.

    Fork-safe the way SQLite allows: before a fork the idle connections are closed (the
    parent reopens them on demand), so a child starts with none of the parent's, and
    SQLite's in-process lock bookkeeping, which a fork copies without the file locks it
    stands for, is not inherited. A child of a process that had a connection in use at
    the fork refuses to touch the file (``LanewayError``): it could not lock it safely.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool: list[sqlite3.Connection] = []
        self._all: list[sqlite3.Connection] = []
        self._inherited: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending: list[_Write] = []
        self._pending_lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False
        self._fork_unsafe = False  # a forked child that inherited a connection in use
        _OPEN.add(self)

    # --- connections -----------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.settings.path, timeout=0.0, isolation_level=None, check_same_thread=False,
                cached_statements=256,
            )  # fmt: skip
        except sqlite3.OperationalError as exc:
            raise ConfigError(f"cannot open SQLite database {self.settings.path!r}: {exc}") from exc
        # The level was checked against SYNCHRONOUS_LEVELS: a constant, not user text.
        pragma = f"PRAGMA synchronous = {self.settings.synchronous}"
        try:
            self.retrying(lambda: conn.execute(pragma), pragma)
        except BaseException:
            conn.close()
            raise
        return conn

    def _close_idle(self) -> None:
        """Close the pooled connections no thread is using (run before a fork)."""
        if os.getpid() != self._pid:
            return
        with self._pool_lock:
            idle, self._pool = self._pool, []
            self._all = [conn for conn in self._all if conn not in idle]
        for conn in idle:
            conn.close()

    def _after_fork(self) -> None:
        """In a forked child: forget the parent's connections without closing them (closing
        would touch the parent's locks); refuse if one was in use when the process forked."""
        if self._all or self._fork_unsafe:  # for good: _pid stays the parent's, so every call
            self._fork_unsafe = True  # of this process comes back here and is refused
            self._inherited.extend(self._all)
            self._all = []
            raise LanewayError(
                f"this process was forked while a thread used the SQLite database "
                f"{self.settings.path!r}; SQLite cannot lock the file safely here: open the App "
                "(or its backend) in the child, or fork before using it"
            )
        self._pool = []
        self._all = []
        self._pool_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending = []
        self._pending_lock = threading.Lock()
        self._pid = os.getpid()

    def _checkout(self) -> sqlite3.Connection:
        if os.getpid() != self._pid:
            self._after_fork()
        with self._pool_lock:
            if self._closed:
                raise LanewayError("this SQLite backend is closed")
            if self._pool:
                return self._pool.pop()
        conn = self._open()
        with self._pool_lock:
            if self._closed:
                conn.close()
                raise LanewayError("this SQLite backend is closed")
            self._all.append(conn)
        return conn

    def _checkin(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            conn.rollback()
        with self._pool_lock:
            if self._closed or conn not in self._all:
                return
            self._pool.append(conn)

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """A connection of this thread's own for the duration of the block (autocommit)."""
        conn = self._checkout()
        try:
            yield conn
        finally:
            self._checkin(conn)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Close every connection this process opened. Idempotent."""
        with self._pool_lock:
            self._closed = True
            conns = self._all if os.getpid() == self._pid else []
            self._all, self._pool = [], []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.ProgrammingError:  # a thread is still inside a statement
                pass

    # --- transactions ----------------------------------------------------------------

    def retrying(self, attempt: Callable[[], T], what: str) -> T:
        """Call ``attempt()`` until it does not fail with a busy error, sleeping with jittered
        exponential backoff in between; give up with ``DatabaseBusy`` after
        ``busy_timeout_s``. ``attempt`` must leave nothing half done when it fails."""
        deadline = time.monotonic() + self.settings.busy_timeout_s
        tries = 0
        while True:
            try:
                return attempt()
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise DatabaseBusy(
                        f"{what}: the SQLite database {self.settings.path!r} stayed locked for more "
                        f"than busy_timeout_s={self.settings.busy_timeout_s}"
                    ) from exc
            cap = min(_BACKOFF_MAX_S, _BACKOFF_FIRST_S * 2 ** min(tries, 16))
            time.sleep(random.uniform(cap / 2, cap))
            tries += 1

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Hold this process's writer lock (bounded by ``busy_timeout_s``)."""
        if os.getpid() != self._pid:
            self._after_fork()
        lock = self._write_lock
        acquired = False
        try:
            with shielded():  # a job's timeout cannot land between the acquire and the try
                acquired = lock.acquire(timeout=max(self.settings.busy_timeout_s, 0.001))
            if not acquired:
                raise DatabaseBusy(
                    f"another thread of this process held the SQLite write lock for more than "
                    f"busy_timeout_s={self.settings.busy_timeout_s} (an enqueue without connection= "
                    "inside backend.transaction()?)"
                )
            yield
        finally:
            if acquired:
                lock.release()

    def begin(self, conn: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE`` on ``conn``, retrying while another process writes."""
        self.retrying(lambda: conn.execute("BEGIN IMMEDIATE"), "BEGIN IMMEDIATE")

    def write(self, body: Callable[[sqlite3.Connection, float], T], what: str = "write") -> T:
        """Run ``body(conn, now)`` atomically in a ``BEGIN IMMEDIATE`` transaction and commit.

        Group commit: writers of this process queue their bodies; the thread that holds
        the process lock runs every queued body (up to ``GROUP_MAX``) in one transaction,
        each inside its own SAVEPOINT (still atomic on its own; an error fails only its
        caller), and commits once. With ``synchronous=FULL`` that is one disk sync for a
        claim, an ack batch and any concurrent enqueues together. Every caller returns
        only after the commit. ``now`` is read when the body runs, under the write lock.
        A busy error rolls the group back and runs it again (bounded by
        ``busy_timeout_s``); any other error reaches the callers.
        """
        with shielded():  # laneway's own work: a job's timeout waits for it (see _timeouts)
            return self._write(body, what)

    def _write(self, body: Callable[[sqlite3.Connection, float], T], what: str) -> T:
        if os.getpid() != self._pid:
            self._after_fork()
        request = _Write(body)
        with self._pending_lock:
            self._pending.append(request)
        if self._write_lock.acquire(timeout=max(self.settings.busy_timeout_s, 0.001)):
            try:
                while not request.done:
                    with self._pending_lock:
                        group, self._pending = self._pending[:GROUP_MAX], self._pending[GROUP_MAX:]
                    self._commit_group(group, what)
            finally:
                self._write_lock.release()
        else:
            with self._pending_lock:
                queued = request in self._pending
                if queued:
                    self._pending.remove(request)
            if queued:
                raise DatabaseBusy(
                    f"{what}: this process's SQLite write lock stayed held past busy_timeout_s="
                    f"{self.settings.busy_timeout_s} (an enqueue without connection= inside transaction()?)"
                )
            with self._write_lock:  # a group that took our body is running: it ends in bounded time
                pass
        if request.error is not None:
            raise request.error
        return cast(T, request.result)

    def _commit_group(self, group: list[_Write], what: str) -> None:
        with self.connection() as conn:

            def attempt() -> None:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if len(group) == 1:
                        group[0].result = group[0].body(conn, clock(conn))
                    else:
                        for request in group:
                            _run_in_savepoint(conn, request)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise

            try:
                self.retrying(attempt, what)
            except Exception as exc:  # noqa: BLE001 - every caller of the group gets it
                for request in group:
                    request.error = exc
            except BaseException as exc:
                for request in group:
                    request.error = exc
                raise
            finally:
                for request in group:
                    request.done = True

    def read(self, body: Callable[[sqlite3.Connection], T], what: str = "read") -> T:
        """Run ``body(conn)`` on an autocommit connection (each statement sees a snapshot),
        retrying on the rare busy error a WAL reader can meet."""
        with self.connection() as conn:
            return self.retrying(lambda: body(conn), what)

    def read_snapshot(self, body: Callable[[sqlite3.Connection], T], what: str = "read") -> T:
        """Like :meth:`read`, but every statement of ``body`` sees one snapshot."""

        def in_snapshot(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN")
            try:
                return body(conn)
            finally:
                conn.execute("COMMIT")

        return self.read(in_snapshot, what)
