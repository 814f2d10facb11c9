"""laneway adapter.

Environment:
  BENCH_LANEWAY_BACKEND  redis | postgres | sqlite (see laneway_app.py); BENCH_LANEWAY_URL overrides
  BENCH_LANEWAY_LANES    off     no lanes (the unordered baseline)
                         unique  every job on its own lane
                         hot<K>  jobs spread round-robin over K lanes (hot100: 100 deep lanes)
                         mixed   lanes of 20 jobs; 1% of the lanes wait on purpose: half of them
                                 have a head that asks for a retry after BENCH_LANEWAY_HOLD_S
                                 (the whole lane waits), half have one job delayed by as long
  BENCH_LANEWAY_LABEL    appended to the result's name (the ordered step's unordered controls:
                         "control1" before its workloads, "control2" after them)
  BENCH_LANEWAY_BATCH    worker --batch (consecutive jobs of one lane per claim), default 1
  BENCH_LANEWAY_HANDLER  sync (default: the probe of sync libraries) | async (an ``async def``
                         task with the asyncio probe, as arq, SAQ, taskiq and pgqueuer run it)
  BENCH_LANEWAY_CONCURRENCY  worker -c (slots per process); unset: the CLI's default (16 for the
                         sync task, 64 for the async one); a claim takes at most that many
                         jobs in all, so --batch B only pays with -c >= B. With the async
                         task keep it under 100: the probe's redis.asyncio client allows 100
                         connections per process (redis-py 8), one per INCR in flight, and
                         beyond that the probe raises and the jobs retry (measured: -c 128
                         drained at 2,343 jobs/s, -c 256 at 1,046, -c 64 at 6,120)
"""

import asyncio
import os
import subprocess
import time
import uuid

from common import RUN_DIR, reset_counters

from systems.base import HERE, SyncProducer, venv_bin
from systems.base import System as Base

LANES = os.environ.get("BENCH_LANEWAY_LANES", "off")
BATCH = int(os.environ.get("BENCH_LANEWAY_BATCH", "1"))
CONCURRENCY = int(os.environ.get("BENCH_LANEWAY_CONCURRENCY") or 0)  # 0: the CLI's default
BACKEND = os.environ.get("BENCH_LANEWAY_BACKEND", "redis")
HANDLER = os.environ.get("BENCH_LANEWAY_HANDLER", "sync")
LABEL = os.environ.get("BENCH_LANEWAY_LABEL", "")
HOLD_S = float(os.environ.get("BENCH_LANEWAY_HOLD_S", "10"))
PER_LANE_MIXED = 20


def lane_of(i: int, n: int):
    """The lane of job i of n (jobs of one lane keep their index order)."""
    if LANES == "off":
        return None
    if LANES == "unique":
        return f"u{i}"
    if LANES.startswith("hot"):
        return f"h{i % int(LANES[3:])}"
    if LANES == "mixed":
        return f"m{i % max(1, n // PER_LANE_MIXED)}"
    raise SystemExit(f"unknown BENCH_LANEWAY_LANES {LANES!r}")


