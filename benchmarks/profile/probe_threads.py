"""What one Redis INCR costs a process when N threads (redis-py) or N coroutines (redis.asyncio)
make it at once: calls/s and CPU per call (user and system), 20,000 calls per row.

The last two rows model an async worker: 64 one-shot "jobs" (one ``redis.asyncio`` INCR each)
on an event loop, refilled by an acker that takes every finished job, makes one round trip for
the batch (a Lua loop costing ``--script-us`` per job on the server, like a finish-and-claim)
and starts as many new jobs. The acker is either a thread with redis-py, handing jobs to the
loop with ``call_soon_threadsafe`` (laneway's worker today), or a coroutine on the loop itself.

    python benchmarks/profile/probe_threads.py                  # the benchmarks' private Redis
    python benchmarks/profile/probe_threads.py --redis redis://127.0.0.1:6379/9

It only INCRs one key (``bench:probe``) on the server it is given.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import queue
import threading
import time
from collections.abc import Callable

import redis
import redis.asyncio as aredis

N = 20_000
KEY = "bench:probe"


def row(label: str, seconds: float, t0: os.times_result, t1: os.times_result, calls: int = N) -> None:
    user, system = (t1.user - t0.user) / calls * 1e6, (t1.system - t0.system) / calls * 1e6
    print(
        f"{label:32s} {calls / seconds:9,.0f} calls/s  {user + system:5.0f} us CPU/call  ({system:.0f} us system)"
    )


def threads(url: str, count: int) -> None:
    client = redis.Redis.from_url(url)
    client.incr(KEY)

    def work() -> None:
        for _ in range(N // count):
            client.incr(KEY)

    pool = [threading.Thread(target=work) for _ in range(count)]
    t0, start = os.times(), time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    row(f"redis-py, {count} threads", time.perf_counter() - start, t0, os.times())
    client.close()


async def coroutines(url: str, count: int) -> None:
    client = aredis.Redis.from_url(url)
    await client.incr(KEY)

    async def work() -> None:
        for _ in range(N // count):
            await client.incr(KEY)

    t0, start = os.times(), time.perf_counter()
    await asyncio.gather(*(work() for _ in range(count)))
    row(f"redis.asyncio, {count} in flight", time.perf_counter() - start, t0, os.times(), N // count * count)
    await client.aclose()


SPIN = "local n = 0 for i = 1, tonumber(ARGV[1]) do n = n + 1 end return n"


def spins_per_us(url: str) -> float:
    """Lua loop iterations the server runs per microsecond (so a round trip can cost a batch)."""
    client = redis.Redis.from_url(url)
    client.eval(SPIN, 0, 1)
    base = min(_timed(lambda: client.eval(SPIN, 0, 1)) for _ in range(50))
    big = 2_000_000
    took = min(_timed(lambda: client.eval(SPIN, 0, big)) for _ in range(5))
    client.close()
    return big / max(1.0, (took - base) * 1e6)


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


async def fed(url: str, slots: int, thread_acker: bool, spins_per_job: int) -> None:
    """N jobs through ``slots`` one-shot INCR jobs, refilled by a thread or a coroutine acker."""
    loop = asyncio.get_running_loop()
    client = aredis.Redis.from_url(url)
    await client.incr(KEY)
    done = asyncio.Event()
    # jobs started and finished; finished jobs not yet handed to the acker, and handed to
    # the coroutine acker but not yet sent (only their number matters to the model)
    state = {"started": 0, "finished": 0, "unsent": 0, "pending": 0}
    tasks: set[asyncio.Future[None]] = set()
    handoff: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    wakeup = asyncio.Event()

    async def job() -> None:
        await client.incr(KEY)
        state["finished"] += 1
        state["unsent"] += 1
        if state["unsent"] == 1:
            loop.call_soon(flush)
        if state["finished"] == N:
            done.set()

    def flush() -> None:
        batch, state["unsent"] = state["unsent"], 0
        if thread_acker:
            handoff.put(batch)
        else:
            state["pending"] += batch
            wakeup.set()

    def start(count: int) -> None:
        count = min(count, N - state["started"])
        state["started"] += count
        for _ in range(count):
            task = asyncio.ensure_future(job())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    def thread_loop() -> None:
        sync = redis.Redis.from_url(url)
        while True:
            first = handoff.get()
            if first is None:
                break
            batch = first
            while True:
                try:
                    more = handoff.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    handoff.put(None)
                    break
                batch += more
            sync.eval(SPIN, 0, spins_per_job * batch)
            loop.call_soon_threadsafe(start, batch)
        sync.close()

    async def coroutine_loop() -> None:
        other = aredis.Redis.from_url(url)
        while not done.is_set():
            await wakeup.wait()
            wakeup.clear()
            batch, state["pending"] = state["pending"], 0
            if batch:
                await other.eval(SPIN, 0, spins_per_job * batch)
                start(batch)
        await other.aclose()

    t0, begin = os.times(), time.perf_counter()
    if thread_acker:
        acker = threading.Thread(target=thread_loop)
        acker.start()
        start(slots)
        await done.wait()
        handoff.put(None)
        acker.join()
    else:
        runner = asyncio.ensure_future(coroutine_loop())
        start(slots)
        await done.wait()
        wakeup.set()
        await runner
    label = "thread acker" if thread_acker else "acker on the loop"
    row(f"{slots} jobs, {label}", time.perf_counter() - begin, t0, os.times())
    await client.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6391/0"))
    ap.add_argument("--script-us", type=float, default=50.0, help="server time per job of the acker's call")
    a = ap.parse_args()
    for count in (1, 2, 4, 8):
        threads(a.redis, count)
    for count in (1, 8, 32, 64):
        asyncio.run(coroutines(a.redis, count))
    spins = round(a.script_us * spins_per_us(a.redis))
    print(f"acker's round trip: {a.script_us:.0f} us per job on the server ({spins:,} Lua loop steps)")
    for _ in range(2):
        for thread_acker in (True, False):
            asyncio.run(fed(a.redis, 64, thread_acker, spins))


if __name__ == "__main__":
    main()
