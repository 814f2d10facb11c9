"""``laneway.Job``: a handle on one enqueued job."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._checks import seconds
from ._codec import Call, decode_call, loads
from ._errors import JobCancelled, JobFailed
from ._records import JobRecord, Status

if TYPE_CHECKING:
    from ._app import App

_POLL_FIRST_S = 0.005
_POLL_MAX_S = 0.2


class Job:
    """A job's id plus the last state read from the backend.

    ``status`` and the other attributes reflect the last read; ``refresh()`` reads again.
    Handlers and hooks receive a ``Job`` too, with ``args``, ``kwargs`` and ``headers``.
    """

    __slots__ = ("_app", "_call", "_failure", "_reported", "_run", "id", "record")

    def __init__(
        self, app: App, job_id: str, record: JobRecord | None = None, call: Call | None = None
    ) -> None:
        self._app = app
        self.id = job_id
        self.record = record
        self._call = call
        self._run: Callable[[], Any] | None = None  # set by the runner: the handler call
        self._reported: BaseException | None = None  # handed to the exception_reporter already
        self._failure: BaseException | None = None  # why the runner failed this attempt (_Attempt)

    def __repr__(self) -> str:
        status = self.record.status.value if self.record else "?"
        return f"<Job {self.id} {status}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def _rec(self) -> JobRecord:
        if self.record is None:
            self.refresh()
        assert self.record is not None
        return self.record

    def refresh(self) -> Job:
        """Read the job's state again. Raises ``LookupError`` if it no longer exists."""
        rec = self._app.backend.get_job(self.id)
        if rec is None:
            raise LookupError(f"job {self.id} does not exist (never enqueued, pruned or purged)")
        self.record = rec
        return self

    @property
    def status(self) -> Status:
        """Status as of the last read."""
        return self._rec().status

    @property
    def task_name(self) -> str:
        return self._rec().task

    @property
    def queue(self) -> str:
        return self._rec().queue

    @property
    def lane(self) -> str | None:
        return self._rec().lane

    @property
    def attempts(self) -> int:
        return self._rec().attempts

    @property
    def error(self) -> str | None:
        return self._rec().error

    def _decoded(self) -> Call:
        if self._call is None:
            self._call = decode_call(self._rec().payload)
        return self._call

    @property
    def args(self) -> list[Any]:
        """Positional arguments of the call."""
        return self._decoded().args

    @property
    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the call."""
        return self._decoded().kwargs

    @property
    def headers(self) -> dict[str, str]:
        """Headers set by enqueue middleware (trace context and the like)."""
        return self._decoded().headers

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the job to finish and return its result (None if it returned None).

        Raises:
            JobFailed: the job went dead (carries its last error and traceback).
            JobCancelled: the job was cancelled.
            TimeoutError: ``timeout`` seconds passed first.
        """
        deadline = None if timeout is None else time.monotonic() + seconds(timeout, "timeout")
        pause = _POLL_FIRST_S
        while True:
            rec = self.refresh().record
            assert rec is not None
            if rec.status is Status.SUCCEEDED:
                return None if rec.result is None else loads(rec.result, "result")
            if rec.status is Status.DEAD:
                raise JobFailed(self.id, rec.error, rec.traceback)
            if rec.status is Status.CANCELLED:
                raise JobCancelled(f"job {self.id} was cancelled")
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.id} is still {rec.status.value} after {timeout} s")
            wait = pause if deadline is None else min(pause, max(0.0, deadline - time.monotonic()))
            time.sleep(wait)
            pause = min(pause * 2, _POLL_MAX_S)

    def cancel(self) -> bool:
        """Cancel the job unless it is running or finished; returns whether it was."""
        done = self._app.backend.cancel(self.id)
        self.refresh()
        return done
