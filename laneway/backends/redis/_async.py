"""Native asyncio commands to one Redis server, for ``enqueue_async``.

The single-server link's lean path (``_link.py``) on redis-py's asyncio connections: per
event loop, a stack of idle connections; the commands encoded once with hiredis and sent
with ``send_packed_command``; the replies read by the connection's parser. Its rules too:
a lost connection is retried on fresh ones for up to ``RECONNECT_S``, and ``NOSCRIPT`` is
repaired by loading the script. redis-py's asyncio client spends about twice the CPU per
call on its pool and its per-argument encoder (``benchmarks/PROFILE.md`` section 10).

A loop opens at most ``MAX_CONNECTIONS`` connections; callers beyond that wait for one.
A call cancelled mid-round-trip closes its connection (its reply would be read by the
next caller otherwise); whether the server ran the command is then unknown, as for any
cancelled network call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from .._loops import PerLoop
from ._link import Command, Conns, Link, Reconnect, packed_commands

MAX_CONNECTIONS = 100
"""Most connections one event loop opens to the server, as redis-py's pools allow. With
100 calls in flight a cap of 32 measured about 15 % fewer calls per second than 100."""


class _Conns:
    """One event loop's connections: the shared bookkeeping and the cap."""

    def __init__(self, url: str) -> None:
        factory: Any = redis.asyncio.ConnectionPool.from_url(url, decode_responses=False)
        self.stack = Conns(factory.make_connection)
        self.slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def drop(self, conn: Any) -> None:
        self.stack.forget(conn)
        await conn.disconnect(nowait=True)

    async def drop_idle(self) -> None:
        for conn in self.stack.forget_idle():
            await conn.disconnect(nowait=True)

    async def shut(self) -> None:
        for conn in self.stack.forget_all():
            await conn.disconnect(nowait=True)


class AsyncLink:
    """Pipelined commands from any event loop to the server of ``link`` (whose registered
    scripts it loads when the server lacks them)."""

    def __init__(self, url: str, link: Link) -> None:
        self._link = link

        async def open_conns() -> _Conns:
            return _Conns(url)

        self._loops: PerLoop[_Conns] = PerLoop(
            open_conns, _Conns.shut, errors=(RedisConnectionError, OSError)
        )

    async def pipeline(self, cmds: Sequence[Command]) -> list[Any]:
        """Run ``cmds`` in one round trip; error replies are returned, not raised."""
        conns = await self._loops.get()
        async with conns.slots:
            replies = await self._roundtrip(conns, cmds)
            missing = self._link.missing_scripts(cmds, replies)
            if missing:
                for sha in {cmds[i][1] for i in missing}:
                    await self._roundtrip(conns, [("SCRIPT", "LOAD", self._link.script_body(sha))])
                again = await self._roundtrip(conns, [cmds[i] for i in missing])
                for i, reply in zip(missing, again, strict=True):
                    replies[i] = reply
        return replies

    async def _roundtrip(self, conns: _Conns, cmds: Sequence[Command]) -> list[Any]:
        retry = Reconnect()
        while True:
            conn, reused = conns.stack.take()
            try:
                await conn.send_packed_command(packed_commands(conn, cmds), check_health=False)
                replies: list[Any] = []
                for _ in cmds:
                    try:
                        replies.append(await conn.read_response())
                    except ResponseError as exc:
                        replies.append(exc)
            except (RedisConnectionError, OSError):
                await conns.drop(conn)
                pause = retry.pause(reused)
                if pause is None:
                    raise
                if reused:
                    await conns.drop_idle()
                await asyncio.sleep(pause)
                continue
            except BaseException:
                await conns.drop(conn)
                raise
            conns.stack.give_back(conn)
            return replies

    def close(self) -> None:
        """Close the connections of every loop that can still run the close."""
        self._loops.close()
