"""``postgresql://`` (or ``postgres://``): laneway on one PostgreSQL primary.

Layout:
    Each namespace is a schema of its own holding the tables, indexes and functions
    described at the top of ``sql/0001_tables.sql`` and ``sql/0002_functions.sql``.
    Migrations are applied by laneway itself on first use (or ``backend.migrate()``),
    under an advisory lock so that many processes starting at once are safe.

Claims:
    Ready lanes are found through a partial index over the ``lanes`` table (one row per
    lane with work: its head's priority and seq, and the token holding it) and taken with
    ``FOR UPDATE SKIP LOCKED``; jobs without a lane through a partial index of their own.
    No claim ever scans the jobs of a lane, so its cost does not grow with lane depth,
    the number of lanes, or delayed, retrying or blocked work.

Waking:
    Every change that may make work ready sends ``pg_notify`` on the namespace's channel;
    one ``LISTEN`` connection per backend wakes ``wait``. Delayed jobs need no
    notification: ``wait`` never sleeps past the earliest due time.

Transactions:
    ``enqueue(jobs, connection=conn)`` writes inside the caller's psycopg transaction
    (the jobs, and their notification, exist only if it commits). ``transaction()``
    yields a pooled connection in an open transaction, and ``finish(outcomes,
    connection=conn)`` applies a job's outcome inside it, so a handler's own writes and
    its completion commit together or not at all.

Time:
    Every deadline is the server's ``clock_timestamp()``, never a worker's clock.
"""

from __future__ import annotations

from ._backend import PostgresBackend

__all__ = ["PostgresBackend"]
