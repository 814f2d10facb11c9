"""What one Redis INCR costs a process when N threads (redis-py) or N coroutines (redis.asyncio)
make it at once: calls/s and CPU per call (user and system), 20,000 calls per row.

    python benchmarks/profile/probe_threads.py                  # the benchmarks' private Redis
    python benchmarks/profile/probe_threads.py --redis redis://127.0.0.1:6379/9

It only INCRs one key (``bench:probe``) on the server it is given.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time

import redis
import redis.asyncio as aredis

N = 20_000
KEY = "bench:probe"


def row(label: str, seconds: float, t0: os.times_result, t1: os.times_result) -> None:
    user, system = (t1.user - t0.user) / N * 1e6, (t1.system - t0.system) / N * 1e6
    print(
        f"{label:24s} {N / seconds:9,.0f} calls/s  {user + system:5.0f} us CPU/call  ({system:.0f} us system)"
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
    row(f"redis.asyncio, {count} in flight", time.perf_counter() - start, t0, os.times())
    await client.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6391/0"))
    a = ap.parse_args()
    for count in (1, 2, 4, 8):
        threads(a.redis, count)
    for count in (1, 8, 32):
        asyncio.run(coroutines(a.redis, count))


if __name__ == "__main__":
    main()
