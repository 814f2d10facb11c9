"""Check a run's history against laneway's promises: :func:`check_history` and its :class:`Report`.

The history is the merged events of every process of a run (``laneway._events``).

Classification rules (each job is identified by ``job_id``; its lane and seq come from
``expected`` when given, otherwise from its ENQUEUE event):

* **lost** -- a job that was enqueued or expected, has no accepted ACK and never went
  DEAD. Dead jobs are not lost; they are listed in :attr:`Report.dead`.
* **duplicated** -- a job that executed more than once, where the number of executions
  is ``max(#EFFECT, #ACK + #ACK_REFUSED)``: recorded side effects, or, for workloads
  that do not record effects, handler runs that got as far as trying to ack. A job's
  failed attempts (each NACK, and a DEAD that an operator's retry may follow) each
  explain one more execution: a job that failed once and then succeeded ran twice by
  design and is not counted. At-least-once
  permits this for jobs redelivered after a worker lost its lease (killed, paused), so a
  duplicate is *allowed* when ``allow_duplicates_for`` lists it, or, when that argument is
  ``None``, when it is explained by redelivery: at most one accepted ACK and no more
  executions than CLAIMs. A job CLAIMed again after one of its ACKs was accepted is never
  allowed: no lost lease explains delivering a succeeded job again.
* **duplicate_acks** -- a job with more than one accepted ACK. Always a bug: fencing must
  refuse every ack after the first, whatever the caller allows.
* **unexpected** -- a job that was claimed, started, had an effect or was acked but was
  never enqueued nor expected, or whose events name a different lane or seq than its
  enqueue (or ``expected``) did, or that was sent with the same lane and seq as another job.
* **order_violations** -- within a lane, a job whose first START happened strictly
  before every job with a lower seq had *finished*. A job finishes at its first accepted
  ACK or its DEAD event, whichever comes first; NACKs do not finish a job, so a lane must
  wait for the retries of seq ``n`` before starting seq ``n + 1``. A predecessor that
  never finished blocks its lane forever. Events at the same time are not a violation.
  Also a violation: a job STARTed again (a retry, a redelivery, an operator's retry of a
  dead job) while a job with a higher seq of its lane was running, i.e. after that job's
  first START and before its finish. A job whose START line is missing counts as started at
  its first EFFECT or ACK. Events at equal times are ordered CLAIM first.
* **stale_acks** -- an accepted ACK whose fencing token is not the latest token a CLAIM
  issued for that job at that moment, that carries no token although the job's claims
  carry tokens, that precedes every CLAIM of the job, or that comes from a different
  worker than the one the latest token was issued to. Jobs without any recorded CLAIM are
  not checked. ACK_REFUSED events are never stale: refusing them is what fencing is for.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import NamedTuple

from ._events import Event, EventKind


class JobRef(NamedTuple):
    """A job's identity: ``(job_id, lane, seq)``."""

    job_id: str
    lane: str | None
    seq: int


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A job that executed more than once.

    Attributes:
        job: The job.
        executions: ``max(#EFFECT, #ACK + #ACK_REFUSED)``.
        claims: How many CLAIMs (deliveries) the job had.
        accepted_acks: How many of its acks the backend accepted.
        workers: The workers that executed it, sorted.
        allowed: Whether the duplicate is permitted (see :func:`check_history`).
        reason: Why it is or is not permitted.
    """

    job: JobRef
    executions: int
    claims: int
    accepted_acks: int
    workers: tuple[str, ...]
    allowed: bool
    reason: str


@dataclass(frozen=True, slots=True)
class DuplicateAck:
    """A job with more than one accepted ACK: fencing failed.

    Attributes:
        job: The job.
        acks: Every accepted ACK of the job, oldest first.
    """

    job: JobRef
    acks: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class Unexpected:
    """A job that ran without being enqueued or expected, or under another identity.

    Attributes:
        job: The job as its events describe it.
        reason: What is wrong.
    """

    job: JobRef
    reason: str


@dataclass(frozen=True, slots=True)
class OrderViolation:
    """A job that started before an earlier job of its lane had finished.

    Attributes:
        job: The job that started too early.
        started_at: When it first started.
        blocking: The earlier job (lower seq) that had not finished yet; when several
            had not, the one that finished last (or never).
        blocking_finished_at: When ``blocking`` finished, or ``None`` if it never did.
    """

    job: JobRef
    started_at: float
    blocking: JobRef
    blocking_finished_at: float | None


@dataclass(frozen=True, slots=True)
class StaleAck:
    """An ACK the backend accepted although the worker's lease was not current.

    Attributes:
        job: The job.
        ack: The accepted ACK.
        latest_token: The latest token a CLAIM had issued for the job at that moment.
        latest_worker: The worker that token was issued to.
        reason: What is wrong.
    """

    job: JobRef
    ack: Event
    latest_token: int | None
    latest_worker: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Report:
    """The classification of one history; see the module docstring for the rules.

    Attributes:
        jobs: Number of jobs enqueued or expected.
        events: Number of events checked.
        lost: Jobs never acked nor dead.
        duplicated: Jobs that executed more than once, allowed or not.
        duplicate_acks: Jobs with more than one accepted ACK.
        unexpected: Jobs that ran without being enqueued or expected.
        order_violations: Jobs that started before an earlier job of their lane finished.
        stale_acks: Accepted ACKs carrying a superseded fencing token.
        dead: Jobs that went DEAD (not an anomaly; reported for completeness).
    """

    jobs: int
    events: int
    lost: tuple[JobRef, ...] = ()
    duplicated: tuple[Duplicate, ...] = ()
    duplicate_acks: tuple[DuplicateAck, ...] = ()
    unexpected: tuple[Unexpected, ...] = ()
    order_violations: tuple[OrderViolation, ...] = ()
    stale_acks: tuple[StaleAck, ...] = ()
    dead: tuple[JobRef, ...] = ()

    @property
    def disallowed_duplicates(self) -> tuple[Duplicate, ...]:
        """The duplicates that at-least-once does not excuse."""
        return tuple(dup for dup in self.duplicated if not dup.allowed)

    @property
    def counts(self) -> dict[str, int]:
        """Number of entries per category, keyed by attribute name."""
        return {
            "jobs": self.jobs,
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "disallowed_duplicates": len(self.disallowed_duplicates),
            "duplicate_acks": len(self.duplicate_acks),
            "unexpected": len(self.unexpected),
            "order_violations": len(self.order_violations),
            "stale_acks": len(self.stale_acks),
            "dead": len(self.dead),
        }

    @property
    def ok(self) -> bool:
        """True when the history keeps every promise (allowed duplicates are fine)."""
        return not (
            self.lost
            or self.disallowed_duplicates
            or self.duplicate_acks
            or self.unexpected
            or self.order_violations
            or self.stale_acks
        )

    def summary(self) -> str:
        """One line for humans, e.g. ``"20 jobs, 0 lost, 3 duplicated (...), ..."``."""
        reasons = Counter(dup.reason for dup in self.duplicated)
        why = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
        duplicated = f"{len(self.duplicated)} duplicated" + (f" ({why})" if why else "")
        parts = [
            f"{self.jobs} jobs",
            f"{len(self.lost)} lost",
            duplicated,
            f"{len(self.duplicate_acks)} duplicate acks",
            f"{len(self.unexpected)} unexpected",
            f"{len(self.order_violations)} out of order",
            f"{len(self.stale_acks)} stale acks",
            f"{len(self.dead)} dead",
        ]
        return ", ".join(parts)

    def details(self, limit: int = 10) -> str:
        """The summary followed by up to ``limit`` examples of each anomaly."""
        lines = [self.summary()]
        sections: list[tuple[str, tuple[object, ...]]] = [
            ("lost", self.lost),
            ("duplicated (not allowed)", self.disallowed_duplicates),
            ("duplicate acks", self.duplicate_acks),
            ("unexpected", self.unexpected),
            ("out of order", self.order_violations),
            ("stale acks", self.stale_acks),
        ]
        for title, items in sections:
            if items:
                lines.append(f"{title}:")
                lines.extend(f"  {item!r}" for item in items[:limit])
                if len(items) > limit:
                    lines.append(f"  ... and {len(items) - limit} more")
        return "\n".join(lines)


@dataclass(slots=True)
class _Job:
    """Everything the checker learned about one job (mutable, internal)."""

    ref: JobRef
    known: bool = False
    mismatch: str | None = None
    claims: int = 0
    effects: int = 0
    refused: int = 0
    first_start: float | None = None
    starts: list[float] = field(default_factory=list)
    claims_after_ack: int = 0
    failed: int = 0
    finished_at: float | None = None
    dead: bool = False
    ran: bool = False
    accepted: list[Event] = field(default_factory=list)
    workers: set[str] = field(default_factory=set)


_RUN_KINDS = frozenset(
    {EventKind.CLAIM, EventKind.START, EventKind.EFFECT, EventKind.ACK, EventKind.ACK_REFUSED}
)


def check_history(
    events: Iterable[Event],
    *,
    expected: Iterable[tuple[str, str | None, int]] | None = None,
    allow_duplicates_for: Iterable[str] | None = None,
) -> Report:
    """Classify a history: lost, duplicated, unexpected, out of order, stale acks.

    The rules are in the module docstring. Runs in ``O(n log n)`` for ``n`` events.
    Order and fencing checks compare times across processes, so every event's ``time``
    must come from one clock: the backend's, or the wall clock of a single machine.

    Args:
        events: The history, in any order; it is sorted by time (stably) first.
        expected: The ``(job_id, lane, seq)`` of every job the producers sent. Jobs
            that were neither enqueued nor expected are ``unexpected``; expected jobs
            that never finished are ``lost`` even without an ENQUEUE event.
        allow_duplicates_for: The job ids allowed to execute more than once (e.g. those
            in flight on killed workers). ``None`` allows exactly the duplicates that
            lease-loss redelivery explains; an empty set allows none.

    Returns:
        The report.
    """
    # At equal times a CLAIM goes first: a claim and an accepted ack of one job at the same
    # instant are a stale ack (or a redelivery after the ack) in either order, whatever the
    # order the workers' files happened to be read in.
    ordered = sorted(events, key=lambda event: (event.time, event.kind is not EventKind.CLAIM))
    jobs = _collect(ordered, expected)
    allowed = None if allow_duplicates_for is None else frozenset(allow_duplicates_for)
    known = [job for job in jobs.values() if job.known]
    duplicated, duplicate_acks = _find_duplicates(jobs.values(), allowed)
    return Report(
        jobs=len(known),
        events=len(ordered),
        lost=tuple(job.ref for job in known if job.finished_at is None),
        duplicated=duplicated,
        duplicate_acks=duplicate_acks,
        unexpected=_find_unexpected(jobs.values()),
        order_violations=_find_order_violations(known),
        stale_acks=_find_stale_acks(ordered, jobs),
        dead=tuple(job.ref for job in known if job.dead),
    )


def _collect(ordered: list[Event], expected: Iterable[tuple[str, str | None, int]] | None) -> dict[str, _Job]:
    jobs: dict[str, _Job] = {}
    for job_id, lane, seq in expected or ():
        jobs[job_id] = _Job(ref=JobRef(job_id, lane, seq), known=True)
    for event in ordered:
        job = jobs.get(event.job_id)
        if job is None:
            ref = JobRef(event.job_id, event.lane, event.seq)
            job = jobs[event.job_id] = _Job(ref=ref, known=event.kind is EventKind.ENQUEUE)
        elif event.kind is EventKind.ENQUEUE and not job.known:
            job.known = True  # Ran before its enqueue was recorded: identity from here on.
            if (event.lane, event.seq) != (job.ref.lane, job.ref.seq) and job.mismatch is None:
                job.mismatch = (
                    f"its run events name lane {job.ref.lane!r} seq {job.ref.seq} but it was"
                    f" sent as lane {event.lane!r} seq {event.seq}"
                )
            job.ref = JobRef(event.job_id, event.lane, event.seq)
        if (event.lane != job.ref.lane or event.seq != job.ref.seq) and job.mismatch is None:
            job.mismatch = (
                f"{event.kind.value} names lane {event.lane!r} seq {event.seq} but the job"
                f" was sent as lane {job.ref.lane!r} seq {job.ref.seq}"
            )
        _apply(job, event)
    return jobs


def _apply(job: _Job, event: Event) -> None:
    kind = event.kind
    if kind in _RUN_KINDS:
        job.ran = True
    if kind is EventKind.CLAIM:
        job.claims += 1
        if job.accepted:  # a succeeded job is never delivered again (retry() takes dead ones)
            job.claims_after_ack += 1
    elif kind is EventKind.START:
        if job.first_start is None:
            job.first_start = event.time
        job.starts.append(event.time)
        job.workers.add(event.worker)
    elif kind is EventKind.EFFECT:
        job.effects += 1
        job.workers.add(event.worker)
    elif kind is EventKind.ACK_REFUSED:
        job.refused += 1
    elif kind is EventKind.NACK:
        job.failed += 1
    elif kind is EventKind.ACK or kind is EventKind.DEAD:
        if kind is EventKind.ACK:
            job.accepted.append(event)
        else:
            job.dead = True
            job.failed += 1
        if job.finished_at is None:
            job.finished_at = event.time
    if job.first_start is None and kind in (EventKind.EFFECT, EventKind.ACK, EventKind.ACK_REFUSED):
        job.first_start = event.time  # it ran, though its START line is missing


def _find_duplicates(
    jobs: Iterable[_Job], allowed: frozenset[str] | None
) -> tuple[tuple[Duplicate, ...], tuple[DuplicateAck, ...]]:
    duplicated: list[Duplicate] = []
    duplicate_acks: list[DuplicateAck] = []
    for job in jobs:
        accepted = len(job.accepted)
        if accepted > 1:
            duplicate_acks.append(DuplicateAck(job.ref, tuple(job.accepted)))
        executions = max(job.effects, accepted + job.refused)
        if job.claims_after_ack:  # no lost lease explains it, and no caller may allow it
            workers = tuple(sorted(job.workers))
            reason = "delivered again after its ack was accepted"
            duplicated.append(Duplicate(job.ref, executions, job.claims, accepted, workers, False, reason))
            continue
        if executions <= 1 + job.failed:  # each failed attempt is run again: not a duplicate
            continue
        if allowed is not None:
            ok = job.ref.job_id in allowed
            reason = "allowed by caller" if ok else "not in allow_duplicates_for"
        else:
            ok = accepted <= 1 and executions <= job.claims
            reason = "redelivered after a lost lease" if ok else "ran more often than claimed"
        duplicated.append(
            Duplicate(job.ref, executions, job.claims, accepted, tuple(sorted(job.workers)), ok, reason)
        )
    return tuple(duplicated), tuple(duplicate_acks)


def _find_unexpected(jobs: Iterable[_Job]) -> tuple[Unexpected, ...]:
    found: list[Unexpected] = []
    holder: dict[tuple[str, int], str] = {}  # (lane, seq) -> the first job sent as it
    for job in jobs:
        if not job.known and job.ran:
            found.append(Unexpected(job.ref, "ran but was never enqueued nor expected"))
        elif job.known and job.mismatch is not None:
            found.append(Unexpected(job.ref, job.mismatch))
        elif job.known and job.ref.lane is not None:
            other = holder.setdefault((job.ref.lane, job.ref.seq), job.ref.job_id)
            if other != job.ref.job_id:  # the order check cannot tell two such jobs apart
                found.append(
                    Unexpected(
                        job.ref, f"was sent as lane {job.ref.lane!r} seq {job.ref.seq}, as {other} was"
                    )
                )
    return tuple(found)


def _find_order_violations(known: Iterable[_Job]) -> tuple[OrderViolation, ...]:
    lanes: dict[str, list[_Job]] = defaultdict(list)
    for job in known:
        if job.ref.lane is not None:
            lanes[job.ref.lane].append(job)
    violations: list[OrderViolation] = []
    for lane in sorted(lanes):
        violations.extend(_lane_violations(lanes[lane]))
    return tuple(violations)


def _lane_violations(lane_jobs: list[_Job]) -> Iterator[OrderViolation]:
    """Sweep one lane in seq order, tracking the latest finish among lower seqs."""
    lane_jobs.sort(key=lambda job: (job.ref.seq, job.ref.job_id))
    blocker: _Job | None = None  # Among strictly lower seqs: finished last, or never.
    group_start = 0
    for index, job in enumerate(lane_jobs):
        if job.ref.seq != lane_jobs[group_start].ref.seq:
            for earlier in lane_jobs[group_start:index]:
                if blocker is None or _finish_key(earlier) > _finish_key(blocker):
                    blocker = earlier
            group_start = index
        start = job.first_start
        if blocker is None or start is None:
            continue
        finished = blocker.finished_at
        if finished is None or start < finished:
            yield OrderViolation(job.ref, start, blocker.ref, finished)
    yield from _reruns_inside_later_jobs(lane_jobs)


def _reruns_inside_later_jobs(lane_jobs: list[_Job]) -> Iterator[OrderViolation]:
    """A job run again (a retry, a redelivery, an operator's retry of a dead job) while a
    later job of its lane was running: two jobs of one lane at once. Only re-runs are
    looked at; first starts are the sweep's. Lanes are seq-sorted by the caller."""
    for index, job in enumerate(lane_jobs):
        for again in islice(job.starts, 1, None):
            for later in islice(lane_jobs, index + 1, None):
                begun, ended = later.first_start, later.finished_at
                if (
                    later.ref.seq > job.ref.seq
                    and begun is not None
                    and begun < again
                    and (ended is None or again < ended)
                ):
                    yield OrderViolation(job.ref, again, later.ref, ended)
                    break


def _finish_key(job: _Job) -> float:
    return float("inf") if job.finished_at is None else job.finished_at


def _find_stale_acks(ordered: list[Event], jobs: Mapping[str, _Job]) -> tuple[StaleAck, ...]:
    latest: dict[str, tuple[int, str]] = {}
    tokenless_claims: set[str] = set()
    stale: list[StaleAck] = []
    for event in ordered:
        if event.kind is EventKind.CLAIM:
            if event.token is None:
                tokenless_claims.add(event.job_id)
            elif event.job_id not in latest or event.token > latest[event.job_id][0]:
                latest[event.job_id] = (event.token, event.worker)
            continue
        job = jobs[event.job_id]
        if event.kind is not EventKind.ACK or job.claims == 0:
            continue
        token, worker = latest.get(event.job_id, (None, None))
        reason = _stale_reason(event, token, worker, event.job_id in tokenless_claims)
        if reason is not None:
            stale.append(StaleAck(job.ref, event, token, worker, reason))
    return tuple(stale)


def _stale_reason(ack: Event, token: int | None, worker: str | None, tokenless: bool) -> str | None:
    if token is None:
        return None if tokenless else "accepted before any claim of the job"
    if ack.token is None:
        return f"accepted without a token while token {token} was held by {worker}"
    if ack.token != token:
        return f"accepted with token {ack.token} after token {token} was issued to {worker}"
    if ack.worker != worker:
        return f"accepted from {ack.worker} but token {token} was issued to {worker}"
    return None
