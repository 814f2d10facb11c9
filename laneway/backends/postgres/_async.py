"""Native asyncio enqueue: one ``psycopg.AsyncConnection`` per event loop.

Each loop gets its own autocommit connection, opened on its first ``enqueue_async`` and
closed when that loop shuts down (see ``backends/_loops.py``). Calls from one loop share
the connection (psycopg serialises them); each call is one round trip and its own
transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from .._loops import PerLoop


async def _shut(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.close()


class AsyncEnqueuer:
    """Runs ``query`` with ``params`` on a per-loop autocommit ``AsyncConnection``."""

    def __init__(self, url: str) -> None:
        self._conns: PerLoop[psycopg.AsyncConnection[Any]] = PerLoop(
            lambda: psycopg.AsyncConnection.connect(url, autocommit=True),
            _shut,
            alive=lambda conn: not conn.closed,
            errors=(psycopg.Error,),
        )

    async def rows(self, query: sql.Composed, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """One statement on this loop's connection (opened on first use)."""
        conn = await self._conns.get()
        cur = await conn.execute(query, params)
        return await cur.fetchall()

    def close(self) -> None:
        """Close the connections whose loops can still run their close."""
        self._conns.close()
