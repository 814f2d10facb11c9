"""Physical limits of the bench servers on this machine.

* redis-benchmark -q -n 200000 -t set,lpush,rpop with -P 1 and -P 16
* redis-py (sync, hiredis parser if installed): LPUSH loop, INCR loop,
  LPUSH+BRPOP pairs (one job's minimum round trips), pipelined LPUSH
* redis.asyncio: sequential LPUSH loop
* psycopg (autocommit): SELECT 1 loop, single-row INSERT loop (each a commit),
  and 1000-row INSERT per transaction

Writes results/raw_ceiling.json (median of --runs runs for every number).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import redis  # noqa: E402
from common import PG_DSN, REDIS_HOST, REDIS_PORT, RESULTS_DIR, control  # noqa: E402

KEY = "bench:raw"


def redis_benchmark(pipeline, n=200000):
    exe = shutil.which("redis-benchmark")
    if not exe:
        return {"error": "redis-benchmark not found"}
    out = subprocess.run(
        [
            exe,
            "-h",
            REDIS_HOST,
            "-p",
            str(REDIS_PORT),
            "-q",
            "-n",
            str(n),
            "-t",
            "set,lpush,rpop",
            "-P",
            str(pipeline),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    ).stdout
    res = {}
    # -q output: "SET: 98039.22 requests per second, p50=0.271 msec" (lines separated by \r or \n)
    for m in re.finditer(r"([A-Z]+)[^:]*:\s*([\d.]+) requests per second(?:, p50=([\d.]+) msec)?", out):
        res[m.group(1)] = {"rps": float(m.group(2)), "p50_ms": float(m.group(3)) if m.group(3) else None}
    return res


def redis_py(n):
    r = redis.Redis.from_url(f"redis://{REDIS_HOST}:{REDIS_PORT}/0", socket_timeout=60)
    r.delete(KEY)
    out = {}
    t0 = time.perf_counter()
    for _ in range(n):
        r.lpush(KEY, b"x")
    out["lpush_ops"] = n / (time.perf_counter() - t0)
    r.delete(KEY)
    t0 = time.perf_counter()
    for _ in range(n):
        r.incr(KEY + ":c")
    out["incr_ops"] = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(n):
        r.lpush(KEY, b"x")
        r.brpop(KEY, 1)
    dt = time.perf_counter() - t0
    out["lpush_brpop_pairs"] = n / dt
    out["lpush_brpop_rtt_us"] = dt / (2 * n) * 1e6
    r.delete(KEY)
    t0 = time.perf_counter()
    for _ in range(n // 1000):
        p = r.pipeline(transaction=False)
        for _ in range(1000):
            p.lpush(KEY, b"x")
        p.execute()
    out["lpush_pipelined_1000_ops"] = (n // 1000 * 1000) / (time.perf_counter() - t0)
    r.delete(KEY, KEY + ":c")
    r.close()
    return out


async def _aredis(n):
    import redis.asyncio as aredis

    r = aredis.Redis.from_url(f"redis://{REDIS_HOST}:{REDIS_PORT}/0")
    await r.delete(KEY)
    t0 = time.perf_counter()
    for _ in range(n):
        await r.lpush(KEY, b"x")
    ops = n / (time.perf_counter() - t0)
    await r.delete(KEY)
    await r.aclose()
    return {"async_lpush_ops": ops}


def pg(n):
    try:
        import psycopg
    except ImportError:
        return {"error": "psycopg not installed"}
    out = {}
    with psycopg.connect(PG_DSN, autocommit=True) as c:
        c.execute("CREATE TABLE IF NOT EXISTS bench_raw (id bigserial primary key, payload text)")
        c.execute("TRUNCATE bench_raw")
        t0 = time.perf_counter()
        for _ in range(n):
            c.execute("SELECT 1").fetchone()
        out["select1_ops"] = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(n):
            c.execute("INSERT INTO bench_raw (payload) VALUES ('x')")
        out["insert_autocommit_ops"] = n / (time.perf_counter() - t0)
        rows = [("x",)] * 1000
        t0 = time.perf_counter()
        for _ in range(max(1, n // 1000)):
            with c.transaction(), c.cursor() as cur:
                cur.executemany("INSERT INTO bench_raw (payload) VALUES (%s)", rows)
        out["insert_batch_1000_rows"] = max(1, n // 1000) * 1000 / (time.perf_counter() - t0)
        out["synchronous_commit"] = c.execute("SHOW synchronous_commit").fetchone()[0]
        out["fsync"] = c.execute("SHOW fsync").fetchone()[0]
        out["server_version"] = c.execute("SHOW server_version").fetchone()[0]
        c.execute("DROP TABLE bench_raw")
    return out


def med(dicts):
    """Median per key across runs (nested one level for redis-benchmark)."""
    keys = dicts[0].keys()
    res = {}
    for k in keys:
        vals = [d.get(k) for d in dicts]
        if isinstance(vals[0], dict):
            res[k] = med(vals)
        elif isinstance(vals[0], (int, float)) and vals[0] is not None:
            res[k] = statistics.median(v for v in vals if v is not None)
        else:
            res[k] = vals[0]
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--pg-n", type=int, default=5000)
    ap.add_argument("--out", default=os.path.join(RESULTS_DIR, "raw_ceiling.json"))
    ap.add_argument("--skip-benchmark", action="store_true", help="only the Python-side loops")
    ap.add_argument("--bench-n", type=int, default=200000, help="requests per redis-benchmark test")
    a = ap.parse_args()
    r = control()
    info = r.info("server")
    r.close()
    res = {
        "redis_version": info.get("redis_version"),
        "redis_py": redis.__version__,
        "hiredis": _hiredis(),
        "runs": a.runs,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    steps = [
        ("redis_benchmark_P1", lambda: redis_benchmark(1, a.bench_n)),
        ("redis_benchmark_P16", lambda: redis_benchmark(16, a.bench_n)),
    ]
    if a.skip_benchmark:
        steps = []
    for label, fn in [
        *steps,
        ("redis_py", lambda: redis_py(a.n)),
        ("redis_py_async", lambda: asyncio.run(_aredis(a.n))),
        ("postgres_psycopg", lambda: pg(a.pg_n)),
    ]:
        runs = []
        for _k in range(a.runs):
            try:
                runs.append(fn())
            except Exception as e:
                runs.append({"error": f"{type(e).__name__}: {e}"})
                break
        res[label] = med(runs) if runs and "error" not in runs[0] else runs[0]
        res[label + "_runs"] = runs
        print(label, json.dumps(res[label]), flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)


def _hiredis():
    try:
        from importlib import metadata

        return metadata.version("hiredis")
    except Exception:
        return None


if __name__ == "__main__":
    main()
