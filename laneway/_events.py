"""The history of a run: one :class:`Event` per thing that happened, written by
:class:`HistoryRecorder` as one JSON-lines file per process and merged by :func:`load_history`.

Workers are separate processes, so each writes its own file into a shared directory, one
unbuffered ``write`` per event: a ``kill -9`` loses at most the event being written, and
:func:`load_history` skips a torn last line. ``laneway._checker`` classifies the merged
history; ``laneway._history`` is the one import for both.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time as _time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import TracebackType

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
        if isinstance(time, bool) or not isinstance(time, int | float) or not math.isfinite(time):
            raise HistoryFormatError(
                f"event field 'time' has bad value {time!r}"
            )  # NaN would pass every check
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
