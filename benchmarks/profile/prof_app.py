"""The profiled app: the harness's task (one INCR on PROF_PROBE per job) or, with PROF_PURE=1, a no-op."""

import os

import redis

import laneway

app = laneway.App(os.environ["PROF_URL"], namespace=os.environ.get("PROF_NS", "prof"))
PURE = os.environ.get("PROF_PURE") == "1"
_clients: dict[int, redis.Redis] = {}


@app.task(queue="bench", name="noop")
def noop(lat=0):
    if PURE:
        return
    client = _clients.get(os.getpid())
    if client is None:
        client = _clients[os.getpid()] = redis.Redis.from_url(os.environ["PROF_PROBE"])
    client.incr("bench:done")
