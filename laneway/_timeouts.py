"""Interrupting sync handlers that run past their timeout.

A thread cannot be killed in CPython; like Dramatiq's time-limit middleware, the
watchdog raises ``JobTimeout`` inside the handler's thread with
``PyThreadState_SetAsyncExc``. The exception arrives at the next bytecode the thread
runs, so a handler blocked inside C code (a socket read without a timeout) is
interrupted only when that call returns. Async handlers are cancelled instead.
"""

from __future__ import annotations

import ctypes
import heapq
import threading
import time

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


def _set_async_exc(tid: int, exc: type[BaseException] | None) -> None:
    obj = ctypes.py_object(exc) if exc is not None else None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), obj)


class Watchdog:
    """One thread that raises ``JobTimeout`` in threads whose alarm went off."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[_Alarm] = []
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float) -> _Alarm:
        """Arm an alarm for the calling thread ``seconds`` from now."""
        alarm = _Alarm(time.monotonic() + seconds, threading.get_ident())
        with self._cond:
            heapq.heappush(self._heap, alarm)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="laneway-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()
        return alarm

    def disarm(self, alarm: _Alarm) -> bool:
        """Disarm; returns True if it had fired. A fired alarm whose exception has not
        been raised yet is withdrawn, so it cannot hit the next job of this thread."""
        with self._cond:
            fired = alarm.state == _FIRED
            alarm.state = _DISARMED
            if fired:
                _set_async_exc(alarm.tid, None)
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
                _set_async_exc(alarm.tid, JobTimeout)
