"""``memory://``: the whole contract in one process, for tests and single-process use.

Data structures (all guarded by one lock):

- ``_jobs``: every stored job by id (mutable ``_Job`` rows).
- ``_lanes``: (queue, lane key) -> ``_Lane`` with a heap of pending jobs by ``seq``.
  A job without a lane gets a private lane key. A lane object exists only while it
  has pending jobs or is held, so an idle lane costs nothing.
- ``_ready``: per queue, a heap of (-priority, head seq, lane key) entries. Entries are
  validated when popped (lazy deletion), so claims never scan lanes.
- ``_timers``: per queue, a heap of (due, sequence, job id) for scheduled jobs and
  retrying heads; the sequence keeps jobs due at the same moment in the order they were
  scheduled.
- ``_leases``: token -> ``_Lease`` (worker, expiry, the claimed jobs per lane).

Time comes from ``clock`` (``time.time`` by default), so tests can control it.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from .._errors import ConfigError
from .._records import (
    EnqueueResult,
    JobRecord,
    LaneInfo,
    NewJob,
    OnDead,
    Outcome,
    QueueStats,
    Status,
    Verdict,
)
from ._base import Backend, page_args, page_limit

_LaneKey = tuple[str, str]
_RECORD_FIELDS = tuple(f.name for f in fields(JobRecord))
_SOLO = "\x00"  # prefix of the private lane key of a job without a lane


@dataclass(slots=True)
class _Job:
    rec: JobRecord
    expires_at: float | None = None


@dataclass(slots=True)
class _Lane:
    pending: list[tuple[int, str]] = field(default_factory=list)  # heap of (seq, job id)
    held: int | None = None  # token of the lease holding the lane


@dataclass(slots=True)
class _Lease:
    worker: str
    expires_at: float
    lanes: dict[_LaneKey, set[str]]


class MemoryBackend(Backend):
    """The in-process backend. ``clock`` returns epoch seconds (``time.time`` default)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Condition()
        self._jobs: dict[str, _Job] = {}
        self._lanes: dict[_LaneKey, _Lane] = {}
        self._ready: dict[str, list[tuple[int, int, _LaneKey]]] = {}
        self._timers: dict[str, list[tuple[float, int, str]]] = {}
        self._timer_seq = itertools.count()
        self._leases: dict[int, _Lease] = {}
        self._unique: dict[str, str] = {}
        self._ticks: dict[str, float] = {}
        self._meta: dict[str, bytes] = {}
        self._seq = 0
        self._token = 0

    # --- helpers -------------------------------------------------------------------

    @staticmethod
    def _lane_key(rec: JobRecord) -> _LaneKey:
        return (rec.queue, rec.lane if rec.lane is not None else _SOLO + rec.id)

    def _set(self, job: _Job, **changes: Any) -> JobRecord:
        rec = job.rec
        values = {name: getattr(rec, name) for name in _RECORD_FIELDS}
        values.update(changes)
        job.rec = JobRecord(**values)
        return job.rec

    def _join_lane(self, job: _Job, *, new_seq: bool) -> None:
        """Put a job into its lane's pending heap (new jobs take the next seq)."""
        if new_seq:
            self._seq += 1
            self._set(job, seq=self._seq)
        seq = job.rec.seq
        assert seq is not None
        key = self._lane_key(job.rec)
        lane = self._lanes.setdefault(key, _Lane())
        heapq.heappush(lane.pending, (seq, job.rec.id))

    def _head(self, lane: _Lane) -> _Job | None:
        """The lane's head, dropping heap entries of jobs that left the lane."""
        while lane.pending:
            seq, job_id = lane.pending[0]
            job = self._jobs.get(job_id)
            if job is not None and job.rec.seq == seq and self._in_lane(job.rec):
                return job
            heapq.heappop(lane.pending)
        return None

    @staticmethod
    def _in_lane(rec: JobRecord) -> bool:
        if rec.status in (Status.QUEUED, Status.RETRYING):
            return True
        return rec.status is Status.DEAD and rec.on_dead is OnDead.BLOCK and rec.lane is not None

    def _reindex(self, key: _LaneKey) -> None:
        """Make a lane ready if it is free and its head is queued; forget it if empty."""
        lane = self._lanes.get(key)
        if lane is None or lane.held is not None:
            return
        head = self._head(lane)
        if head is None:
            del self._lanes[key]
            return
        if head.rec.status is Status.QUEUED:
            assert head.rec.seq is not None
            entry = (-head.rec.priority, head.rec.seq, key)
            heapq.heappush(self._ready.setdefault(key[0], []), entry)
            self._lock.notify_all()

    def _promote(self, now: float, queues: Iterable[str] | None = None) -> None:
        """Move due scheduled jobs into their lanes and due retrying heads to queued, in
        ``queues`` (default: every queue)."""
        for queue in list(self._timers) if queues is None else queues:
            timers = self._timers.get(queue)
            while timers and timers[0][0] <= now:
                due, _, job_id = heapq.heappop(timers)
                job = self._jobs.get(job_id)
                if job is None or job.rec.run_at != due:
                    continue
                if job.rec.status is Status.SCHEDULED:
                    self._set(job, status=Status.QUEUED)
                    self._join_lane(job, new_seq=True)
                elif job.rec.status is Status.RETRYING:
                    self._set(job, status=Status.QUEUED)
                else:
                    continue
                self._reindex(self._lane_key(job.rec))

    def _release_from_lease(self, token: int, rec: JobRecord) -> None:
        lease = self._leases.get(token)
        if lease is None:
            return
        key = self._lane_key(rec)
        ids = lease.lanes.get(key)
        if ids is not None:
            ids.discard(rec.id)
            if not ids:
                del lease.lanes[key]
                lane = self._lanes.get(key)
                if lane is not None and lane.held == token:
                    lane.held = None
                self._reindex(key)
        if not lease.lanes:
            del self._leases[token]

    def _drop_unique(self, rec: JobRecord) -> None:
        if rec.unique is not None and self._unique.get(rec.unique) == rec.id:
            del self._unique[rec.unique]

    def _store(self, new: NewJob, now: float) -> JobRecord:
        run_at = new.run_at if new.run_at is not None else now + new.delay_s
        status = Status.SCHEDULED if run_at > now else Status.QUEUED
        rec = JobRecord(
            id=new.id,
            task=new.task,
            queue=new.queue,
            lane=new.lane,
            priority=new.priority,
            payload=new.payload,
            status=status,
            attempts=0,
            max_attempts=new.max_attempts,
            timeout_s=new.timeout_s,
            unique=new.unique,
            result_ttl_s=new.result_ttl_s,
            on_dead=new.on_dead,
            enqueued_at=now,
            run_at=run_at,
        )
        job = _Job(rec)
        self._jobs[rec.id] = job
        if new.unique is not None:
            self._unique[new.unique] = rec.id
        if status is Status.SCHEDULED:
            self._schedule(rec, run_at)
        else:
            self._join_lane(job, new_seq=True)
            self._reindex(self._lane_key(rec))
        return job.rec

    # --- enqueue -------------------------------------------------------------------

    def enqueue(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[EnqueueResult]:
        if connection is not None:
            raise ConfigError("memory:// has no transactions: connection= is for SQL backends")
        with self._lock:
            now = self._clock()
            # the due jobs of the queues these join go first (as a claim would promote them)
            self._promote(now, {new.queue for new in jobs if new.lane is not None})
            results = []
            for new in jobs:
                if new.id in self._jobs:
                    results.append(EnqueueResult(new.id, created=False))
                    continue
                existing = self._unique.get(new.unique) if new.unique is not None else None
                if existing is not None:
                    results.append(EnqueueResult(existing, created=False))
                    continue
                results.append(EnqueueResult(self._store(new, now).id, created=True))
            return results

    def claim_tick(self, name: str, tick: float, job: NewJob) -> bool:
        with self._lock:
            if self._ticks.get(name, float("-inf")) >= tick:
                return False
            self._ticks[name] = tick
            if job.unique is None or job.unique not in self._unique:
                self._store(job, self._clock())
            return True

    # --- claim and lease ----------------------------------------------------------------

    def claim(
        self,
        queues: Sequence[str],
        *,
        worker: str,
        limit: int,
        batch: int = 1,
        max_lanes: int | None = None,
        lease_s: float,
    ) -> list[JobRecord]:
        with self._lock:
            now = self._clock()
            self._promote(now)
            taken: list[JobRecord] = []
            lanes_taken = 0
            self._token += 1
            token = self._token
            lease = _Lease(worker, now + lease_s, {})
            for queue in queues:
                heap = self._ready.get(queue)
                while heap and len(taken) < limit and (max_lanes is None or lanes_taken < max_lanes):
                    _, seq, key = heapq.heappop(heap)
                    lane = self._lanes.get(key)
                    if lane is None or lane.held is not None:
                        continue
                    head = self._head(lane)
                    if head is None or head.rec.seq != seq or head.rec.status is not Status.QUEUED:
                        continue
                    got = self._take_lane(lane, key, min(batch, limit - len(taken)), token, worker, now)
                    lease.lanes[key] = {rec.id for rec in got}
                    taken.extend(got)
                    lanes_taken += 1
            if taken:
                self._leases[token] = lease
            return taken

    def _take_lane(
        self, lane: _Lane, key: _LaneKey, count: int, token: int, worker: str, now: float
    ) -> list[JobRecord]:
        lane.held = token
        got: list[JobRecord] = []
        while len(got) < count:
            head = self._head(lane)
            if head is None or head.rec.status is not Status.QUEUED:
                break
            heapq.heappop(lane.pending)
            rec = self._set(
                head,
                status=Status.RUNNING,
                attempts=head.rec.attempts + 1,
                token=token,
                worker=worker,
                started_at=now,
            )
            got.append(rec)
        return got

    def extend(self, tokens: Sequence[int], lease_s: float) -> list[bool]:
        with self._lock:
            now = self._clock()
            out = []
            for token in tokens:
                lease = self._leases.get(token)
                alive = lease is not None and lease.expires_at > now
                if lease is not None and alive:
                    lease.expires_at = now + lease_s
                out.append(alive)
            return out

    def finish(self, outcomes: Sequence[Outcome], *, connection: Any = None) -> list[bool]:
        if connection is not None:
            raise ConfigError("memory:// has no transactions: connection= is for SQL backends")
        with self._lock:
            now = self._clock()
            return [self._finish_one(o, now) for o in outcomes]

    def _finish_one(self, o: Outcome, now: float) -> bool:
        job = self._jobs.get(o.job_id)
        lease = self._leases.get(o.token)
        if job is None or job.rec.status is not Status.RUNNING or job.rec.token != o.token:
            return False
        if lease is None or lease.expires_at <= now:
            return False
        rec = job.rec
        if o.verdict is Verdict.SUCCEEDED:
            self._set(job, status=Status.SUCCEEDED, result=o.result, finished_at=now, token=None)
            job.expires_at = now + rec.result_ttl_s
            self._drop_unique(rec)
        elif o.verdict is Verdict.RETRY:
            due = now + o.delay_s
            self._set(
                job, status=Status.RETRYING, run_at=due, error=o.error, traceback=o.traceback, token=None
            )
            self._schedule(rec, due)
            self._join_lane(job, new_seq=False)
        elif o.verdict is Verdict.DEAD:
            self._go_dead(job, o.error, o.traceback, now)
        else:
            self._give_back(job)
        self._release_from_lease(o.token, rec)
        return True

    def _go_dead(self, job: _Job, error: str | None, tb: str | None, now: float) -> None:
        self._set(job, status=Status.DEAD, error=error, traceback=tb, finished_at=now, token=None)
        job.expires_at = None
        self._drop_unique(job.rec)
        if self._in_lane(job.rec):
            self._join_lane(job, new_seq=False)

    def sweep(self, *, worker: str | None = None) -> int:
        with self._lock:
            now = self._clock()
            recovered = 0
            for token, lease in list(self._leases.items()):
                if lease.expires_at > now and lease.worker != worker:
                    continue
                for ids in list(lease.lanes.values()):
                    # only the lane's first job can have been running: the rest of a batch
                    # behind it never started, and gets the attempt its claim counted back
                    lane = sorted((self._jobs[job_id] for job_id in ids), key=lambda j: j.rec.seq or 0)
                    for i, job in enumerate(lane):
                        recovered += self._recover(job, token, now, attempted=i == 0)
            for job_id, job in list(self._jobs.items()):
                if job.expires_at is not None and job.expires_at <= now:
                    del self._jobs[job_id]
            return recovered

    def _give_back(self, job: _Job) -> None:
        """Back to its place in its lane, the attempt its claim counted not spent."""
        self._set(job, status=Status.QUEUED, attempts=job.rec.attempts - 1, token=None)
        self._join_lane(job, new_seq=False)

    def _schedule(self, rec: JobRecord, due: float) -> None:
        heapq.heappush(self._timers.setdefault(rec.queue, []), (due, next(self._timer_seq), rec.id))

    def _recover(self, job: _Job, token: int, now: float, *, attempted: bool) -> int:
        rec = job.rec
        if not attempted:
            self._give_back(job)
        elif rec.attempts >= rec.max_attempts:
            error = f"lease expired: worker lost while running attempt {rec.attempts} of {rec.max_attempts}"
            self._go_dead(job, error, None, now)
        else:
            self._set(job, status=Status.QUEUED, token=None, error="lease expired: worker lost; re-queued")
            self._join_lane(job, new_seq=False)
        self._release_from_lease(token, rec)
        return 1

    def wait(self, queues: Sequence[str], timeout_s: float) -> None:
        with self._lock:
            if any(self._ready.get(q) for q in queues):
                return
            step = 0.01 if any(self._timers.values()) else timeout_s
            self._lock.wait(min(step, timeout_s))

    # --- inspect and operate ------------------------------------------------------------

    def now(self) -> float:
        return self._clock()

    def get_job(self, job_id: str) -> JobRecord | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return None if job is None else job.rec

    def list_jobs(
        self,
        *,
        queue: str | None = None,
        status: Status | None = None,
        lane: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[JobRecord]:
        limit, offset, status = page_args(limit, offset, status)
        with self._lock:
            recs = [
                j.rec
                for j in reversed(self._jobs.values())
                if (queue is None or j.rec.queue == queue)
                and (status is None or j.rec.status is status)
                and (lane is None or j.rec.lane == lane)
            ]
            return recs[offset : offset + limit]

    def cancel(self, job_id: str) -> bool:
        with self._lock:
            job = self._jobs.get(job_id)
            cancellable = (Status.SCHEDULED, Status.QUEUED, Status.RETRYING, Status.DEAD)
            if job is None or job.rec.status not in cancellable:
                return False
            now = self._clock()
            self._set(job, status=Status.CANCELLED, finished_at=now)
            job.expires_at = now + job.rec.result_ttl_s
            self._drop_unique(job.rec)
            self._reindex(self._lane_key(job.rec))
            return True

    def retry(self, job_id: str) -> bool:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.rec.status not in (Status.DEAD, Status.CANCELLED):
                return False
            rec = job.rec
            if rec.unique is not None and rec.unique in self._unique:
                return False
            was_in_lane = self._in_lane(rec)
            now = self._clock()
            self._set(job, status=Status.QUEUED, attempts=0, run_at=now, finished_at=None)
            job.expires_at = None
            if rec.unique is not None:
                self._unique[rec.unique] = rec.id
            if not was_in_lane:
                self._join_lane(job, new_seq=rec.seq is None)
            self._reindex(self._lane_key(job.rec))
            return True

    def purge(self, *, status: Status = Status.DEAD, queue: str | None = None) -> int:
        if status.pending:
            raise ConfigError(f"purge takes a final status, not {status.value!r}")
        with self._lock:
            doomed = [
                j.rec
                for j in self._jobs.values()
                if j.rec.status is status and (queue is None or j.rec.queue == queue)
            ]
            for rec in doomed:
                del self._jobs[rec.id]
                self._reindex(self._lane_key(rec))
            return len(doomed)

    def stats(self) -> list[QueueStats]:
        with self._lock:
            now = self._clock()
            counts: dict[str, dict[Status, int]] = {}
            oldest: dict[str, float] = {}
            for job in self._jobs.values():
                rec = job.rec
                per = counts.setdefault(rec.queue, dict.fromkeys(Status, 0))
                per[rec.status] += 1
                if rec.status is Status.QUEUED:
                    oldest[rec.queue] = min(oldest.get(rec.queue, now), rec.run_at)
            lanes: dict[str, int] = {}
            for queue, name in self._lanes:
                if not name.startswith(_SOLO):
                    lanes[queue] = lanes.get(queue, 0) + 1
            return [
                QueueStats(
                    queue=q,
                    scheduled=c[Status.SCHEDULED],
                    queued=c[Status.QUEUED],
                    running=c[Status.RUNNING],
                    retrying=c[Status.RETRYING],
                    succeeded=c[Status.SUCCEEDED],
                    dead=c[Status.DEAD],
                    cancelled=c[Status.CANCELLED],
                    lanes=lanes.get(q, 0),
                    oldest_queued_age_s=(now - oldest[q]) if q in oldest else None,
                )
                for q, c in sorted(counts.items())
            ]

    def lanes(self, queue: str, *, limit: int = 100) -> list[LaneInfo]:
        limit = page_limit(limit)
        with self._lock:
            now = self._clock()
            infos = []
            for (q, name), lane in self._lanes.items():
                if q != queue or name.startswith(_SOLO):
                    continue
                info = self._lane_info(q, name, lane, now)
                if info is not None:
                    infos.append(info)
            infos.sort(key=lambda i: -i.head_age_s)
            return infos[:limit]

    def _lane_info(self, queue: str, name: str, lane: _Lane, now: float) -> LaneInfo | None:
        members = [
            self._jobs[job_id].rec
            for seq, job_id in set(lane.pending)
            if job_id in self._jobs
            and self._jobs[job_id].rec.seq == seq
            and self._lane_key(self._jobs[job_id].rec) == (queue, name)
            and self._in_lane(self._jobs[job_id].rec)
        ]
        if lane.held is not None:
            lease = self._leases.get(lane.held)
            held_ids = lease.lanes.get((queue, name), set()) if lease else set()
            members += [self._jobs[i].rec for i in held_ids]
        if not members:
            return None
        head = min(members, key=lambda r: r.seq or 0)
        return LaneInfo(
            queue=queue,
            lane=name,
            depth=len(members),
            head_id=head.id,
            head_status=head.status,
            head_attempts=head.attempts,
            head_age_s=now - head.enqueued_at,
            held=lane.held is not None,
            blocked=head.status is Status.DEAD,
        )

    def put_meta(self, key: str, value: bytes | None) -> None:
        with self._lock:
            if value is None:
                self._meta.pop(key, None)
            else:
                self._meta[key] = value

    def get_meta(self, prefix: str) -> dict[str, bytes]:
        with self._lock:
            return {k: v for k, v in self._meta.items() if k.startswith(prefix)}

    def close(self) -> None:
        with self._lock:
            self._lock.notify_all()
