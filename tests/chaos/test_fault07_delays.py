"""RELIABILITY fault 7: the accuracy of delayed jobs.

Jobs are enqueued with delays spread uniformly over a window; workers idle in
``backend.wait`` with their default timings. Every job's first START (true clock) is
compared with the due time the backend stored (``run_at``): none may start early, and
the 99th percentile of lateness must be at most 1 s.

CI size: 500 jobs over 0-10 s. Soak size (``LANEWAY_SOAK=1``): 10,000 over 0-60 s.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from laneway._history import EventKind

from ._procs import Fleet, Producer, wait_until
from ._runs import pending, quantile, running_workers
from .conftest import ALL_BACKENDS, Chaos, Figures, size, sizef, timeout

LATENESS_P99_S = 1.0


@pytest.mark.parametrize("kind", ALL_BACKENDS)
@timeout(120, 600)
def test_delayed_jobs_never_start_early_and_p99_lateness_is_within_1s(
    kind: str, chaos_factory: Callable[[str], Chaos], tmp_path: Path, figures: Figures
) -> None:
    target = chaos_factory(kind)
    backend = target.open()
    jobs, window_s = size(500, 10_000), sizef(10.0, 60.0)
    rng = random.Random(7)
    with Fleet(tmp_path, target.url, target.namespace) as fleet:
        producer = Producer(fleet, target.url, target.namespace)
        with running_workers(target, fleet, 2, concurrency=8):
            try:
                for seq in range(jobs):
                    producer.send("step", None, seq, delay=rng.uniform(0.0, window_s))
            finally:
                producer.close()
            wait_until(lambda: pending(backend) == 0, window_s + 30, "every delayed job to run", every_s=0.5)
        events = fleet.events()
    first_start: dict[str, float] = {}
    for e in sorted(events, key=lambda e: e.time):
        if e.kind is EventKind.START:
            first_start.setdefault(e.job_id, e.time)
    due = {}
    for ref in producer.refs:
        rec = backend.get_job(ref.job_id)
        assert rec is not None, f"job {ref.job_id} is gone"
        due[ref.job_id] = rec.run_at
    missing = [job_id for job_id in due if job_id not in first_start]
    lateness = [first_start[job_id] - at for job_id, at in due.items() if job_id in first_start]
    early = [late for late in lateness if late < 0]
    p99 = quantile(lateness, 0.99)
    figures(backend=kind, jobs=jobs, window_s=window_s, started_early=len(early),
            lateness_p50_s=round(quantile(lateness, 0.5), 3), lateness_p99_s=round(p99, 3),
            lateness_max_s=round(max(lateness), 3))  # fmt: skip
    assert not missing, f"{len(missing)} delayed jobs never started"
    assert not early, f"{len(early)} jobs started early, by up to {-min(early):.3f} s"
    assert p99 <= LATENESS_P99_S, f"lateness p99 {p99:.3f} s > {LATENESS_P99_S} s"
