"""Native asyncio enqueue: one ``psycopg.AsyncConnection`` per event loop.

A connection belongs to the loop that opened it, so each loop gets its own, opened on its
first ``enqueue_async``. It is closed when that loop shuts down (``asyncio.run`` finalises
async generators, and a suspended one per loop holds the connection's ``finally``), or by
``close()`` when its loop is still usable. Calls from one loop share the connection (psycopg
serialises them); each call is one round trip and its own transaction.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger("laneway.postgres")


class AsyncEnqueuer:
    """Runs ``query`` with ``params`` on a per-loop autocommit ``AsyncConnection``."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._lock = threading.Lock()
        self._conns: dict[asyncio.AbstractEventLoop, psycopg.AsyncConnection[Any]] = {}
        self._keepers: dict[asyncio.AbstractEventLoop, AsyncIterator[None]] = {}
        self._opening: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    async def rows(self, query: sql.Composed, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """One statement on this loop's connection (opened on first use)."""
        conn = await self._connection()
        cur = await conn.execute(query, params)
        return await cur.fetchall()

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        loop = asyncio.get_running_loop()
        with self._lock:
            conn = self._conns.get(loop)
            opening = self._opening.setdefault(loop, asyncio.Lock())
        if conn is not None and not conn.closed:
            return conn
        async with opening:
            with self._lock:
                conn = self._conns.get(loop)
            if conn is not None and not conn.closed:
                return conn
            conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
            keeper = self._keep(loop, conn)
            await keeper.__anext__()
            with self._lock:
                self._conns[loop] = conn
                self._keepers[loop] = keeper
            return conn

    async def _keep(
        self, loop: asyncio.AbstractEventLoop, conn: psycopg.AsyncConnection[Any]
    ) -> AsyncIterator[None]:
        """Suspended for the loop's life; closes ``conn`` when the loop finalises it."""
        try:
            yield
        finally:
            with self._lock:
                if self._conns.get(loop) is conn:
                    del self._conns[loop]
                self._keepers.pop(loop, None)
                self._opening.pop(loop, None)
            await conn.close()

    def close(self) -> None:
        """Close every connection whose loop can still run its close. The per-loop
        keepers stay referenced so that their loops finalise them as usual."""
        with self._lock:
            pending = list(self._conns.items())
            self._conns.clear()
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for loop, conn in pending:
            if loop.is_closed():
                continue
            if loop is current:
                loop.create_task(conn.close())
                continue
            try:
                if loop.is_running():
                    asyncio.run_coroutine_threadsafe(conn.close(), loop).result(5.0)
                else:
                    loop.run_until_complete(conn.close())
            except (RuntimeError, TimeoutError, psycopg.Error) as exc:
                log.debug("could not close an async connection: %s", exc)
