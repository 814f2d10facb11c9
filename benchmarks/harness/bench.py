"""Benchmark one job-queue system: enqueue, bulk enqueue, drain (1 and 2 worker
processes) and enqueue-to-start latency.  Results go to results/<system>.json.

    python bench.py SYSTEM [--n 20000] [--runs 3] [--samples 500] [--phases ...]

Vendored from ../shared/bench/bench.py. Changes: results and logs go to benchmarks/results
and benchmarks/.run; an adapter may provide prefill(n, batch) (laned prefill),
drain_target(n) (the count the drain rate is taken at, for workloads where some jobs
wait on purpose) and extra() (settings recorded in the JSON); the async-enqueue phase
also runs for sync libraries that have an asyncio enqueue (async_enqueue = True).

Run from benchmarks/harness with the venv of the system (benchmarks/run.py does that).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import DONE_KEY, LAT_KEY, RESULTS_DIR, RUN_DIR, control  # noqa: E402

PHASES = ["enqueue", "bulk", "concurrent", "drain1", "drain2", "latency"]
LOGDIR = os.path.join(RUN_DIR, "logs")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------
# worker process handling: every worker is started by us in its own session
# (process group) and stopped by signalling exactly that group.
# ---------------------------------------------------------------------------
def start_workers(system, procs, tag):
    os.makedirs(LOGDIR, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = []
    for i, cmd in enumerate(system.worker_cmds(procs)):
        f = open(os.path.join(LOGDIR, f"{system.name}-{tag}-{i}.log"), "wb")  # noqa: SIM115 - closed in stop_workers
        p = subprocess.Popen(
            cmd,
            cwd=HERE,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.append((p, f))
    return out


def stop_workers(workers, grace=10.0):
    for p, _ in workers:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace
    for p, f in workers:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:  # the group may still hold children even if the leader exited
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass
        f.close()


def workers_alive(workers):
    return all(p.poll() is None for p, _ in workers)


# ---------------------------------------------------------------------------
# phases
# ---------------------------------------------------------------------------
def phase_enqueue(system, n, mode, batch, inflight):
    system.reset()
    prod = system.producer()
    prod.open()
    try:
        if mode == "serial":
            dt = prod.serial(n)
        elif mode == "bulk":
            dt = prod.bulk(n, batch)
        else:
            dt = prod.concurrent(n, inflight)
    finally:
        prod.close()
    pend = system.pending()
    return {"n": n, "seconds": dt, "rate": n / dt, "pending_after": pend}


def prefill(system, n, batch):
    if hasattr(system, "prefill"):
        return system.prefill(n, batch)
    prod = system.producer()
    prod.open()
    try:
        if system.bulk_api:
            dt = prod.bulk(n, batch)
        elif system.is_async:
            dt = prod.concurrent(n, 100)
        else:
            dt = prod.serial(n)
    finally:
        prod.close()
    return dt


def phase_drain(system, n, procs, batch, timeout):
    system.reset()
    r = control()
    prefill(system, n, batch)
    assert int(r.get(DONE_KEY) or 0) == 0, "jobs ran before workers were started"
    target = system.drain_target(n) if hasattr(system, "drain_target") else n
    t_spawn = time.perf_counter()
    workers = start_workers(system, procs, f"drain{procs}")
    t_first = c_first = None
    done = 0
    partial = False
    all_done_s = None
    try:
        while True:
            done = int(r.get(DONE_KEY) or 0)
            now = time.perf_counter()
            if t_first is None and done > 0:
                t_first, c_first = now, done
            if done >= target:
                break
            if t_first is None and now - t_spawn > 60:
                raise RuntimeError("no job completed within 60 s of starting the worker(s)")
            if t_first is not None and now - t_first > timeout:
                partial = True
                break
            if not workers_alive(workers):
                raise RuntimeError("worker process exited early (see bench/.run/logs)")
            time.sleep(0.005)
        t_end = now
        if target < n and not partial:  # the jobs that waited on purpose must still all run
            tail_deadline = time.perf_counter() + getattr(system, "tail_timeout", 60.0)
            while time.perf_counter() < tail_deadline:
                if int(r.get(DONE_KEY) or 0) >= n:
                    all_done_s = time.perf_counter() - t_first
                    break
                time.sleep(0.01)
    finally:
        stop_workers(workers)
        r.close()
    steady = (done - c_first) / (t_end - t_first) if t_end > t_first else float("nan")
    out = {
        "n": n,
        "procs": procs,
        "completed": done,
        "partial": partial,
        "startup_s": t_first - t_spawn,
        "drain_s": t_end - t_first,
        "rate": steady,
        "rate_incl_startup": done / (t_end - t_spawn),
    }
    if target < n:
        out.update(target=target, all_done_s=all_done_s)
    return out


def phase_latency(system, samples, timeout):
    system.reset()
    r = control()
    workers = start_workers(system, 1, "latency")
    prod = system.producer()
    lats = []
    try:
        prod.open()
        # warm-up: wait until the worker runs a job, then let it go idle
        prod.one(lat=1)
        if r.blpop(LAT_KEY, 60) is None:
            raise RuntimeError("warm-up job did not start within 60 s")
        deadline = time.monotonic() + timeout
        while int(r.get(DONE_KEY) or 0) < 1:
            time.sleep(0.001)
        time.sleep(0.5)
        for i in range(samples):
            if time.monotonic() > deadline:
                break
            t0 = time.time()
            prod.one(lat=1)
            got = r.blpop(LAT_KEY, 30)
            if got is None:
                raise RuntimeError(f"latency sample {i} did not start within 30 s")
            lats.append(float(got[1]) - t0)
            # wait for the job to finish so the worker is idle again, then
            # a random 0-50 ms pause so pollers are sampled at random phase
            while int(r.get(DONE_KEY) or 0) < i + 2:
                time.sleep(0.0005)
            time.sleep(random.uniform(0, 0.05))
    finally:
        try:
            prod.close()
        finally:
            stop_workers(workers)
            r.close()
    lats.sort()
    ms = [x * 1000 for x in lats]

    def pct(p):
        return ms[min(len(ms) - 1, round(p / 100 * (len(ms) - 1)))]

    return {
        "samples": len(ms),
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "mean_ms": statistics.fmean(ms),
        "max_ms": ms[-1],
        "min_ms": ms[0],
        "partial": len(ms) < samples,
    }


# ---------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("system")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--batch", type=int, default=1000, help="jobs per bulk call")
    ap.add_argument("--inflight", type=int, default=100, help="awaits in flight, async enqueue")
    ap.add_argument(
        "--drain-timeout",
        type=float,
        default=40.0,
        help="seconds after the first completion before a drain run is cut (rate is then partial)",
    )
    ap.add_argument("--latency-timeout", type=float, default=60.0)
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    mod = importlib.import_module(f"systems.{a.system}")
    system = mod.System()
    out_path = a.out or os.path.join(RESULTS_DIR, f"{system.name}.json")
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    res = {
        "system": system.name,
        "version": system.version(),
        "backend": system.backend,
        "python": sys.version.split()[0],
        "n": a.n,
        "runs": a.runs,
        "samples": a.samples,
        "bulk_api": system.bulk_api,
        "bulk_batch": a.batch,
        "inflight": a.inflight,
        "worker_1": system.worker_desc(1),
        "worker_2": system.worker_desc(2),
        "phases": {},
        "errors": {},
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if hasattr(system, "extra"):
        res.update(system.extra())

    def save():
        with open(out_path, "w") as f:
            json.dump(res, f, indent=1)

    system.setup()
    for ph in a.phases.split(","):
        if ph == "bulk" and not system.bulk_api:
            continue
        if ph == "concurrent" and not (system.is_async or getattr(system, "async_enqueue", False)):
            continue
        runs = []
        for k in range(a.runs):
            try:
                if ph == "enqueue":
                    x = phase_enqueue(system, a.n, "serial", a.batch, a.inflight)
                elif ph == "bulk":
                    x = phase_enqueue(system, a.n, "bulk", a.batch, a.inflight)
                elif ph == "concurrent":
                    x = phase_enqueue(system, a.n, "concurrent", a.batch, a.inflight)
                elif ph in ("drain1", "drain2"):
                    x = phase_drain(system, a.n, int(ph[-1]), a.batch, a.drain_timeout)
                elif ph == "latency":
                    x = phase_latency(system, a.samples, a.latency_timeout)
                else:
                    raise SystemExit(f"unknown phase {ph}")
            except Exception as e:  # record and move on
                res["errors"].setdefault(ph, []).append(f"{type(e).__name__}: {e}")
                log(f"{system.name} {ph} run {k + 1} FAILED: {e}")
                traceback.print_exc()
                save()
                break
            runs.append(x)
            log(
                f"{system.name} {ph} run {k + 1}: "
                + ", ".join(
                    f"{key}={val:.1f}" if isinstance(val, float) else f"{key}={val}" for key, val in x.items()
                )
            )
            res["phases"][ph] = runs
            save()
    try:
        system.reset()
    except Exception:
        pass
    res["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    save()


if __name__ == "__main__":
    main()
