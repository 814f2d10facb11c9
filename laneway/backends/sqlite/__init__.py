"""``sqlite:///path.db``: laneway's embedded default, one SQLite file shared by every
thread and process of one machine.

URLs:
    ``sqlite:///relative/path.db`` (relative to the working directory) and
    ``sqlite:////absolute/path.db``. ``sqlite:///:memory:`` is refused: an in-memory
    database cannot be shared by worker processes (use ``memory://`` in one process).
    Options in the query string override the constructor's arguments:
    ``?synchronous=NORMAL``, ``?busy_timeout_s=10``.

Durability (``synchronous``):
    The file is always in WAL mode. ``FULL`` (the default) syncs the write-ahead log at
    every commit, so an acknowledged enqueue or ack survives power loss. ``NORMAL`` syncs
    only at checkpoints: every commit still survives a crash of any process (``kill -9``),
    but the last commits may be lost if the machine itself loses power; commits become
    several times cheaper. ``OFF`` and ``EXTRA`` are SQLite's levels of the same names.

Concurrency:
    Reads never block. Writes (enqueue, claim, finish, extend, sweep) are one
    ``BEGIN IMMEDIATE`` transaction each; ``finish_and_claim`` is one transaction too.
    Threads of a process queue on a process lock and the writes waiting behind it share
    the next commit (group commit, each in its own savepoint); processes retry
    ``SQLITE_BUSY`` with jittered backoff for up to ``busy_timeout_s`` (default 30 s), so
    many worker processes on one file share it without errors.

Time:
    SQLite has no server, so the backend's clock is the machine's wall clock as SQLite
    reads it (``julianday('now')``, inside each transaction), never a process's own
    ``time.time()``. Every process on one machine reads the same clock, which is what the
    lease and delay deadlines need. Do not share one file between machines (network file
    systems also break SQLite's locking).

Waiting:
    ``wait`` has no server to push a wake-up, so it naps 2-8 ms at a time and looks at
    ``PRAGMA data_version`` (which changes when any other connection commits) between
    naps, reading the tables only after a change; it returns by itself when the
    earliest delayed or retrying job comes due.

Transactions:
    ``enqueue(jobs, connection=conn)`` and ``finish(outcomes, connection=conn)`` write
    inside the caller's open transaction on an ``sqlite3.Connection`` to the same file,
    without committing it; ``transaction()`` yields such a connection.

Schema:
    ``schema.sql`` documents every table and index; ``_schema.py`` creates, versions and
    migrates them (scripts in ``migrations/``).
"""

from __future__ import annotations

from ._backend import SQLiteBackend

__all__ = ["SQLiteBackend"]
