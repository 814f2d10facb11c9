"""The Redis backends against the memory backend (the reference) on random operation runs.

Each run applies the same seeded random sequence of enqueues (lanes, priorities, unique
keys, on_dead policies), claims (limits, batches, lane caps), outcomes of every verdict,
stale acks, cancels, retries, purges and worker sweeps to both backends and requires the
same answers at every step, and the same jobs, lanes and counts at the end.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from laneway._records import JobRecord, NewJob, OnDead, Outcome, QueueStats, Status, Verdict
from laneway.backends import Backend
from laneway.backends.memory import MemoryBackend
from tests.conftest import drop_backend, fresh_namespace, make_backend

SEEDS = int(os.environ.get("LANEWAY_MODEL_SEEDS", "6"))
"""Random runs per backend (more for a soak: ``LANEWAY_MODEL_SEEDS=200``)."""
QUEUES = ["a", "b"]
LANES = [None, None, "x", "y", "z", "w"]


@pytest.fixture(params=["redis", "redis-cluster-one-shard"])
def redis_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A single server, and a cluster link with one shard (claim order across shards is
    by time, which a reference with one global counter cannot follow exactly)."""
    if request.param == "redis":
        b = make_backend("redis", tmp_path)
    else:
        from laneway.backends.redis import RedisClusterBackend
        from tests.support.redis_cluster import cluster_url

        b = RedisClusterBackend(cluster_url(), namespace=fresh_namespace(), shards=1)
    try:
        yield b
    finally:
        drop_backend(b)


class Run:
    """Applies one random step to both backends and compares what they say."""

    def __init__(self, seed: int, ref: Backend, sut: Backend) -> None:
        self.rng = random.Random(seed)
        self.ref, self.sut = ref, sut
        self.ids: list[str] = []
        self.held: list[JobRecord] = []
        self.stale: list[JobRecord] = []
        self.ref_tokens: dict[str, int | None] = {}
        self.n = 0

    def new_job(self) -> NewJob:
        self.n += 1
        r = self.rng
        return NewJob(
            id=f"j{self.n:05d}", task="t", queue=r.choice(QUEUES), lane=r.choice(LANES),
            priority=r.choice([0, 2, 2, 3]), payload=b'{"a":[],"k":{},"h":{}}',
            max_attempts=r.choice([1, 2, 3]), timeout_s=None,
            unique=r.choice([None, None, None, "u1", "u2"]), result_ttl_s=3600.0,
            on_dead=r.choice([OnDead.SKIP, OnDead.BLOCK]),
        )  # fmt: skip

    def step(self) -> None:
        op = self.rng.choice(
            ["enqueue", "enqueue", "claim", "claim", "finish", "finish", "stale_ack", "operate"]
        )
        getattr(self, op)()

    def enqueue(self) -> None:
        jobs = [self.new_job() for _ in range(self.rng.choice([1, 1, 3]))]
        got = self.sut.enqueue(jobs)
        assert got == self.ref.enqueue(jobs)
        self.ids += [j.id for j in jobs]

    def claim(self) -> None:
        r = self.rng
        queues = r.choice([["a"], ["b"], ["a", "b"], ["b", "a"]])
        kw = {"limit": r.choice([1, 2, 4]), "batch": r.choice([1, 1, 3]), "max_lanes": r.choice([None, 1, 2])}
        mine = self.sut.claim(queues, worker="w", lease_s=60, **kw)  # type: ignore[arg-type]
        theirs = self.ref.claim(queues, worker="w", lease_s=60, **kw)  # type: ignore[arg-type]
        assert [(x.id, x.attempts) for x in mine] == [(x.id, x.attempts) for x in theirs], (queues, kw)
        self.held += [m for m in mine]
        self.ref_tokens.update({x.id: x.token for x in theirs})

    def finish(self) -> None:
        if not self.held:
            return
        rec = self.held.pop(self.rng.randrange(len(self.held)))
        verdict = self.rng.choice(list(Verdict))
        out = Outcome(rec.id, rec.token or 0, verdict, result=b"1", error="e", delay_s=0.0)
        ref_out = Outcome(rec.id, self.ref_tokens[rec.id] or 0, verdict, result=b"1", error="e")
        assert self.sut.finish([out]) == self.ref.finish([ref_out])
        self.stale.append(rec)

    def stale_ack(self) -> None:
        if self.stale:
            rec = self.rng.choice(self.stale)
            assert self.sut.finish([Outcome(rec.id, rec.token or 0, Verdict.SUCCEEDED)]) == [False]

    def operate(self) -> None:
        r = self.rng
        what = r.choice(["cancel", "retry", "retry", "purge", "sweep"])
        if what == "purge":
            status = r.choice([Status.DEAD, Status.CANCELLED])
            assert self.sut.purge(status=status) == self.ref.purge(status=status)
        elif what == "sweep":
            assert self.sut.sweep(worker="w") == self.ref.sweep(worker="w")
            self.held.clear()
        elif self.ids:
            job_id = r.choice(self.ids)
            assert getattr(self.sut, what)(job_id) == getattr(self.ref, what)(job_id), (what, job_id)

    def compare_state(self) -> None:
        now = self.sut.now()
        for job_id in self.ids:
            mine, theirs = self.sut.get_job(job_id), self.ref.get_job(job_id)
            if theirs is None:
                assert mine is None, job_id
                continue
            assert mine is not None, job_id
            assert (_due(mine, now), mine.attempts, mine.error) == (
                _due(theirs, now),
                theirs.attempts,
                theirs.error,
            ), job_id
        for q in QUEUES:
            mine_lanes = sorted((i.lane, i.depth, i.head_id, i.held, i.blocked) for i in self.sut.lanes(q))
            ref_lanes = sorted((i.lane, i.depth, i.head_id, i.held, i.blocked) for i in self.ref.lanes(q))
            assert mine_lanes == ref_lanes, q
        mine_stats = [_counts(s) for s in self.sut.stats()]
        assert mine_stats == [_counts(s) for s in self.ref.stats()]


def _due(rec: JobRecord, now: float) -> Status:
    """Retrying jobs that are due count as queued: the memory backend promotes every due
    job on any claim, Redis those of the queues it claims from (both before taking)."""
    if rec.status is Status.RETRYING and rec.run_at <= now:
        return Status.QUEUED
    return rec.status


def _counts(s: QueueStats) -> tuple[object, ...]:
    return (s.queue, s.queued + s.retrying, s.running, s.succeeded, s.dead, s.cancelled, s.lanes)


@pytest.mark.parametrize("seed", range(SEEDS))
def test_random_operation_runs_match_the_memory_backend(redis_backend: Backend, seed: int) -> None:
    run = Run(seed, MemoryBackend(), redis_backend)
    for i in range(250):
        run.step()
        if i % 50 == 49:
            run.compare_state()
    run.compare_state()
    while run.sut.claim(QUEUES, worker="w", limit=8, lease_s=60) or run.ref.claim(
        QUEUES, worker="w", limit=8, lease_s=60
    ):
        pass
