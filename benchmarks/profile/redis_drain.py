"""Where a Redis drain spends its time: rate, CPU per job, Redis commands per job, thread roles.

Prefills N jobs (optionally on lanes), starts one ``laneway worker --child`` process on
them and reports, from the first completion to the last:

- the drain rate;
- worker-process CPU and redis-server CPU per job (from /proc and ``INFO cpu``), which
  stay meaningful on a busy machine where wall-clock rates do not;
- Redis commands per job (``INFO commandstats``: the EVALSHA round trips and the commands
  the Lua scripts run inside them);
- with ``--py-spy``, a wall-clock sample of every worker thread (py-spy ``--threads
  --idle``) summed by role: what the fetch loop, the acker and the executors wait on.

The Redis server is FLUSHALLed: give it one nothing else uses (default: the benchmarks'
private server, ``python3 benchmarks/run.py --steps servers --keep-servers`` starts it).

    python benchmarks/profile/redis_drain.py 20000                 # harness probe (one INCR per job)
    python benchmarks/profile/redis_drain.py 20000 --pure          # no-op: laneway's own cost only
    python benchmarks/profile/redis_drain.py 20000 --async         # async def task on the event loop
    python benchmarks/profile/redis_drain.py 20000 --lanes 0       # every job on its own lane
    python benchmarks/profile/redis_drain.py 40000 --py-spy        # + thread roles (pip install py-spy)
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import redis

HERE = os.path.dirname(os.path.abspath(__file__))


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_roles(path: str) -> None:
    """Sum py-spy raw samples per worker-thread role and per what the thread was doing."""
    roles = ("_execute_loop", "_ack_loop", "_maintain_loop", "_fetch_loop")
    by = collections.defaultdict(collections.Counter)
    waits = (("read_from_socket", "waiting for the Redis reply"), ("sendall", "sending"),
             ("send_packed_command", "sending"), ("Condition.wait", "waiting on its condition"),
             ("Event.wait", "waiting on an event"), ("Connection.wait", "waiting for the database"))  # fmt: skip
    with open(path) as f:
        for line in f:
            stack, _, n = line.rstrip().rpartition(" ")
            if not stack:
                continue
            frames = [re.sub(r" \((/[^)]*/)?([^/)]+)\)", r" (\2)", x) for x in stack.split(";")[1:]]
            joined = ";".join(frames)
            role = next((r for r in roles if r in joined), "other")
            leaf = frames[-1] if frames else "?"
            state = next((name for key, name in waits if key in leaf), leaf)
            if role == "_execute_loop" and re.search(r"_execute_loop \(_worker\.py:\d+\)$", leaf):
                state = "idle: waiting for work (SimpleQueue.get)"
            by[role][state] += int(n)
    for role, states in by.items():
        total = sum(states.values())
        print(f"  {role}: {total} samples")
        for state, n in states.most_common(6):
            print(f"    {100 * n / total:5.1f}%  {state}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", type=int)
    ap.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6391/0"))
    ap.add_argument("--url", default=None, help="laneway backend URL (default: --redis)")
    ap.add_argument("--pure", action="store_true", help="no-op task (no INCR probe)")
    ap.add_argument("--async", dest="is_async", action="store_true",
                    help="async def task (redis.asyncio INCR), run on the worker's event loop")  # fmt: skip
    ap.add_argument("--lanes", type=int, default=None, help="0: a lane per job; K: K lanes round-robin")
    ap.add_argument("--py-spy", action="store_true")
    ap.add_argument("--spy-seconds", type=int, default=8)
    ap.add_argument("worker_args", nargs="*", help="extra `laneway worker` arguments, after --")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="laneway-prof-")
    ns = f"prof{int(time.time())}"
    env = {**os.environ, "PROF_URL": a.url or a.redis, "PROF_PROBE": a.redis.rsplit("/", 1)[0] + "/1",
           "PROF_NS": ns, "PROF_PURE": "1" if a.pure else "0", "PROF_ASYNC": "1" if a.is_async else "0",
           "PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", "")}  # fmt: skip
    os.environ.update(env)
    sys.path.insert(0, HERE)
    import prof_app

    r = redis.Redis.from_url(a.redis)
    r.flushall()
    app, noop = prof_app.app, prof_app.noop
    t0 = time.perf_counter()
    if a.lanes is None:
        for s in range(0, a.n, 1000):
            noop.enqueue_many([((), {})] * min(1000, a.n - s))
    else:
        from laneway._app import new_id

        tmpl = app._prepare(noop, [((), {})], noop.options(lane="x").opts)[0]
        for s in range(0, a.n, 1000):
            app.backend.enqueue([
                dataclasses.replace(tmpl, id=new_id(), lane=f"l{i if a.lanes == 0 else i % a.lanes}")
                for i in range(s, min(a.n, s + 1000))
            ])  # fmt: skip
    print(f"prefilled {a.n} jobs in {time.perf_counter() - t0:.1f} s")
    r.config_resetstat()
    probe = redis.Redis.from_url(env["PROF_PROBE"])
    cmd = [sys.executable, "-m", "laneway", "worker", "prof_app:app", "-q", "bench", "--child",
           "--log-level", "ERROR", *a.worker_args]  # fmt: skip
    worker = subprocess.Popen(cmd, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    spy = None
    t_first = None
    c_first = done = 0
    cpu0 = rcpu0 = 0.0

    def redis_cpu() -> float:
        i = r.info("cpu")
        return float(i["used_cpu_user"]) + float(i["used_cpu_sys"])

    def finished() -> int:
        if a.pure:
            return sum(s.succeeded for s in app.backend.stats())
        return int(probe.get("bench:done") or 0)

    while True:
        done = finished()
        now = time.perf_counter()
        if done and t_first is None:
            t_first, c_first = now, done
            cpu0, rcpu0 = proc_cpu(worker.pid), redis_cpu()
            if a.py_spy:
                exe = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
                spy = subprocess.Popen([exe, "record", "-o", os.path.join(work, "spy.txt"), "-f", "raw", "-r", "50",
                                        "-d", str(a.spy_seconds), "--threads", "--idle", "--pid", str(worker.pid)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        if done >= a.n or worker.poll() is not None:
            break
        time.sleep(0.1 if a.pure else 0.01)
    jobs = max(1, done - c_first)
    cpu1, rcpu1 = proc_cpu(worker.pid), redis_cpu()
    stats = r.info("commandstats")
    if spy is not None:
        spy.wait()
    worker.terminate()
    worker.wait(30)
    span = now - (t_first or now)
    print(f"drain: {jobs / span if span else 0:,.0f} jobs/s over {jobs} jobs"
          f" ({'no-op' if a.pure else 'one INCR per job'}, lanes={a.lanes})")  # fmt: skip
    print(f"CPU per job: worker process {(cpu1 - cpu0) / jobs * 1e6:.0f} us, "
          f"redis-server {(rcpu1 - rcpu0) / jobs * 1e6:.0f} us")  # fmt: skip
    print("Redis commands per job (server-wide, incl. those run inside scripts):")
    for k, v in sorted(stats.items(), key=lambda kv: -kv[1]["calls"])[:18]:
        print(
            f"  {k.removeprefix('cmdstat_'):22s} {v['calls'] / a.n:6.3f}  ({v['usec_per_call']:.1f} us/call)"
        )
    if spy is not None:
        print("worker threads (py-spy wall clock):")
        thread_roles(os.path.join(work, "spy.txt"))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