def mixed_layout(n: int):
    """(lanes, per_lane, retrying lanes, delayed lanes) of the mixed workload."""
    lanes = max(1, n // PER_LANE_MIXED)
    special = max(2, lanes // 100)
    retrying = list(range(special // 2))
    delayed = list(range(special // 2, special))
    return lanes, n // lanes, retrying, delayed


class Producer(SyncProducer):
    def open(self):
        from systems import laneway_app

        self.app, self.noop = laneway_app.build(os.environ.get("BENCH_LANEWAY_NS", "bench"))
        self.i = 0
        self.n = 20000

    def close(self):
        self.app.close()

    def _next(self):
        lane = lane_of(self.i, self.n)
        self.i += 1
        return self.noop if lane is None else self.noop.options(lane=lane)

    def submit(self, lat=0):
        t = self._next()
        t.enqueue(lat) if lat else t.enqueue()

    def bulk_submit(self, count):
        if LANES == "off":
            self.noop.enqueue_many([((), {})] * count)
        else:  # per-job lanes: one backend round trip per call all the same
            self.app.backend.enqueue(self._plan(self.i, self.i + count, self.n))
            self.i += count

    def concurrent(self, n, inflight):
        async def go():
            sem = asyncio.Semaphore(inflight)

            async def one():
                async with sem:
                    await self._next().enqueue_async()

            t0 = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(n)))
            return time.perf_counter() - t0

        return asyncio.run(go())

    def _plan(self, start, stop, n):
        """NewJobs for jobs start..stop-1 of n, with their lanes (and the mixed load's holds)."""
        app, noop = self.app, self.noop
        special = {}
        if LANES == "mixed":
            lanes, _, retrying, delayed = mixed_layout(n)
            special = {lane: {"retry": HOLD_S} for lane in retrying}
            special.update({lane: {"delay": HOLD_S} for lane in delayed})
        news = []
        for i in range(start, stop):
            lane = lane_of(i, n)
            opts = {"lane": lane}
            kwargs = {}
            if LANES == "mixed" and i < lanes and i in special:  # the first job of a special lane
                hold = special[i]
                if "retry" in hold:
                    kwargs["retry"] = hold["retry"]
                else:
                    opts["delay"] = hold["delay"]
            news += app._prepare(noop, [((), kwargs)], noop.options(**opts).opts)
        return news

    def prefill(self, n, batch):
        self.n = n
        if LANES == "off":
            return self.bulk(n, batch)
        t0 = time.perf_counter()
        for start in range(0, n, batch):
            self.app.backend.enqueue(self._plan(start, min(n, start + batch), n))
        return time.perf_counter() - t0


class System(Base):
    dist = "laneway"
    bulk_api = "task.enqueue_many([...]) (one round trip)"
    async_enqueue = True
    producer_class = Producer
    tail_timeout = HOLD_S + 60

    name = (
        "laneway-"
        + BACKEND
        + ("-async" if HANDLER == "async" else "")  # before the workload: report.py reads "<backend>-async"
        + ("" if LANES == "off" else f"-{LANES}")
        + (f"-batch{BATCH}" if BATCH > 1 else "")
        + (f"-c{CONCURRENCY}" if CONCURRENCY else "")
        + (f"-{LABEL}" if LABEL else "")
    )
    backend = BACKEND

    def version(self):
        v = super().version()
        try:
            sha = subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True, check=False
            ).stdout.strip()
        except OSError:
            sha = ""
        return f"{v} ({sha})" if sha else v

    def extra(self):
        return {
            "lanes": LANES,
            "batch": BATCH,
            "concurrency": worker_concurrency(),
            "handler": HANDLER,
            "label": LABEL or None,
            "hold_s": HOLD_S if LANES == "mixed" else None,
        }

    def prefill(self, n, batch):
        prod = self.producer()
        prod.open()
        try:
            return prod.prefill(n, batch)
        finally:
            prod.close()

    def drain_target(self, n):
        if LANES != "mixed":
            return n
        _, per_lane, retrying, delayed = mixed_layout(n)
        return n - len(retrying) * per_lane - len(delayed)

    def reset(self):
        from common import control

        os.environ["BENCH_LANEWAY_NS"] = "bench" + uuid.uuid4().hex[:8]
        if BACKEND == "redis" and not os.environ.get("BENCH_LANEWAY_URL"):
            r = control()
            r.flushdb()  # the private bench Redis: laneway's keys and the counters
            r.close()
        if BACKEND == "sqlite" and not os.environ.get("BENCH_LANEWAY_URL"):
            base = os.path.join(RUN_DIR, "laneway-bench.db")
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(base + suffix):
                    os.remove(base + suffix)
        if BACKEND == "postgres" and not os.environ.get("BENCH_LANEWAY_URL"):
            drop_postgres_namespaces()
        reset_counters()

    def producer(self):
        p = Producer(self)
        return p

    def worker_cmds(self, procs):
        cmd = [
            venv_bin("laneway"),
            "worker",
            "systems.laneway_app:app",
            "-q",
            "bench",
            "-p",
            str(procs),
            "--log-level",
            "WARNING",
        ]
        if CONCURRENCY:
            cmd += ["-c", str(CONCURRENCY)]
        if BATCH > 1:
            cmd += ["--batch", str(BATCH)]
        return [cmd]

    def pending(self):
        from systems import laneway_app

        app, _ = laneway_app.build(os.environ.get("BENCH_LANEWAY_NS", "bench"))
        try:
            return sum(s.queued + s.scheduled for s in app.backend.stats())
        finally:
            app.close()


def worker_concurrency():
    """The slots per worker process: BENCH_LANEWAY_CONCURRENCY, or the default the CLI
    gives this app's worker (asked of laneway, so the record says what ran)."""
    if CONCURRENCY:
        return CONCURRENCY
    from laneway._worker import default_concurrency
    from systems import laneway_app

    app, _ = laneway_app.build(os.environ.get("BENCH_LANEWAY_NS", "bench"))
    try:
        return default_concurrency(app)
    finally:
        app.close()


def drop_postgres_namespaces():
    """Drop every schema an earlier bench run of laneway left on the private bench Postgres."""
    import psycopg
    from common import PG_DSN

    with psycopg.connect(PG_DSN, autocommit=True) as c:
        for (name,) in c.execute("select nspname from pg_namespace where nspname like 'bench%'").fetchall():
            c.execute(f'drop schema "{name}" cascade')
