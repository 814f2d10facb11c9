"""What the dashboard reads from a backend, beyond single contract calls.

Throughput over time comes from two places, because the backend contract has no query
for "jobs finished since t" (``list_jobs`` is newest-*enqueued*-first, with no time
filter and no counts):

- ``throughput()`` is **persistent**: it pages through the stored succeeded and dead jobs
  (newest first, up to ``scan_limit`` of each) and buckets them by ``finished_at``. It is
  right after a restart of the dashboard or the workers, but only sees jobs still stored
  (succeeded jobs are kept ``result_ttl``, one day by default) and, past the scan limit,
  undercounts; the page says when that happened.
- ``Sampler`` is **in memory**: it samples ``stats()`` every few seconds while the
  dashboard runs, for depth, running, delayed and dead over time. It starts empty.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .._codec import decode_call
from .._errors import DecodeError
from .._records import JobRecord, LaneInfo, QueueStats, Status
from ..backends import Backend

log = logging.getLogger("laneway.dashboard")

BUCKET_S = 60.0
WINDOW_S = 3600.0
SCAN_LIMIT = 20_000
"""Stored jobs of each final status read per throughput computation, newest first."""
SCAN_PAGE = 1000
SAMPLE_S = 5.0
SAMPLES_KEPT = 720
"""One hour of samples at the default interval."""
BUS_PREFIX = "bus:"
LANES_SCAN = 1000
"""Lanes read per queue (oldest head first) to find blocked ones and the oldest heads."""


@dataclass(frozen=True, slots=True)
class Throughput:
    """Jobs finished per bucket over a window ending now (backend clock)."""

    start: float
    bucket_s: float
    succeeded: list[int]
    dead: list[int]
    scanned: int
    truncated: bool
    """The scan limit was reached: older buckets may be undercounted."""

    @property
    def total(self) -> int:
        return sum(self.succeeded) + sum(self.dead)


def throughput(
    backend: Backend,
    now: float,
    *,
    window_s: float = WINDOW_S,
    bucket_s: float = BUCKET_S,
    scan_limit: int = SCAN_LIMIT,
) -> Throughput:
    """Count stored succeeded and dead jobs per ``bucket_s`` by ``finished_at``."""
    n = max(1, int(window_s // bucket_s))
    start = now - n * bucket_s
    counts: dict[Status, list[int]] = {Status.SUCCEEDED: [0] * n, Status.DEAD: [0] * n}
    scanned = 0
    truncated = False
    for status, buckets in counts.items():
        offset = 0
        while offset < scan_limit:
            want = min(SCAN_PAGE, scan_limit - offset)
            page = backend.list_jobs(status=status, limit=want, offset=offset)
            for rec in page:
                if rec.finished_at is not None and start <= rec.finished_at < start + n * bucket_s:
                    buckets[int((rec.finished_at - start) // bucket_s)] += 1
            offset += len(page)
            if len(page) < want:  # the end of the stored jobs
                break
        else:  # the limit was reached: truncated only if a job lies beyond it
            truncated = truncated or bool(backend.list_jobs(status=status, limit=1, offset=offset))
        scanned += offset
    return Throughput(start, bucket_s, counts[Status.SUCCEEDED], counts[Status.DEAD], scanned, truncated)


class Cached:
    """A value recomputed at most once per ``ttl_s`` (several tabs, one backend scan)."""

    def __init__(self, compute: Callable[[], Throughput], ttl_s: float) -> None:
        self._compute = compute
        self._ttl_s = ttl_s
        self._value: Throughput | None = None
        self._at = 0.0
        self._lock = threading.Lock()

    def get(self) -> Throughput:
        with self._lock:
            if self._value is None or time.monotonic() - self._at >= self._ttl_s:
                self._value = self._compute()
                self._at = time.monotonic()
            return self._value

    def clear(self) -> None:
        with self._lock:
            self._value = None


@dataclass(frozen=True, slots=True)
class Sample:
    """Totals over every queue at one moment."""

    at: float
    depth: int
    running: int
    delayed: int
    dead: int


def totals(at: float, stats: Sequence[QueueStats]) -> Sample:
    """Sum ``stats`` into one sample; depth is queued plus retrying."""
    return Sample(
        at=at,
        depth=sum(s.queued + s.retrying for s in stats),
        running=sum(s.running for s in stats),
        delayed=sum(s.scheduled for s in stats),
        dead=sum(s.dead for s in stats),
    )


@dataclass
class Sampler:
    """Keeps recent ``Sample``s in memory; ``run`` samples until ``stop`` is set."""

    backend: Backend
    interval_s: float = SAMPLE_S
    keep: int = SAMPLES_KEPT
    stop: threading.Event = field(default_factory=threading.Event)
    _points: deque[Sample] = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self._points = deque(maxlen=self.keep)

    def record(self, at: float, stats: Sequence[QueueStats]) -> None:
        """Add a sample unless the last one is younger than half the interval."""
        with self._lock:
            if self._points and at - self._points[-1].at < self.interval_s / 2:
                return
            self._points.append(totals(at, stats))

    def points(self) -> list[Sample]:
        with self._lock:
            return list(self._points)

    def run(self) -> None:
        """Sample every ``interval_s`` until ``stop`` is set (a daemon thread's target)."""
        while not self.stop.is_set():
            try:
                self.record(self.backend.now(), self.backend.stats())
            except Exception:  # the backend may be down for a while; keep sampling
                log.exception("dashboard: sampling stats failed")
            self.stop.wait(self.interval_s)


@dataclass(frozen=True, slots=True)
class LaneView:
    """The lanes worth showing, and how many lanes are blocked among those read."""

    lanes: list[LaneInfo]
    blocked: int
    scanned: int


def lane_view(backend: Backend, queues: Sequence[str], show: int, scan: int = LANES_SCAN) -> LaneView:
    """Blocked lanes first, then the oldest heads, across ``queues`` (``scan`` lanes read per queue)."""
    lanes = [lane for queue in queues for lane in backend.lanes(queue, limit=scan)]
    lanes.sort(key=lambda lane: (not lane.blocked, -lane.head_age_s))
    return LaneView(lanes[:show], sum(1 for lane in lanes if lane.blocked), len(lanes))


@dataclass(frozen=True, slots=True)
class CallView:
    """A job's decoded call as pretty JSON, or why it could not be decoded."""

    args: str
    kwargs: str
    headers: str
    error: str | None = None


def call_view(rec: JobRecord) -> CallView:
    """Decode ``rec``'s payload for display."""
    try:
        call = decode_call(rec.payload)
    except DecodeError as exc:
        preview = rec.payload[:400].decode("utf-8", errors="replace")
        return CallView(preview, "", "", error=str(exc))
    return CallView(_pretty(call.args), _pretty(call.kwargs), _pretty(call.headers))


def _pretty(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=repr)


@dataclass(frozen=True, slots=True)
class Subscription:
    """One event-bus subscription as stored in the backend."""

    app: str
    key: str
    queue: str
    task: str
    matcher: str
    """The matcher's label (``laneway.bus``), or its stored JSON."""
    written_at: float | None


@dataclass(frozen=True, slots=True)
class RawMeta:
    """A stored bus value the dashboard could not read as subscriptions."""

    key: str
    text: str


def subscriptions(backend: Backend) -> tuple[list[Subscription], list[RawMeta]]:
    """Bus subscriptions stored under ``bus:`` in the backend's meta values.

    ``laneway.bus`` stores one JSON value per subscribing app, ``{"app", "written_at",
    "subscriptions": [{"key", "queue", "task", "matcher", ...}]}``; anything else under
    the prefix is returned raw, so the page shows what is there even if the layout moves.
    """
    subs: list[Subscription] = []
    raw: list[RawMeta] = []
    for key, value in sorted(backend.get_meta(BUS_PREFIX).items()):
        parsed = _parse_entry(value)
        if parsed is None:
            raw.append(RawMeta(key, _meta_text(value)))
        else:
            subs.extend(parsed)
    return subs, raw


def _parse_entry(value: bytes) -> list[Subscription] | None:
    try:
        doc = json.loads(value)
        app, written = str(doc["app"]), doc.get("written_at")
        return [
            Subscription(
                app,
                str(s["key"]),
                str(s["queue"]),
                str(s["task"]),
                _matcher_label(app, s),
                None if written is None else float(written),
            )
            for s in doc["subscriptions"]
        ]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _matcher_label(app: str, stored: dict[str, object]) -> str:
    """The matcher as ``laneway.bus`` shows it, or its stored JSON if the bus cannot read it."""
    try:
        from ..bus import Subscription as BusSubscription

        return str(BusSubscription.from_json(app, stored).matcher.label)
    except (
        ImportError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
    ):  # another layout: show it as stored
        return json.dumps(stored.get("matcher"), separators=(",", ":"), sort_keys=True)


def _meta_text(value: bytes) -> str:
    try:
        return _pretty(json.loads(value))
    except ValueError:
        return value[:2000].decode("utf-8", errors="replace")
