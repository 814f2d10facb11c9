"""Redis ``enqueue_async`` on native asyncio connections: one set per event loop, capped,
closed with the loop, and as robust as the sync path (flushed scripts, a restarted
server, a cancelled call). Each test runs its own private server, so that the server's
client count is the backend's alone."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from laneway._records import NewJob, OnDead
from laneway.backends.redis import RedisBackend, _async, _link
from tests.support.redis_cluster import RedisServer


@pytest.fixture
def private() -> Iterator[RedisServer]:
    srv = RedisServer()
    yield srv
    srv.close()


@pytest.fixture
def backend(private: RedisServer) -> Iterator[RedisBackend]:
    b = RedisBackend(private.url, namespace="async")
    yield b
    b.close()


def _job(name: str, **kw: Any) -> NewJob:
    fields: dict[str, Any] = dict(
        id=name, task="t", queue="default", lane=None, priority=2, payload=b"{}", max_attempts=3,
        timeout_s=None, unique=None, result_ttl_s=60.0, on_dead=OnDead.SKIP,
    )  # fmt: skip
    fields.update(kw)
    return NewJob(**fields)


def _clients(url: str) -> int:
    """Connections to the server other than this probe's own."""
    with redis.Redis.from_url(url) as admin:
        return int(admin.info("clients")["connected_clients"]) - 1


def test_async_enqueue_stores_jobs_from_many_coroutines_and_closes_with_the_loop(
    backend: RedisBackend, private: RedisServer
) -> None:
    before = _clients(private.url)

    async def produce(tag: str) -> tuple[list[str], int]:
        batches = await asyncio.gather(
            *(backend.enqueue_async([_job(f"{tag}{i}", lane=f"l{i % 3}")]) for i in range(30))
        )
        return [r.id for batch in batches for r in batch], _clients(private.url)

    ids, during = asyncio.run(produce("a"))
    assert sorted(ids) == sorted(f"a{i}" for i in range(30))
    assert during > before, "the loop opened connections of its own"
    assert _clients(private.url) == before, "they closed when asyncio.run finished"
    more, _ = asyncio.run(produce("b"))
    assert len(more) == 30, "a second loop opens its own"
    assert sum(s.queued for s in backend.stats()) == 60


def test_a_loop_opens_no_more_than_the_cap_however_many_calls_are_in_flight(
    backend: RedisBackend, private: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_async, "MAX_CONNECTIONS", 3)
    before = _clients(private.url)

    async def produce() -> int:
        await asyncio.gather(*(backend.enqueue_async([_job(f"j{i}")]) for i in range(40)))
        return _clients(private.url) - before

    assert asyncio.run(produce()) == 3
    assert sum(s.queued for s in backend.stats()) == 40


def test_async_enqueue_honours_unique_keys(backend: RedisBackend) -> None:
    async def produce() -> list[tuple[str, bool]]:
        batches = await asyncio.gather(
            *(backend.enqueue_async([_job(f"j{i}", unique="once")]) for i in range(10))
        )
        return [(r.id, r.created) for batch in batches for r in batch]

    results = asyncio.run(produce())
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1


def test_async_enqueue_goes_on_after_the_script_cache_is_flushed(
    backend: RedisBackend, private: RedisServer
) -> None:
    async def produce() -> list[bool]:
        first = await backend.enqueue_async([_job("a")])
        with redis.Redis.from_url(private.url) as admin:
            admin.script_flush()
        second = await backend.enqueue_async([_job("b")])
        return [first[0].created, second[0].created]

    assert asyncio.run(produce()) == [True, True]
    assert [r.id for r in backend.claim(["default"], worker="w", limit=2, lease_s=30)] == ["a", "b"]


def test_async_enqueue_reconnects_on_the_same_loop_after_the_server_restarts(
    backend: RedisBackend, private: RedisServer
) -> None:
    async def produce() -> bool:
        await asyncio.gather(*(backend.enqueue_async([_job(f"old{i}")]) for i in range(5)))
        private.stop()
        private.start()  # no persistence: the data is gone, the loop's connections are stale
        return (await backend.enqueue_async([_job("new")]))[0].created

    assert asyncio.run(produce())
    assert [r.id for r in backend.claim(["default"], worker="w", limit=10, lease_s=30)] == ["new"]


def test_async_enqueue_gives_up_with_a_connection_error_when_the_server_stays_away(
    backend: RedisBackend, private: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_link, "RECONNECT_S", 0.5)

    async def produce() -> None:
        await backend.enqueue_async([_job("a")])
        private.stop()
        await backend.enqueue_async([_job("b")])

    with pytest.raises(RedisConnectionError):
        asyncio.run(produce())


def test_a_cancelled_call_does_not_leave_its_reply_for_the_next_caller(
    backend: RedisBackend, private: RedisServer
) -> None:
    assert private.proc is not None
    pid = private.proc.pid
    before = _clients(private.url)

    async def produce() -> tuple[str, bool, int]:
        await backend.enqueue_async([_job("warm")])  # one idle connection on this loop
        os.kill(pid, signal.SIGSTOP)
        try:
            pending = asyncio.create_task(backend.enqueue_async([_job("a", unique="u")]))
            await asyncio.sleep(0.2)  # sent, its reply not read: the server is stopped
            pending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pending
        finally:
            os.kill(pid, signal.SIGCONT)
        result = (await backend.enqueue_async([_job("b", unique="u")]))[0]
        for _ in range(50):  # the server reads the closed socket once it runs again
            extra = _clients(private.url) - before
            if extra <= 1:
                break
            await asyncio.sleep(0.05)
        assert extra == 1
        return result.id, result.created, (await backend._async._loops.get()).stack.opened

    # "a" ran once the server went on; "b" must read its own reply (the unique key is
    # taken by "a"), not the reply to "a" left on a reused connection (created). The
    # cancelled call's connection is closed and forgotten: only the one "b" used is left
    # open, and the loop's bookkeeping (which the cap and the close go by) counts only it.
    assert asyncio.run(produce()) == ("a", False, 1)


def test_the_cluster_backend_keeps_the_threaded_async_enqueue() -> None:
    from laneway.backends._base import Backend
    from laneway.backends.redis import RedisClusterBackend

    assert RedisClusterBackend.enqueue_async is Backend.enqueue_async
