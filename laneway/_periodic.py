"""Periodic schedules: which tick is due, computed the same way on every worker.

Every worker computes the latest tick at or before the backend's now; the backend's
``claim_tick`` lets exactly one of them enqueue the job for it. Ticks are absolute
times (cron in UTC, ``every`` aligned to the epoch), so all workers agree on them.
A tick older than its grace (the shorter of its interval and ``PERIODIC_GRACE_S``) is
missed and not replayed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from ._checks import seconds
from ._constants import PERIODIC_GRACE_S
from ._errors import ConfigError
from ._names import check_lane


@dataclass(frozen=True, slots=True)
class Schedule:
    """A cron expression (UTC) or a fixed interval, for the task ``name``; its jobs go on
    ``lane`` when one is given (ticks then run one at a time, in tick order)."""

    name: str
    cron: str | None
    every_s: float | None
    lane: str | None = None

    @classmethod
    def parse(
        cls, name: str, cron: str | None, every: timedelta | float | None, lane: str | None = None
    ) -> Schedule:
        lane = check_lane(lane)
        if (cron is None) == (every is None):
            raise ConfigError(f"periodic task {name!r}: give exactly one of a cron string or every=")
        if cron is not None:
            if not isinstance(cron, str) or not croniter.is_valid(cron):
                raise ConfigError(f"periodic task {name!r}: {cron!r} is not a valid cron expression")
            schedule = cls(name, cron, None, lane)
            try:  # valid syntax that never fires ("0 0 31 2 *") fails here, not in every worker
                schedule.interval_s(schedule.latest_tick(time.time()))
            except (CroniterBadDateError, CroniterBadCronError) as exc:
                raise ConfigError(f"periodic task {name!r}: {cron!r} never fires ({exc})") from None
            return schedule
        every_s = seconds(every, f"periodic task {name!r}: every=", positive=True)
        return cls(name, None, every_s, lane)

    def latest_tick(self, now: float) -> float:
        """The latest tick at or before ``now`` (epoch seconds)."""
        if self.every_s is not None:
            return math.floor(now / self.every_s) * self.every_s
        assert self.cron is not None
        base = datetime.fromtimestamp(now, tz=timezone.utc)
        it = croniter(self.cron, base + timedelta(microseconds=1))
        return float(it.get_prev(float))

    def interval_s(self, tick: float) -> float:
        """Seconds from ``tick`` to the next tick."""
        if self.every_s is not None:
            return self.every_s
        assert self.cron is not None
        it = croniter(self.cron, datetime.fromtimestamp(tick, tz=timezone.utc))
        return float(it.get_next(float)) - tick

    def due_tick(self, now: float) -> float | None:
        """The tick to enqueue now, or None if the latest one is past its grace."""
        tick = self.latest_tick(now)
        grace = min(PERIODIC_GRACE_S, self.interval_s(tick))
        return tick if now - tick < grace else None
