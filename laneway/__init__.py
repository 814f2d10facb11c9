"""laneway: a job and message queue with order per key at any scale.

Producers tag work with a *lane*; any number of workers pull it; one lane's work runs
one item at a time in send order while different lanes run in parallel, and nothing is
lost when a worker or a server dies. See ``docs/`` for the guide and the contract.
"""

from __future__ import annotations

from ._app import App
from ._errors import (
    ConfigError,
    DecodeError,
    EncodeError,
    Fail,
    JobCancelled,
    JobFailed,
    JobTimeout,
    LanewayError,
    LeaseLost,
    PayloadTooLarge,
    Retry,
    UnknownTask,
)
from ._execute import current_job
from ._job import Job
from ._lanes import Batch, LaneProducer
from ._middleware import Envelope, Middleware
from ._records import JobRecord, OnDead, Priority, Status
from ._task import BoundTask, Task
from ._worker import Worker, WorkerListener, WorkerStats

HIGH = Priority.HIGH
NORMAL = Priority.NORMAL
LOW = Priority.LOW
BULK = Priority.BULK

__version__ = "0.1.0"

__all__ = [
    "BULK",
    "HIGH",
    "LOW",
    "NORMAL",
    "App",
    "Batch",
    "BoundTask",
    "ConfigError",
    "DecodeError",
    "EncodeError",
    "Envelope",
    "Fail",
    "Job",
    "JobCancelled",
    "JobFailed",
    "JobRecord",
    "JobTimeout",
    "LaneProducer",
    "LanewayError",
    "LeaseLost",
    "Middleware",
    "OnDead",
    "PayloadTooLarge",
    "Priority",
    "Retry",
    "Status",
    "Task",
    "UnknownTask",
    "Worker",
    "WorkerListener",
    "WorkerStats",
    "current_job",
]
