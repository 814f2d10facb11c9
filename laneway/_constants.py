"""Every default and reserved name of laneway, in one place, with units in the names."""

from __future__ import annotations

DEFAULT_URL = "sqlite:///laneway.db"
"""Backend used when neither ``App(url=...)`` nor ``$LANEWAY_URL`` is given."""
URL_ENV = "LANEWAY_URL"
DEFAULT_NAMESPACE = "laneway"
DEFAULT_QUEUE = "default"

MAX_PAYLOAD_BYTES = 1024 * 1024
"""Largest encoded job payload accepted at enqueue (``App(max_payload_bytes=...)``)."""

MAX_ATTEMPTS = 20
"""Deliveries before a failing job goes dead (Sidekiq's 25, Dramatiq's 20)."""
RESULT_TTL_S = 86_400.0
"""How long a finished job and its result are kept."""

LEASE_S = 60.0
"""Lease taken on claimed work; renewed by the worker's heartbeat."""
HEARTBEAT_S = 10.0
"""How often a worker renews its leases (must be well under ``LEASE_S``)."""
SWEEP_S = 5.0
"""How often each worker looks for expired leases of dead workers."""
IDLE_WAIT_S = 1.0
"""Longest a worker with free slots sleeps before asking again (backends wake it sooner)."""
FAILURE_LOG_S = 5.0
"""A worker whose backend calls keep failing logs the traceback at most this often."""
CONCURRENCY = 16
"""Slots per worker process when the app has any sync task: each one a thread that runs a
job. More than Dramatiq's 8 threads because a slot stays busy until its job is acked, so
a worker needs slots to cover the ack-and-claim round trip as well as the jobs."""
CONCURRENCY_ASYNC = 64
"""Slots per worker process when every task of the app runs on the event loop (``async
def``, not transactional, every execution layer with ``acall``): a slot is then a coroutine,
not a thread (taskiq allows 100 by default)."""
LOOP_EXECUTORS = 4
"""Executor threads of a worker whose every task runs on the event loop: one does the idle
wait, the others run what needs a thread (a job of an unknown task, say)."""
GRACE_S = 30.0
"""Time running jobs get to finish after SIGTERM/SIGINT before they are released."""

RETRY_BASE_S = 1.0
"""First retry delay; each later retry doubles it (with jitter)."""
RETRY_MAX_S = 3_600.0
"""Cap on one retry delay."""

PERIODIC_CHECK_S = 0.5
"""How often a worker checks whether a periodic job's tick has come."""
PERIODIC_GRACE_S = 60.0
"""A tick older than this (or than its interval, if shorter) is missed, not replayed."""

PRIORITY_MIN = 0
PRIORITY_MAX = 255

RESERVED_PREFIX = "laneway."
"""Names of the tasks laneway registers for itself (lane messages, the bus's fan-out)."""
MESSAGE_TASK = "laneway.message"
"""Reserved task name of low-level lane messages (``app.lane(...).send``)."""

NAME_MAX_LEN = 200
"""Longest queue, lane, namespace or task name accepted."""

UNIQUE_MAX_LEN = 500
"""Longest ``unique=`` key accepted: at most 2,000 UTF-8 bytes, under PostgreSQL's index
entry limit (about 2,700 bytes) for any text."""

MAX_SECONDS = 100 * 365.25 * 86_400
"""The longest delay, timeout, TTL, lease or backoff accepted (100 years): longer ones are
mistakes (milliseconds passed as seconds) and overflow some backends' time types."""
MAX_EPOCH_S = 32_503_680_000.0
"""The latest ``run_at`` accepted, in epoch seconds: 3000-01-01 00:00 UTC (later times, in
microseconds, reach 1e17, which Redis's Lua writes in exponent form)."""
MAX_ATTEMPTS_LIMIT = 2**31 - 1
"""The most ``max_attempts`` a job may have (PostgreSQL stores it as an ``integer``)."""
