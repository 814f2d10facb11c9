"""Scale curves: claim latency and storage per lane as the number of lanes grows.

For each point L (10^3 .. 10^6 lanes), the namespace holds L ready lanes with one queued
job each (a no-argument call, the same payload as the harness's no-op). At each point:

- storage per lane: what the backend's storage grew by since the empty namespace, over L
  (Redis: ``INFO memory used_memory`` of the private bench server; Postgres: the
  ``pg_total_relation_size`` of every table of the namespace's schema, indexes and TOAST
  included; SQLite: the database's used pages after a WAL checkpoint);
- claim latency: ``--claims`` times, one ``backend.claim(limit=1)`` (the round trip a
  worker makes for one free slot), timed, then ``backend.finish`` of that job (timed
  separately). Each claim takes one lane away; the next point tops the lanes up again.

The lanes are filled with ``backend.enqueue`` in batches of 2,000 jobs (one round trip per
batch); the fill rate is recorded too. Run with the laneway venv from anywhere:

    python benchmarks/scale.py --backend redis --points 1000,10000,100000 --out results/scale-redis.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sqlite3
import statistics
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "harness"))

from common import PG_DSN, REDIS_URL, RUN_DIR, control  # noqa: E402

import laneway  # noqa: E402
from laneway._app import new_id  # noqa: E402
from laneway._records import Outcome, Verdict  # noqa: E402

QUEUE = "scale"
FILL_BATCH = 2000


def url_for(backend: str) -> str:
    if backend == "redis":
        return REDIS_URL
    if backend == "postgres":
        return PG_DSN
    if backend == "sqlite":
        return "sqlite:///" + os.path.join(RUN_DIR, "laneway-scale.db")
    raise SystemExit(f"unknown backend {backend!r}")


class Storage:
    """Bytes the backend uses for one namespace (or, for Redis, the whole private server)."""

    def __init__(self, backend: str, namespace: str) -> None:
        self.backend, self.namespace = backend, namespace

    def reset(self) -> None:
        if self.backend == "redis":
            r = control()  # a 120 s read timeout: FLUSHDB of 10^6 lanes takes seconds
            r.flushdb()
            r.close()
        elif self.backend == "sqlite":
            path = url_for("sqlite")[len("sqlite:///") :]
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)
        elif self.backend == "postgres":
            import psycopg

            with psycopg.connect(PG_DSN, autocommit=True) as c:
                rows = c.execute("select nspname from pg_namespace where nspname like 'scale%'").fetchall()
                for (name,) in rows:
                    c.execute(f'drop schema "{name}" cascade')

    def bytes(self) -> int:
        if self.backend == "redis":
            r = control()
            try:
                return int(r.info("memory")["used_memory"])
            finally:
                r.close()
        if self.backend == "postgres":
            import psycopg

            with psycopg.connect(PG_DSN, autocommit=True) as c:
                row = c.execute(
                    "select coalesce(sum(pg_total_relation_size(c.oid)), 0) from pg_class c "
                    "join pg_namespace n on n.oid = c.relnamespace where n.nspname = %s and c.relkind = 'r'",
                    (self.namespace,),
                ).fetchone()
                return int(row[0])
        path = url_for("sqlite")[len("sqlite:///") :]
        c = sqlite3.connect(path, timeout=30)
        try:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            page = c.execute("PRAGMA page_size").fetchone()[0]
            count = c.execute("PRAGMA page_count").fetchone()[0]
            free = c.execute("PRAGMA freelist_count").fetchone()[0]
            return int((count - free) * page)
        finally:
            c.close()


def pct(sorted_ms: list[float], p: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, round(p / 100 * (len(sorted_ms) - 1)))]


def run(backend: str, points: list[int], claims: int, budget_s: float, save) -> dict:
    namespace = "scale" + uuid.uuid4().hex[:8]
    storage = Storage(backend, namespace)
    storage.reset()
    app = laneway.App(url_for(backend), namespace=namespace)

    @app.task(queue=QUEUE, name="noop")
    def noop() -> None:
        pass

    be = app.backend
    template = app._prepare(noop, [((), {})], noop.options(lane="x").opts)[0]
    be.enqueue([dataclasses.replace(template, id=new_id(), lane="warm")])  # schema/scripts in place
    warm = be.claim([QUEUE], worker="scale", limit=1, lease_s=60)
    be.finish([Outcome(r.id, r.token or 0, Verdict.SUCCEEDED) for r in warm])
    base = storage.bytes()
    print(f"[{backend}] empty namespace: {base:,} bytes", flush=True)
    out = {"backend": backend, "url": app.url, "namespace": namespace, "claims": claims,
           "base_bytes": base, "points": []}  # fmt: skip
    next_lane = 0
    pending = 0
    for target in points:
        t0 = time.perf_counter()
        added = 0
        while pending < target:
            k = min(FILL_BATCH, target - pending)
            be.enqueue(
                [dataclasses.replace(template, id=new_id(), lane=f"s{next_lane + i}") for i in range(k)]
            )
            next_lane += k
            pending += k
            added += k
        fill_s = time.perf_counter() - t0
        used = storage.bytes()
        claim_ms, finish_ms = [], []
        t_claims = time.perf_counter()
        for _ in range(claims):
            if claim_ms and time.perf_counter() - t_claims > budget_s:
                break  # slow claims: report the ones done within the point's budget
            t1 = time.perf_counter()
            recs = be.claim([QUEUE], worker="scale", limit=1, lease_s=60)
            t2 = time.perf_counter()
            if not recs:
                raise RuntimeError(f"no ready lane found with {pending} lanes pending")
            be.finish([Outcome(recs[0].id, recs[0].token or 0, Verdict.SUCCEEDED)])
            t3 = time.perf_counter()
            claim_ms.append((t2 - t1) * 1000)
            finish_ms.append((t3 - t2) * 1000)
            pending -= 1
        claim_ms.sort()
        finish_ms.sort()
        point = {
            "lanes": target, "bytes": used - base, "bytes_per_lane": (used - base) / target,
            "fill_jobs": added, "fill_s": fill_s, "fill_rate": added / fill_s if fill_s else None,
            "claim_p50_ms": pct(claim_ms, 50), "claim_p99_ms": pct(claim_ms, 99),
            "claim_mean_ms": statistics.fmean(claim_ms),
            "finish_p50_ms": pct(finish_ms, 50), "finish_p99_ms": pct(finish_ms, 99),
            "claims": len(claim_ms),
        }  # fmt: skip
        out["points"].append(point)
        save(out)  # a run cut later still leaves the points measured so far
        print(f"[{backend}] {target:>9,} lanes: {point['bytes_per_lane']:7.0f} B/lane, claim p50 "
              f"{point['claim_p50_ms']:.2f} ms p99 {point['claim_p99_ms']:.2f} ms, finish p50 "
              f"{point['finish_p50_ms']:.2f} ms; filled {added:,} jobs at {point['fill_rate'] or 0:,.0f}/s",
              flush=True)  # fmt: skip
    app.close()
    storage.reset()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", required=True, choices=["redis", "postgres", "sqlite"])
    ap.add_argument("--points", default="1000,3000,10000,30000,100000,300000,1000000")
    ap.add_argument("--claims", type=int, default=300)
    ap.add_argument("--budget-s", type=float, default=120.0, help="most seconds of claims per point")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    points = sorted(int(float(p)) for p in a.points.split(","))
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)

    def save(res: dict) -> None:
        res.update(laneway_version=laneway.__version__, python=sys.version.split()[0],
                   finished=time.strftime("%Y-%m-%d %H:%M:%S"))  # fmt: skip
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)

    save(run(a.backend, points, a.claims, a.budget_s, save))


if __name__ == "__main__":
    main()
