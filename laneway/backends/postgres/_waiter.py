"""An idle worker's pickup: wait for ``NOTIFY`` and claim on the same connection.

The ``Listener`` serves ``wait`` for any number of threads: its thread reads the
notifications and wakes the waiters, who then claim through the pool. On the pickup path
that costs two thread wake-ups and a claim sent to a server process that has been asleep.
A worker's fetch loop instead waits on a connection of its own that ``LISTEN``s: it blocks
on that socket, and the moment anything arrives it sends the claim down the same
connection, to the server process that has just delivered the notification.

One thread at a time uses a ``Waiter`` (the backend hands it out under a lock). Only
notifications naming one of the queues being waited on (or the empty poke sent by
``close``) end a wait: a notification for another queue costs at most one empty claim.
"""

from __future__ import annotations

import selectors
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from ..._records import JobRecord
from ._queries import Queries
from ._rows import to_record


class Waiter:
    """A ``LISTEN`` connection to ``url`` on ``channel`` that waits, then claims.

    Args:
        url: libpq connection string or URL.
        channel: the namespace's notification channel (unquoted).
        queries: the namespace's statements (``due_in`` and ``claim`` are used).
        overdue_wait_s: how long to wait when due work is being promoted by another claim.
    """

    def __init__(self, url: str, channel: str, queries: Queries, overdue_wait_s: float) -> None:
        self._url = url
        self._channel = channel
        self._q = queries
        self._overdue_wait_s = overdue_wait_s
        self._conn: psycopg.Connection[Any] | None = None
        self._readable: selectors.BaseSelector | None = None  # watches the connection's socket
        self._queues: frozenset[str] = frozenset()
        self._notes = 0
        self._claimed_at = -1
        self.closed = False

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self._url, autocommit=True)
        try:
            conn.add_notify_handler(lambda note: self._note(note.payload))
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._readable = selectors.DefaultSelector()
        self._readable.register(conn.fileno(), selectors.EVENT_READ)
        self._claimed_at = -1  # notifications sent before LISTEN are lost: claim at once
        return conn

    def _note(self, payload: str) -> None:
        if payload in self._queues or not payload:
            self._notes += 1

    def wait_and_claim(
        self, queues: Sequence[str], timeout_s: float, claim_params: list[Any]
    ) -> list[JobRecord]:
        """Wait up to ``timeout_s`` (less when a delayed job comes due sooner) unless a
        notification for ``queues`` arrived since the last claim, then run the claim.

        Raises ``psycopg.Error`` when the connection fails (it is then dropped and the
        next call opens a new one); returns [] once the backend is closing.
        """
        self._queues = frozenset(queues)
        try:
            conn = self._conn or self._connect()
            if not self._notified_since_last_claim():
                self._wait(conn, queues, timeout_s)
            if self.closed:
                return []
            self._claimed_at = self._notes
            rows = conn.execute(self._q.claim, claim_params).fetchall()
        except psycopg.Error:
            self.close()
            raise
        return [to_record(row) for row in rows]

    def _notified_since_last_claim(self) -> bool:
        return self._notes != self._claimed_at

    def _wait(self, conn: psycopg.Connection[Any], queues: Sequence[str], timeout_s: float) -> None:
        row = conn.execute(self._q.due_in, [list(queues)]).fetchone()
        deadline = time.monotonic() + until_due(timeout_s, row[0] if row else None, self._overdue_wait_s)
        readable = self._readable
        assert readable is not None  # made with the connection
        while not self._notified_since_last_claim() and not self.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not readable.select(remaining):
                return
            pgconn = conn.pgconn
            pgconn.consume_input()  # raises when the server went away
            while (note := pgconn.notifies()) is not None:
                self._note(note.extra.decode())

    def close(self) -> None:
        """Close the connection (the next ``wait_and_claim`` opens a new one)."""
        conn, self._conn = self._conn, None
        readable, self._readable = self._readable, None
        if readable is not None:
            readable.close()
        if conn is not None:
            conn.close()


def until_due(timeout_s: float, due_in: float | None, overdue_wait_s: float) -> float:
    """How long a wait of ``timeout_s`` may last when the earliest delayed job is due in
    ``due_in`` seconds (None: nothing is delayed; due already: ``overdue_wait_s``, while
    another claim promotes it)."""
    return timeout_s if due_in is None else min(timeout_s, max(float(due_in), overdue_wait_s))
