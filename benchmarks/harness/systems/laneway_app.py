"""laneway under the bench: the same no-op probe as every other system.

BENCH_LANEWAY_BACKEND picks the backend (redis: the bench Redis, postgres: the bench
Postgres, sqlite: a file in benchmarks/.run), BENCH_LANEWAY_URL overrides it;
BENCH_LANEWAY_NS is the namespace, changed by System.reset() so every phase starts empty.
BENCH_LANEWAY_HANDLER=async makes the task ``async def`` with the probe the harness gives
asyncio libraries (``amark``: one redis.asyncio INCR); the default is the sync probe (``mark``).

The task takes one extra argument for the mixed workload: ``retry=S`` makes its first
attempt ask for a retry after S seconds (its lane waits meanwhile, as lane order demands).
"""

import os

from common import PG_DSN, REDIS_URL, RUN_DIR, amark, mark

import laneway


def url() -> str:
    explicit = os.environ.get("BENCH_LANEWAY_URL")
    if explicit:
        return explicit
    backend = os.environ.get("BENCH_LANEWAY_BACKEND", "redis")
    if backend == "redis":
        return REDIS_URL
    if backend == "postgres":
        return PG_DSN
    if backend == "sqlite":
        return "sqlite:///" + os.path.join(RUN_DIR, "laneway-bench.db")
    raise SystemExit(f"unknown BENCH_LANEWAY_BACKEND {backend!r}")


def build(namespace: str):
    app = laneway.App(url(), namespace=namespace)

    if os.environ.get("BENCH_LANEWAY_HANDLER", "sync") == "async":

        @app.task(queue="bench", name="noop")
        async def anoop(lat=0, retry=0):
            if retry and laneway.current_job().attempts == 1:
                raise laneway.Retry(delay=retry)
            await amark(lat)

        return app, anoop

    @app.task(queue="bench", name="noop")
    def noop(lat=0, retry=0):
        if retry and laneway.current_job().attempts == 1:
            raise laneway.Retry(delay=retry)
        mark(lat)

    return app, noop


app, noop = build(os.environ.get("BENCH_LANEWAY_NS", "bench"))
