"""Skew this process's wall clock: ``time.time`` and ``time.time_ns`` run
``$LANEWAY_TEST_CLOCK_SKEW_S`` seconds off (RELIABILITY fault 6).

Python imports ``sitecustomize`` at start-up from ``sys.path``; the clock-skew test puts
this directory first on a worker's ``PYTHONPATH``. ``time.clock_gettime`` and the
monotonic clocks stay true, so the test can still record real times.
"""

from __future__ import annotations

import os
import time

_SKEW_S = float(os.environ.get("LANEWAY_TEST_CLOCK_SKEW_S", "0") or 0)

if _SKEW_S:
    _true_time = time.time
    _true_time_ns = time.time_ns
    _skew_ns = int(_SKEW_S * 1e9)

    def _skewed_time() -> float:
        return _true_time() + _SKEW_S

    def _skewed_time_ns() -> int:
        return _true_time_ns() + _skew_ns

    time.time = _skewed_time
    time.time_ns = _skewed_time_ns
