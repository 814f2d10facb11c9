"""Handler run by ``laneway kafka-consume`` in a child process during the crash tests.

It sleeps ``STREAMS_TEST_DELAY`` seconds, then appends ``pid key partition offset`` to the
file named by ``STREAMS_TEST_LOG``. Each line is one ``os.write`` to an ``O_APPEND`` file, so
it reaches the file whole even if the process is killed with SIGKILL right after.
"""

from __future__ import annotations

import os
import time
from typing import Any


def handle(message: Any) -> None:
    """Record that ``message`` was fully processed."""
    time.sleep(float(os.environ.get("STREAMS_TEST_DELAY", "0.001")))
    line = f"{os.getpid()} {message.key().decode()} {message.partition()} {message.offset()}\n"
    fd = os.open(os.environ["STREAMS_TEST_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_log(path: str) -> list[tuple[int, str, int, int]]:
    """Return ``(pid, key, partition, offset)`` lines written by :func:`handle`, in order."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="ascii") as f:
        rows = [line.split() for line in f if line.endswith("\n")]
    return [(int(pid), key, int(part), int(off)) for pid, key, part, off in rows]
