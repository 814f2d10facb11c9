"""Wake-ups without polling: one ``LISTEN`` connection per backend, read by one thread.

The SQL functions ``pg_notify`` the namespace's channel with a queue name whenever work
on that queue may have become ready. The listener thread counts notifications per queue;
``wait`` blocks until the count for one of its queues moves. Each thread remembers the
counts it last returned on, so a notification that arrives while the thread is busy
(between a claim that found nothing and the next ``wait``) is not lost: that ``wait``
returns at once. When the connection breaks, the thread reconnects and wakes everyone
(notifications sent meanwhile are gone), and until it is back ``wait`` simply sleeps.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import psycopg
from psycopg import sql

log = logging.getLogger("laneway.postgres")

_RECONNECT_S = 0.5
_READ_S = 5.0
_START_S = 5.0


class Listener:
    """Reads notifications of ``channel`` on a dedicated connection to ``url``.

    Args:
        url: libpq connection string or URL.
        channel: the channel name (unquoted).
        poke: sends one notification on ``channel`` (used to unblock the thread on close).
    """

    def __init__(self, url: str, channel: str, poke: Callable[[], None]) -> None:
        self._url = url
        self._channel = channel
        self._poke = poke
        self._cond = threading.Condition()
        self._counts: dict[str, int] = {}
        self._epoch = 0
        self._seen = threading.local()
        self._thread: threading.Thread | None = None
        self._listening = threading.Event()
        self._stop = threading.Event()

    def _stamp(self, queues: Sequence[str]) -> int:
        return self._epoch + sum(self._counts.get(q, 0) for q in queues)

    def wait(self, queues: Sequence[str], timeout_s: float) -> None:
        """Block until a notification for one of ``queues`` arrives or ``timeout_s`` passes."""
        self._ensure_started()
        key = tuple(queues)
        seen: dict[tuple[str, ...], int] = self._seen.__dict__.setdefault("stamps", {})
        with self._cond:
            stamp = self._stamp(queues)
            if seen.get(key) != stamp:
                seen[key] = stamp
                return
            self._cond.wait_for(lambda: self._stop.is_set() or self._stamp(queues) != stamp, timeout_s)
            seen[key] = self._stamp(queues)

    def _ensure_started(self) -> None:
        if self._thread is not None or self._stop.is_set():
            return
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="laneway-pg-listen", daemon=True)
                self._thread.start()
        self._listening.wait(_START_S)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except psycopg.Error as exc:
                if self._stop.is_set():
                    return
                log.warning("LISTEN connection lost (%s); reconnecting", exc)
            self._wake_all()
            self._stop.wait(_RECONNECT_S)

    def _listen(self) -> None:
        with psycopg.connect(self._url, autocommit=True) as conn:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
            self._wake_all()
            self._listening.set()
            while not self._stop.is_set():
                for note in conn.notifies(timeout=_READ_S):
                    if self._stop.is_set():
                        return
                    self._count(note.payload)

    def _count(self, queue: str) -> None:
        with self._cond:
            self._counts[queue] = self._counts.get(queue, 0) + 1
            self._cond.notify_all()

    def _wake_all(self) -> None:
        with self._cond:
            self._epoch += 1
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the thread and close its connection; waiters return at once."""
        self._stop.set()
        self._wake_all()
        thread = self._thread
        if thread is None:
            return
        try:
            self._poke()
        except psycopg.Error:
            log.debug("could not poke the listener; it stops within %s s", _READ_S)
        thread.join(_READ_S + 1)
