"""RELIABILITY fault 1: ``kill -9`` of random worker processes, each restarted.

The run is ``laneway chaos`` itself (``laneway._demo.run``): producers send jobs over
many lanes, worker processes run them (handlers 0-20 ms), and at evenly spaced points
of the run's progress a random worker that holds work is killed with SIGKILL and
restarted. Nothing hands a killed worker's jobs back early (no supervisor), so they come
back through lease expiry and sweeping, which is what the re-lease bound measures. Events carry the machine's clock (the
servers' too, on loopback), which saves a round trip per event.

CI size: 1,200 jobs over 120 lanes (600 over 60 on Redis Cluster), 4 workers, 5 kills. Soak (``LANEWAY_SOAK=1``):
RELIABILITY's 20,000 jobs over 2,000 lanes, 30 kills.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from rich.console import Console

from laneway._demo import RunConfig, run

from .conftest import PROCESS_BACKENDS, Chaos, Figures, size, sizef, timeout

LEASE_S = 4.0
SWEEP_S = 1.0


@pytest.mark.parametrize("kind", PROCESS_BACKENDS)
@timeout(150, 1800)
def test_kill9_of_workers_loses_nothing_keeps_lane_order_and_re_leases_orphans_in_time(
    kind: str, chaos_factory: Callable[[str], Chaos], figures: Figures
) -> None:
    target = chaos_factory(kind)
    small = 600 if kind == "redis-cluster" else 1200  # a cluster claim costs ~15x a single server's
    cfg = RunConfig(
        url=target.url, namespace=target.namespace, jobs=size(small, 20_000), lanes=size(small // 10, 2000),
        workers=4, concurrency=4, work_ms=10.0, kills=size(5, 30), kill_every_s=sizef(0.5, 0.75),
        lease_s=LEASE_S, sweep_s=SWEEP_S, timeout_s=size(100, 1500), clock="local",
    )  # fmt: skip
    target.open()  # so the namespace is dropped at teardown

    result = run(cfg, Console(file=io.StringIO()))

    r = result.report
    longest = result.max_release_s
    figures(backend=kind, jobs=result.jobs, kills=result.kills, lost=len(r.lost),
            duplicated=len(r.duplicated), order_violations=len(r.order_violations),
            stale_acks=len(r.stale_acks), orphans=len(result.orphans), longest_release_s=longest,
            acks_rebuilt=result.repaired, elapsed_s=round(result.elapsed_s, 1))  # fmt: skip
    assert result.kills == cfg.kills, "the run ended before every kill was made"
    assert r.jobs == result.jobs
    assert r.lost == (), r.details()
    assert r.order_violations == (), r.details()
    assert r.stale_acks == () and r.duplicate_acks == (), r.details()
    assert r.unexpected == (), r.details()
    assert r.disallowed_duplicates == (), "a job ran twice without having been in flight on a killed worker"
    assert result.orphans, "no kill caught a worker holding work: the run proves nothing about re-leasing"
    never = [o for o in result.orphans if o.release_s is None]
    assert not never, f"orphans never claimed again: {never[:5]}"
    worst = sorted(result.orphans, key=lambda o: -(o.release_s or 0.0))[:5]
    assert longest is not None and longest <= LEASE_S + 2 * SWEEP_S, (
        f"an orphan waited {longest:.2f} s, over lease + 2 x sweep = {LEASE_S + 2 * SWEEP_S} s; the worst "
        "(job, worker: claimed at -> killed at -> claimed again at): "
        + "; ".join(
            f"{o.job_id} {o.worker} {o.claimed_at:.2f} -> {o.killed_at:.2f} -> {o.reclaimed_at:.2f}"
            for o in worst
            if o.reclaimed_at is not None
        )
    )
