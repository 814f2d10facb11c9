"""Record what a laneway run did, then check the record against laneway's promises.

Every fault run (``laneway demo``, ``laneway chaos``, the fault tests) writes one
:class:`Event` per enqueue, claim, start, side effect, ack, refused ack, nack and
dead-lettering. Workers are separate processes, so :class:`HistoryRecorder` writes one
JSON-lines file per process into a shared directory, one unbuffered ``write`` per event:
a ``kill -9`` loses at most the event being written, and :func:`load_history` skips a
torn last line. :func:`check_history` then classifies the merged history into a
:class:`Report`.

Classification rules (each job is identified by ``job_id``; its lane and seq come from
``expected`` when given, otherwise from its ENQUEUE event):

* **lost** -- a job that was enqueued or expected, has no accepted ACK and never went
  DEAD. Dead jobs are not lost; they are listed in :attr:`Report.dead`.
* **duplicated** -- a job that executed more than once, where the number of executions
  is ``max(#EFFECT, #ACK + #ACK_REFUSED)``: recorded side effects, or, for workloads
  that do not record effects, handler runs that got as far as trying to ack. At-least-once
  permits this for jobs redelivered after a worker lost its lease (killed, paused), so a
  duplicate is *allowed* when ``allow_duplicates_for`` lists it, or, when that argument is
  ``None``, when it is explained by redelivery: at most one accepted ACK and no more
  executions than CLAIMs.
* **duplicate_acks** -- a job with more than one accepted ACK. Always a bug: fencing must
  refuse every ack after the first, whatever the caller allows.
* **unexpected** -- a job that was claimed, started, had an effect or was acked but was
  never enqueued nor expected, or whose events name a different lane or seq than its
  enqueue (or ``expected``) did.
* **order_violations** -- within a lane, a job whose first START happened strictly
  before every job with a lower seq had *finished*. A job finishes at its first accepted
  ACK or its DEAD event, whichever comes first; NACKs do not finish a job, so a lane must
  wait for the retries of seq ``n`` before starting seq ``n + 1``. A predecessor that
  never finished blocks its lane forever. Events at the same time are not a violation.
* **stale_acks** -- an accepted ACK whose fencing token is not the latest token a CLAIM
  issued for that job at that moment, that carries no token although the job's claims
  carry tokens, that precedes every CLAIM of the job, or that comes from a different
  worker than the one the latest token was issued to. Jobs without any recorded CLAIM are
  not checked. ACK_REFUSED events are never stale: refusing them is what fencing is for.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time as _time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

__all__ = [
    "Duplicate",
    "DuplicateAck",
    "Event",
    "EventKind",
    "HistoryFormatError",
    "HistoryRecorder",
    "JobRef",
    "OrderViolation",
    "Report",
    "StaleAck",
    "Unexpected",
    "check_history",
    "load_history",
]

_SUFFIX = ".jsonl"
_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


class EventKind(str, Enum):
    """What happened to a job.

    Attributes:
        ENQUEUE: The producer's send was accepted by the backend.
        CLAIM: The backend leased the job to a worker and issued a fencing token.
        START: A worker began running the handler.
        EFFECT: The handler's side effect was applied.
        ACK: The backend accepted a worker's ack; the job is done.
        ACK_REFUSED: The backend refused an ack because the worker's lease was lost.
        NACK: The attempt failed and the job will be retried; the lane stays blocked.
        DEAD: The job reached a terminal state other than success (dead-lettered,
            cancelled or skipped by ``on_dead``); its lane moves on.
    """

    ENQUEUE = "ENQUEUE"
    CLAIM = "CLAIM"
    START = "START"
    EFFECT = "EFFECT"
    ACK = "ACK"
    ACK_REFUSED = "ACK_REFUSED"
    NACK = "NACK"
    DEAD = "DEAD"


class HistoryFormatError(ValueError):
    """A history file holds a line that is neither a valid event nor a torn last line."""


@dataclass(frozen=True, slots=True)
class Event:
    """One recorded step in a job's life.

    Attributes:
        kind: What happened.
        job_id: The job's id.
        lane: The job's lane (ordering key), or ``None`` for a job without one.
        seq: The producer's sequence number of the job within its lane: 0, 1, 2, ...
        worker: Who recorded the event (worker, producer or backend name).
        token: The fencing token of the lease involved, if any.
        time: Backend time, or wall time, in seconds.
        attempt: The delivery attempt number, if known.
    """

    kind: EventKind
    job_id: str
    lane: str | None
    seq: int
    worker: str
    token: int | None
    time: float
    attempt: int | None = None

    def to_dict(self) -> dict[str, object]:
        """Return the event as a JSON-serialisable dict."""
        return {
            "kind": self.kind.value,
            "job_id": self.job_id,
            "lane": self.lane,
            "seq": self.seq,
            "worker": self.worker,
            "token": self.token,
            "time": self.time,
            "attempt": self.attempt,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Event:
        """Build an event from the dict produced by :meth:`to_dict`.

        Raises:
            HistoryFormatError: If a field is missing or has the wrong type.
        """
        kind = _req_str(data, "kind")
        if kind not in EventKind.__members__:
            raise HistoryFormatError(f"unknown event kind {kind!r}")
        time = data.get("time")
        if isinstance(time, bool) or not isinstance(time, int | float):
            raise HistoryFormatError(f"event field 'time' has bad value {time!r}")
        return cls(
            kind=EventKind(kind),
            job_id=_req_str(data, "job_id"),
            lane=_opt_str(data, "lane"),
            seq=_req_int(data, "seq"),
            worker=_req_str(data, "worker"),
            token=_opt_int(data, "token"),
            time=float(time),
            attempt=_opt_int(data, "attempt"),
        )


def _opt_str(data: Mapping[str, object], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise HistoryFormatError(f"event field {name!r} has bad value {value!r}")
    return value


def _req_str(data: Mapping[str, object], name: str) -> str:
    value = _opt_str(data, name)
    if value is None:
        raise HistoryFormatError(f"event field {name!r} is missing")
    return value


def _opt_int(data: Mapping[str, object], name: str) -> int | None:
    value = data.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise HistoryFormatError(f"event field {name!r} has bad value {value!r}")
    return value


def _req_int(data: Mapping[str, object], name: str) -> int:
    value = _opt_int(data, name)
    if value is None:
        raise HistoryFormatError(f"event field {name!r} is missing")
    return value


class HistoryRecorder:
    """Append events to this process's own JSON-lines file in a shared directory.

    Each process (and each recorder) writes its own file, named after the worker, the
    process id and a random suffix, so processes never interleave writes. Every event is
    written with a single unbuffered ``os.write`` of one complete line: a ``kill -9``
    loses at most the event being written, which :func:`load_history` tolerates. After a
    ``fork`` the child transparently switches to a file of its own.

    The recorder is thread-safe and can be used as a context manager.

    Args:
        directory: Directory shared by all processes of the run; created if missing.
        worker: Default ``worker`` for recorded events.
    """

    def __init__(self, directory: str | os.PathLike[str], worker: str) -> None:
        self._directory = Path(directory)
        self._directory.mkdir(parents=True, exist_ok=True)
        self._worker = worker
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid: int | None = None
        self._path: Path | None = None

    @property
    def worker(self) -> str:
        """The default worker name stamped on recorded events."""
        return self._worker

    @property
    def path(self) -> Path | None:
        """The file this process writes to, or ``None`` before the first event."""
        return self._path if self._pid == os.getpid() else None

    def record(
        self,
        kind: EventKind | str,
        job_id: str,
        lane: str | None,
        seq: int,
        *,
        token: int | None = None,
        time: float | None = None,
        attempt: int | None = None,
        worker: str | None = None,
    ) -> Event:
        """Record one event and return it.

        Args:
            kind: What happened (an :class:`EventKind` or its name).
            job_id: The job's id.
            lane: The job's lane, or ``None``.
            seq: The job's sequence number within its lane.
            token: The fencing token involved, if any.
            time: Backend time; defaults to the wall clock.
            attempt: The delivery attempt number, if known.
            worker: Overrides the recorder's default worker name.

        Returns:
            The event that was written.
        """
        event = Event(
            kind=EventKind(kind),
            job_id=job_id,
            lane=lane,
            seq=seq,
            worker=self._worker if worker is None else worker,
            token=token,
            time=_time.time() if time is None else time,
            attempt=attempt,
        )
        self.write(event)
        return event

    def write(self, event: Event) -> None:
        """Append an already built event as one line."""
        line = json.dumps(event.to_dict(), separators=(",", ":")) + "\n"
        data = line.encode("utf-8")
        with self._lock:
            fd = self._file_for_this_process()
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])

    def close(self) -> None:
        """Close this process's file; a later :meth:`record` opens a new one."""
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None
            self._pid = None

    def __enter__(self) -> HistoryRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _file_for_this_process(self) -> int:
        pid = os.getpid()
        if self._fd is not None and self._pid == pid:
            return self._fd
        # A forked child inherits the parent's descriptor; leave it to the parent.
        safe_worker = _UNSAFE_FILENAME_CHARS.sub("_", self._worker)[:64] or "worker"
        name = f"{safe_worker}.{pid}.{uuid.uuid4().hex[:12]}{_SUFFIX}"
        self._path = self._directory / name
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self._path, flags, 0o644)
        self._pid = pid
        return self._fd


