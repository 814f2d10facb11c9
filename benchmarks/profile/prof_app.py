"""The profiled app: the harness's task (one INCR on PROF_PROBE per job) or, with PROF_PURE=1, a no-op.

With PROF_ASYNC=1 the task is ``async def`` and its INCR goes through redis.asyncio (the
probe the harness gives asyncio libraries), so it runs on the worker's event loop.
"""

import asyncio
import os

import redis
import redis.asyncio as aredis

import laneway

app = laneway.App(os.environ["PROF_URL"], namespace=os.environ.get("PROF_NS", "prof"))
PURE = os.environ.get("PROF_PURE") == "1"
_clients: dict[int, redis.Redis] = {}
_aclients: dict[int, aredis.Redis] = {}

if os.environ.get("PROF_ASYNC") == "1":

    @app.task(queue="bench", name="noop")
    async def noop(lat=0):
        if PURE:
            return
        key = id(asyncio.get_running_loop())
        client = _aclients.get(key)
        if client is None:
            client = _aclients[key] = aredis.Redis.from_url(os.environ["PROF_PROBE"])
        await client.incr("bench:done")

else:

    @app.task(queue="bench", name="noop")
    def noop(lat=0):
        if PURE:
            return
        client = _clients.get(os.getpid())
        if client is None:
            client = _clients[os.getpid()] = redis.Redis.from_url(os.environ["PROF_PROBE"])
        client.incr("bench:done")
