"""Pickup latency, step by step: enqueue call, wake-up and claim, hand-off to the handler.

One in-process worker (-c 8) on an idle queue; each sample enqueues one job and notes when
the worker's ``backend.wait_and_claim`` (the idle executor's wake-up wait with the claim
sent behind it) came back with the job, and when the handler started. Medians and means
per step.

    python benchmarks/profile/pickup.py [--url redis://127.0.0.1:6391/4] [--samples 300]
"""

from __future__ import annotations

import argparse
import queue
import random
import statistics
import threading
import time

import laneway


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="redis://127.0.0.1:6391/4")
    ap.add_argument("--samples", type=int, default=300)
    a = ap.parse_args()
    app = laneway.App(a.url, namespace=f"pick{int(time.time())}")
    starts: queue.SimpleQueue[float] = queue.SimpleQueue()

    @app.task(queue="q", name="noop")
    def noop() -> None:
        starts.put(time.perf_counter())

    be = app.backend
    marks: dict[str, float] = {}
    orig = be.wait_and_claim

    def wait_and_claim(*args, **kw):  # the idle executor's wake-up wait with its claim behind it
        r = orig(*args, **kw)
        if r:
            marks["claim_ret"] = time.perf_counter()
        return r

    be.wait_and_claim = wait_and_claim  # type: ignore[method-assign]
    w = app.worker(["q"], concurrency=8)
    th = threading.Thread(target=w.run, daemon=True)
    th.start()
    noop.enqueue()
    starts.get(timeout=30)
    time.sleep(0.3)
    steps = ("enqueue call", "enqueue returned -> claim back in the worker",
             "claim back -> handler started", "total")  # fmt: skip
    parts: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(a.samples):
        marks.clear()
        t0 = time.perf_counter()
        noop.enqueue()
        t1 = time.perf_counter()
        t4 = starts.get(timeout=30)
        time.sleep(0.002)
        if "claim_ret" not in marks:
            continue
        for k, v in zip(
            steps, (t1 - t0, marks["claim_ret"] - t1, t4 - marks["claim_ret"], t4 - t0), strict=True
        ):
            parts[k].append(v)
        time.sleep(random.uniform(0, 0.02))
    w.stop()
    th.join(5)
    app.close()
    for k, v in parts.items():
        v.sort()
        print(f"{k:36s} p50 {v[len(v) // 2] * 1e6:7.0f} us   mean {statistics.fmean(v) * 1e6:7.0f} us")


if __name__ == "__main__":
    main()