def load_history(directory: str | os.PathLike[str]) -> list[Event]:
    """Load and merge every history file in ``directory``.

    Events are sorted by ``time``; ties keep file-name order, then line order, so the
    result is deterministic and a process's events at equal times stay in write order.

    Args:
        directory: The directory the :class:`HistoryRecorder` instances wrote to.

    Returns:
        All events, oldest first. A missing or empty directory gives an empty list.

    Raises:
        HistoryFormatError: If a line other than an unterminated last line is invalid.
    """
    root = Path(directory)
    if not root.is_dir():
        return []
    events: list[Event] = []
    for path in sorted(root.glob(f"*{_SUFFIX}")):
        events.extend(_read_file(path))
    events.sort(key=lambda event: event.time)
    return events


def _read_file(path: Path) -> Iterator[Event]:
    lines = path.read_bytes().split(b"\n")
    last = len(lines) - 1  # Text after the final newline: empty, or a torn write.
    for number, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise HistoryFormatError(f"expected a JSON object, got {data!r}")
            yield Event.from_dict(data)
        except (ValueError, UnicodeDecodeError) as exc:
            if number == last:
                return  # The writer was killed mid-line: that event is lost.
            raise HistoryFormatError(f"{path}:{number + 1}: {exc}") from exc


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
    ordered = sorted(events, key=lambda event: event.time)
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
    elif kind is EventKind.START:
        if job.first_start is None:
            job.first_start = event.time
        job.workers.add(event.worker)
    elif kind is EventKind.EFFECT:
        job.effects += 1
        job.workers.add(event.worker)
    elif kind is EventKind.ACK_REFUSED:
        job.refused += 1
    elif kind is EventKind.ACK or kind is EventKind.DEAD:
        if kind is EventKind.ACK:
            job.accepted.append(event)
        else:
            job.dead = True
        if job.finished_at is None:
            job.finished_at = event.time


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
        if executions <= 1:
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
    for job in jobs:
        if not job.known and job.ran:
            found.append(Unexpected(job.ref, "ran but was never enqueued nor expected"))
        elif job.known and job.mismatch is not None:
            found.append(Unexpected(job.ref, job.mismatch))
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
