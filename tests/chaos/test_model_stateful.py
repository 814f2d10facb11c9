"""RELIABILITY 12: a Hypothesis state machine of the lease life cycle, on every backend.

Rules: enqueue (named lanes, or delayed jobs without a lane), claim (two workers, short
or long leases, limits 1-3), ack / nack / dead-letter, extend, finish with a retired
token, let time pass, sweep, and kill a worker (``sweep(worker=...)``). A small reference
model follows along. On ``memory://`` the clock is the model's (time passes at once);
on the other backends time is real: the model brackets every call with ``backend.now()``
and only demands an outcome where the bracket decides it (an ack sent well before its
lease's earliest expiry must be accepted, one sent after its latest expiry refused),
resolving the rest from what the backend answered or stores.

Checked at every step:

- nothing is lost: every job the model knows exists, in the state the model expects;
- at most one live lease per lane: the running jobs of a lane share one token, and a
  claim never takes a lane the model sees held, nor any job but the lane's head;
- attempts are monotonic (and a claim adds exactly one), tokens strictly increase;
- run_at is respected: no delayed job is claimed before it is due, and work that is
  certainly ready is not left unclaimed.

CI: a few examples per backend; ``LANEWAY_SOAK=1``: many more, longer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from laneway._records import NewJob, OnDead, Outcome, Status, Verdict
from laneway.backends import Backend
from laneway.backends.memory import MemoryBackend
from tests.conftest import drop_backend, fresh_namespace, make_backend

from .conftest import ALL_BACKENDS, SOAK, timeout

QUEUE = "q"
WORKERS = ("w1", "w2")
FINAL = (Status.SUCCEEDED, Status.DEAD)


@dataclass
class Timing:
    """Lease lengths, the delay of delayed jobs, and one step of passing time (seconds)."""

    short_s: float
    long_s: float
    delay_s: float
    step_s: float


FAKE = Timing(short_s=1.0, long_s=100.0, delay_s=2.0, step_s=1.5)
REAL = Timing(short_s=0.3, long_s=30.0, delay_s=0.25, step_s=0.35)


@dataclass
class MJob:
    id: str
    lane: str | None
    max_attempts: int
    status: Status
    due_lo: float
    due_hi: float
    attempts: int = 0
    token: int | None = None


@dataclass
class MLease:
    token: int
    worker: str
    lease_s: float
    exp_lo: float
    exp_hi: float
    jobs: set[str] = field(default_factory=set)


class LeaseModel(RuleBasedStateMachine):
    """The model; ``kind`` and ``tmp`` are set on a subclass per backend."""

    kind = "memory"
    tmp = Path(".")

    def __init__(self) -> None:
        super().__init__()
        self.fake_now = 1_700_000_000.0
        if self.kind == "memory":
            self.backend: Backend = MemoryBackend(clock=lambda: self.fake_now)
            self.t = FAKE
        else:
            self.backend = make_backend(self.kind, self.tmp, fresh_namespace())
            self.t = REAL
        self.jobs: dict[str, MJob] = {}
        self.lanes: dict[str, list[str]] = {}
        self.leases: dict[int, MLease] = {}
        self.retired: list[tuple[int, str]] = []
        self.max_token = 0
        self.count = 0

    def teardown(self) -> None:
        drop_backend(self.backend)

    # --- helpers -----------------------------------------------------------------------

    def now(self) -> float:
        return self.backend.now()

    def held_lanes(self) -> set[str]:
        return {self.jobs[j].lane for lease in self.leases.values() for j in lease.jobs if self.jobs[j].lane}  # type: ignore[misc]

    def head(self, lane: str) -> str | None:
        return next((j for j in self.lanes[lane] if self.jobs[j].status not in FINAL), None)

    def certainly_ready(self, at: float) -> list[str]:
        """Jobs that any claim at backend time >= ``at`` must be able to take."""
        held = self.held_lanes()
        ready = []
        for job in self.jobs.values():
            if job.lane is not None and (job.lane in held or self.head(job.lane) != job.id):
                continue
            if job.status is Status.QUEUED or (
                job.status in (Status.SCHEDULED, Status.RETRYING) and job.due_hi < at
            ):
                ready.append(job.id)
        return ready

    def retire(self, lease: MLease, job_id: str) -> None:
        lease.jobs.discard(job_id)
        self.retired.append((lease.token, job_id))
        if not lease.jobs:
            del self.leases[lease.token]

    def recover(self, lease: MLease) -> None:
        """A sweep took this lease back: its jobs are queued again, or dead when spent."""
        for job_id in list(lease.jobs):
            job = self.jobs[job_id]
            job.status = Status.DEAD if job.attempts >= job.max_attempts else Status.QUEUED
            job.token = None
            self.retire(lease, job_id)

    # --- rules ---------------------------------------------------------------------------

    @rule(lane=st.sampled_from(["a", "b", "c", None]), delayed=st.booleans(), spent=st.booleans())
    def enqueue(self, lane: str | None, delayed: bool, spent: bool) -> None:
        delay = self.t.delay_s if lane is None and delayed else 0.0
        self.count += 1
        job_id = f"job{self.count:04d}"
        new = NewJob(id=job_id, task="t", queue=QUEUE, lane=lane, priority=2, payload=b'{"a":[],"k":{},"h":{}}',
                     max_attempts=1 if spent else 3, timeout_s=None, unique=None, result_ttl_s=86_400.0,
                     on_dead=OnDead.SKIP, delay_s=delay)  # fmt: skip
        lo = self.now()
        [res] = self.backend.enqueue([new])
        hi = self.now()
        assert res.id == job_id and res.created
        status = Status.SCHEDULED if delay else Status.QUEUED
        self.jobs[job_id] = MJob(job_id, lane, new.max_attempts, status, lo + delay, hi + delay)
        if lane is not None:
            self.lanes.setdefault(lane, []).append(job_id)

    @rule(worker=st.sampled_from(WORKERS), short=st.booleans(), limit=st.integers(1, 3))
    def claim(self, worker: str, short: bool, limit: int) -> None:
        lease_s = self.t.short_s if short else self.t.long_s
        lo = self.now()
        must = self.certainly_ready(lo)
        recs = self.backend.claim([QUEUE], worker=worker, limit=limit, lease_s=lease_s)
        hi = self.now()
        if not recs:
            assert not must, f"claim returned nothing although {must} were certainly ready"
            return
        token = recs[0].token
        assert token is not None and token > self.max_token, f"token {token} after {self.max_token}"
        held = self.held_lanes()
        lanes_taken: set[str] = set()
        for rec in recs:
            job = self.jobs[rec.id]
            assert rec.token == token, "one claim, one token"
            assert job.status not in FINAL and job.status is not Status.RUNNING, f"{rec.id} was {job.status}"
            assert job.due_lo <= hi, f"{rec.id} claimed {job.due_lo - hi:.3f} s before it was due"
            assert rec.attempts == job.attempts + 1, f"{rec.id}: attempts {rec.attempts} after {job.attempts}"
            if job.lane is not None:
                assert job.lane not in held, f"lane {job.lane} taken while another lease holds it"
                assert job.lane not in lanes_taken, f"lane {job.lane} twice in one claim of batch 1"
                assert self.head(job.lane) == rec.id, f"{rec.id} is not the head of lane {job.lane}"
                lanes_taken.add(job.lane)
        self.max_token = token
        lease = MLease(token, worker, lease_s, lo + lease_s, hi + lease_s)
        for rec in recs:
            job = self.jobs[rec.id]
            job.status, job.attempts, job.token = Status.RUNNING, rec.attempts, token
            lease.jobs.add(rec.id)
        self.leases[token] = lease

    @precondition(lambda self: self.leases)
    @rule(pick=st.integers(0, 99), verdict=st.sampled_from([Verdict.SUCCEEDED, Verdict.RETRY, Verdict.DEAD]))
    def finish(self, pick: int, verdict: Verdict) -> None:
        lease = self.leases[sorted(self.leases)[pick % len(self.leases)]]
        job_id = sorted(lease.jobs)[pick % len(lease.jobs)]
        lo = self.now()
        [ok] = self.backend.finish([Outcome(job_id, lease.token, verdict, error="model", delay_s=0.0)])
        hi = self.now()
        if hi < lease.exp_lo:
            assert ok, f"ack of {job_id} refused {lease.exp_lo - hi:.3f} s before its lease could expire"
        if lo >= lease.exp_hi:
            assert not ok, f"ack of {job_id} accepted {lo - lease.exp_hi:.3f} s after its lease expired"
        if not ok:
            lease.exp_hi = min(lease.exp_hi, hi)
            lease.exp_lo = min(lease.exp_lo, lease.exp_hi)
            return
        job = self.jobs[job_id]
        job.token = None
        if verdict is Verdict.RETRY:
            job.status, job.due_lo, job.due_hi = Status.RETRYING, lo, hi
        else:
            job.status = Status.SUCCEEDED if verdict is Verdict.SUCCEEDED else Status.DEAD
        self.retire(lease, job_id)

    @precondition(lambda self: self.retired)
    @rule(pick=st.integers(0, 99))
    def finish_with_a_retired_token(self, pick: int) -> None:
        token, job_id = self.retired[pick % len(self.retired)]
        [ok] = self.backend.finish([Outcome(job_id, token, Verdict.SUCCEEDED)])
        assert not ok, f"an ack with retired token {token} of {job_id} was accepted"
        assert self.backend.extend([token], self.t.long_s) == [False] or token in self.leases

    @precondition(lambda self: self.leases)
    @rule(pick=st.integers(0, 99))
    def extend(self, pick: int) -> None:
        lease = self.leases[sorted(self.leases)[pick % len(self.leases)]]
        lo = self.now()
        [ok] = self.backend.extend([lease.token], lease.lease_s)
        hi = self.now()
        if hi < lease.exp_lo:
            assert ok, f"extend of lease {lease.token} refused before it could expire"
        if lo >= lease.exp_hi:
            assert not ok, f"lease {lease.token} revived {lo - lease.exp_hi:.3f} s after it expired"
        if ok:
            lease.exp_lo, lease.exp_hi = lo + lease.lease_s, hi + lease.lease_s
        else:
            lease.exp_hi = min(lease.exp_hi, hi)
            lease.exp_lo = min(lease.exp_lo, lease.exp_hi)

    @rule()
    def time_passes(self) -> None:
        if self.kind == "memory":
            self.fake_now += self.t.step_s
        else:
            time.sleep(self.t.step_s)

    @rule()
    def sweep(self) -> None:
        self._sweep(None)

    @rule(worker=st.sampled_from(WORKERS))
    def kill_worker(self, worker: str) -> None:
        self._sweep(worker)

    def _sweep(self, worker: str | None) -> None:
        lo = self.now()
        recovered = self.backend.sweep(worker=worker)
        hi = self.now()
        expected = 0
        for lease in list(self.leases.values()):
            forced = lease.worker == worker
            if forced or lo >= lease.exp_hi:
                taken = True
            elif hi < lease.exp_lo:
                taken = False
            else:  # the bracket does not decide: ask the backend what it did
                rec = self.backend.get_job(next(iter(lease.jobs)))
                taken = rec is None or rec.token != lease.token
            if taken:
                expected += len(lease.jobs)
                self.recover(lease)
        assert recovered == expected, f"sweep recovered {recovered} jobs, the model {expected}"

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def nothing_lost_one_lease_per_lane_attempts_monotonic(self) -> None:
        tokens_by_lane: dict[str, set[int | None]] = {}
        now = self.now()
        for job in self.jobs.values():
            rec = self.backend.get_job(job.id)
            assert rec is not None, f"{job.id} was lost"
            assert rec.attempts == job.attempts, f"{job.id}: attempts {rec.attempts}, model {job.attempts}"
            allowed = {job.status}
            if job.status in (Status.SCHEDULED, Status.RETRYING) and job.due_lo <= now:
                allowed.add(Status.QUEUED)
            assert rec.status in allowed, f"{job.id} is {rec.status.value}, the model says {job.status.value}"
            if rec.status is Status.RUNNING:
                assert rec.token == job.token, f"{job.id} runs under token {rec.token}, model {job.token}"
                if job.lane is not None:
                    tokens_by_lane.setdefault(job.lane, set()).add(rec.token)
        doubly = {lane: tokens for lane, tokens in tokens_by_lane.items() if len(tokens) > 1}
        assert not doubly, f"lanes with more than one live lease: {doubly}"


def _settings(kind: str) -> settings:
    examples = (200 if kind == "memory" else 60) if SOAK else (30 if kind == "memory" else 5)
    return settings(
        max_examples=examples,
        stateful_step_count=50 if SOAK else 25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        database=None,
    )


@pytest.mark.parametrize("kind", ALL_BACKENDS)
@timeout(240, 3600)
def test_lease_life_cycle_model_keeps_every_job_one_lease_per_lane_monotonic_attempts_and_run_at(
    kind: str, tmp_path: Path
) -> None:
    machine: Callable[[], LeaseModel] = type(f"LeaseModel_{kind.replace('-', '_')}", (LeaseModel,),
                                             {"kind": kind, "tmp": tmp_path})  # fmt: skip
    if kind != "memory":
        make_backend(kind, tmp_path).close()  # skips (or fails in CI) when the server is missing
    run_state_machine_as_test(machine, settings=_settings(kind))
