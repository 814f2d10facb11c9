"""Interrupting sync handlers that run past their timeout.

A thread cannot be killed in CPython; like Dramatiq's time-limit middleware, the
watchdog raises ``JobTimeout`` inside the handler's thread with
``PyThreadState_SetAsyncExc``. The exception arrives at the next bytecode the thread
runs, so a handler blocked inside C code (a socket read without a timeout) is
interrupted only when that call returns. Async handlers are cancelled instead.

laneway's own critical sections that a handler can reach (an enqueue from inside a job
takes the SQLite write lock) run ``shielded()``: a ``JobTimeout`` aimed at the thread
meanwhile is held back and raised when the section ends, so it never lands between taking
a lock and the ``try`` that releases it.
"""

from __future__ import annotations

import ctypes
import heapq
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ._errors import JobTimeout

_ARMED, _FIRED, _DISARMED = 0, 1, 2


class _Alarm:
    __slots__ = ("deadline", "state", "tid")

    def __init__(self, deadline: float, tid: int) -> None:
        self.deadline = deadline
        self.tid = tid
        self.state = _ARMED

    def __lt__(self, other: _Alarm) -> bool:
        return self.deadline < other.deadline


class _Fired(JobTimeout):
    """The ``JobTimeout`` the watchdog raises: built in the target thread when it arrives,
    which is the moment the thread's timeout stops being pending (``shielded`` must not
    raise it a second time)."""

    def __init__(self, *args: object) -> None:
        _pending.discard(threading.get_ident())  # no lock: the thread may be inside shielded()
        super().__init__(*args)


_Fired.__name__ = _Fired.__qualname__ = "JobTimeout"  # what errors, hooks and logs show


def _set_async_exc(tid: int, exc: type[BaseException] | None) -> None:
    obj = ctypes.py_object(exc) if exc is not None else None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), obj)


class _Shield:
    __slots__ = ("deferred", "depth")

    def __init__(self) -> None:
        self.depth = 0
        self.deferred = False


_shields: dict[int, _Shield] = {}  # thread id -> its shield, while inside shielded()
_pending: set[int] = set()  # threads a JobTimeout was raised in (not yet disarmed)
_shield_lock = threading.Lock()
_armed = threading.local()  # n: alarms armed in this thread (only such a thread can be hit)


@contextmanager
def shielded() -> Iterator[None]:
    """Run the block with this thread's ``JobTimeout`` held back: one that fires meanwhile
    (or had fired and was not delivered yet) is raised when the outermost block ends.
    Free in a thread with no alarm armed (a worker's fetch loop, acker, or a producer)."""
    if not getattr(_armed, "n", 0):
        yield
        return
    tid = threading.get_ident()
    entered = False
    try:
        with _shield_lock:
            shield = _shields.get(tid)
            if shield is None:
                shield = _shields[tid] = _Shield()
            if tid in _pending:  # fired just now: withdraw it, raise it at the end instead
                _set_async_exc(tid, None)
                _pending.discard(tid)
                shield.deferred = True
            shield.depth += 1
            entered = True
    except BaseException:  # delivered while entering: nothing is held yet
        if entered:
            _leave(tid)
        raise
    try:
        yield
    finally:
        if _leave(tid):
            raise JobTimeout("handler exceeded its timeout (raised when laneway's own work ended)")


def _leave(tid: int) -> bool:
    """Leave a shield; True when it was the outermost and a timeout was held back."""
    with _shield_lock:
        shield = _shields[tid]
        shield.depth -= 1
        if shield.depth:
            return False
        del _shields[tid]
        return shield.deferred


class Watchdog:
    """One thread that raises ``JobTimeout`` in threads whose alarm went off."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[_Alarm] = []
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float) -> _Alarm:
        """Arm an alarm for the calling thread ``seconds`` from now."""
        alarm = _Alarm(time.monotonic() + seconds, threading.get_ident())
        _armed.n = getattr(_armed, "n", 0) + 1
        with self._cond:
            heapq.heappush(self._heap, alarm)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="laneway-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()
        return alarm

    def disarm(self, alarm: _Alarm) -> bool:
        """Disarm; returns True if it had fired. A fired alarm whose exception has not
        been raised yet is withdrawn, so it cannot hit the next job of this thread.
        Called from the thread that armed it."""
        _armed.n -= 1
        with self._cond:
            fired = alarm.state == _FIRED
            alarm.state = _DISARMED
            if fired:
                with _shield_lock:
                    _set_async_exc(alarm.tid, None)
                    _pending.discard(alarm.tid)
                    shield = _shields.get(alarm.tid)
                    if shield is not None:  # held back: the job is over, do not raise it later
                        shield.deferred = False
            return fired

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0].state == _DISARMED:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                alarm = self._heap[0]
                delay = alarm.deadline - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
                alarm.state = _FIRED
                with _shield_lock:
                    shield = _shields.get(alarm.tid)
                    if shield is not None:  # inside laneway's own critical section
                        shield.deferred = True
                    else:
                        _pending.add(alarm.tid)
                        _set_async_exc(alarm.tid, _Fired)
