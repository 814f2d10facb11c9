"""Shared settings (vendored from ../shared/bench; ports moved to 6391/54331 so the private
servers never collide with the machine's own Redis/Postgres or the shared harness's) and the task-side probe used by every system under test.

Every benchmarked task body is the same: record time.time() (latency samples
only) and INCR one counter in Redis.  The harness reads that counter to know
how many jobs have finished, for every system, Redis- or Postgres-backed.
"""

from __future__ import annotations

import asyncio
import os
import time

import redis

REDIS_HOST = os.environ.get("BENCH_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("BENCH_REDIS_PORT", "6391"))
REDIS_URL = os.environ.get("BENCH_REDIS_URL", f"redis://{REDIS_HOST}:{REDIS_PORT}/0")
PG_PORT = int(os.environ.get("BENCH_PG_PORT", "54331"))
PG_DSN = os.environ.get("BENCH_PG_DSN", f"postgresql://bench@127.0.0.1:{PG_PORT}/bench")

HERE = os.path.dirname(os.path.abspath(__file__))
# benchmarks/.run (server data, PID files, worker logs; git-ignored) and benchmarks/results
RUN_DIR = os.environ.get("BENCH_RUN_DIR", os.path.join(os.path.dirname(HERE), ".run"))
RESULTS_DIR = os.environ.get("BENCH_RESULTS_DIR", os.path.join(os.path.dirname(HERE), "results"))

DONE_KEY = "bench:done"  # INCR'd by every task
LAT_KEY = "bench:lat"  # latency jobs RPUSH their start time here

_sync = {"pid": None, "client": None}
_async: dict = {}


def _client() -> redis.Redis:
    if _sync["pid"] != os.getpid():  # new process (fork): new connection
        _sync["client"] = redis.Redis.from_url(REDIS_URL)
        _sync["pid"] = os.getpid()
    return _sync["client"]


def mark(lat=0) -> None:
    """Task body for sync libraries."""
    t = time.time()
    r = _client()
    if lat:
        r.rpush(LAT_KEY, repr(t))
    r.incr(DONE_KEY)


async def amark(lat=0) -> None:
    """Task body for asyncio libraries (one client per process and event loop)."""
    t = time.time()
    key = (os.getpid(), id(asyncio.get_running_loop()))
    r = _async.get(key)
    if r is None:
        import redis.asyncio as aredis

        r = _async[key] = aredis.Redis.from_url(REDIS_URL)
    if lat:
        await r.rpush(LAT_KEY, repr(t))
    await r.incr(DONE_KEY)


def control() -> redis.Redis:
    """Harness-side client (never used inside tasks)."""
    return redis.Redis.from_url(REDIS_URL, socket_timeout=120)


def reset_counters() -> None:
    r = control()
    r.delete(DONE_KEY, LAT_KEY)
    r.close()
