"""Validation of numbers that come from users: counts and durations.

Each check returns the value in the form laneway stores it, or raises ``ConfigError``
naming what was wrong (names, lanes and keys are checked in ``_names``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from . import _constants as C
from ._errors import ConfigError


def seconds(value: Any, what: str, *, positive: bool = False) -> float:
    """``value`` (a number or a ``timedelta``) as float seconds, or ``ConfigError`` naming
    ``what``: it must be finite, from 0 (above 0 if ``positive``) to ``MAX_SECONDS``."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    # NaN fails both comparisons, so it is refused too
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (value > 0 if positive else value >= 0)
        or not value <= C.MAX_SECONDS
    ):
        least = "more than 0" if positive else "0"
        raise ConfigError(f"{what} must be a number of seconds from {least} to 100 years, not {value!r}")
    return float(value)


def count(value: Any, what: str, *, least: int = 1, most: int | None = None) -> int:
    """``value`` if it is an int (not a bool) from ``least`` to ``most``, else a
    ``ConfigError`` naming ``what``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < least
        or (most is not None and value > most)
    ):
        bound = f"of at least {least:,}" if most is None else f"from {least:,} to {most:,}"
        raise ConfigError(f"{what} must be an int {bound}, not {value!r}")
    return value
