"""The exceptions laneway raises or understands."""

from __future__ import annotations


class LanewayError(Exception):
    """Base class of every error laneway raises."""


class ConfigError(LanewayError, ValueError):
    """A URL, name or option given to laneway is not valid."""


class EncodeError(LanewayError, TypeError):
    """An argument or result cannot be encoded; nothing was written."""


class DecodeError(LanewayError, ValueError):
    """A stored payload cannot be decoded (written by something else, or corrupted)."""


class PayloadTooLarge(LanewayError, ValueError):
    """The encoded payload is larger than ``max_payload_bytes``; nothing was written."""


class LeaseLost(LanewayError):
    """The worker's lease on a job ran out; its ack or extend was refused (fencing)."""


class JobTimeout(LanewayError):
    """Raised inside a handler that ran past its ``timeout``."""


class UnknownTask(LanewayError, LookupError):
    """A job names a task this worker has not registered."""


class JobFailed(LanewayError):
    """``Job.result()`` of a job that went dead; carries its last error."""

    def __init__(self, job_id: str, error: str | None, traceback: str | None = None) -> None:
        super().__init__(f"job {job_id} is dead: {error}")
        self.job_id = job_id
        self.error = error
        self.traceback = traceback


class JobCancelled(LanewayError):
    """``Job.result()`` of a job that was cancelled."""


class Retry(Exception):
    """Raise in a handler to ask for a retry, optionally after ``delay`` seconds.

    The retry still counts as an attempt; the job goes dead after ``max_attempts``.
    """

    def __init__(self, delay: float | None = None, reason: str | None = None) -> None:
        super().__init__(reason or "retry requested")
        self.delay = delay


class Fail(Exception):
    """Raise in a handler to send the job dead at once, without further retries."""
