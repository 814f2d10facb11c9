"""Prometheus metrics for producers, workers and the backend (``pip install 'laneway[metrics]'``).

```python
from laneway._metrics import instrument, start_metrics_server

instrument(app)               # before any worker of the app is built
start_metrics_server(9464)    # http://127.0.0.1:9464/metrics
```

What is measured, and where:

- the *enqueue layer* counts jobs that passed the enqueue stack
  (``laneway_jobs_enqueued_total``; a ``unique`` call that matched a pending job, or one
  later refused as too large, is counted too: the layer runs before storing); a periodic
  tick's job is counted by the listener of the worker that stored it (``on_tick``);
- the *execution layer* counts handler starts and times each run
  (``laneway_jobs_started_total``, ``laneway_job_run_seconds``);
- the ``PrometheusListener`` sees every claim and every outcome: pickup latency (claim
  time minus the time the job became due, both on the backend's clock), succeeded,
  retried, dead and released jobs, and leases lost (outcomes the backend refused); only
  outcomes that workers report: a job whose worker died on its last attempt goes dead in
  a ``sweep()`` and is seen by the ``laneway_queue_jobs{status="dead"}`` gauge only;
- the ``BackendCollector`` reads ``stats()`` and ``lanes()`` on each scrape: jobs per
  queue and status, depth, lanes, blocked lanes and the age of the oldest lane head. One
  per registry: apps of the same backend URL and namespace share it, and ``instrument``
  refuses to add the gauges of a second backend to a registry (they have no label to
  tell the backends apart).

Labels are ``queue`` and ``task`` only: lanes are unbounded (a user id, a device id), so
they never become a label.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server
    from prometheus_client.core import GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("laneway metrics need prometheus-client: pip install 'laneway[metrics]'") from exc

from ._errors import ConfigError
from ._middleware import ContextLayer
from ._records import JobRecord, NewJob, Outcome, Status, Verdict
from .backends import shown_url

if TYPE_CHECKING:
    from ._app import App
    from ._job import Job
    from ._middleware import Envelope
    from .backends import Backend

__all__ = [
    "BackendCollector",
    "EnqueueMetrics",
    "Metrics",
    "MetricsServer",
    "PrometheusListener",
    "RunMetrics",
    "instrument",
    "start_metrics_server",
]

log = logging.getLogger("laneway.metrics")

LATENCY_BUCKETS_S = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)
"""Pickup latency buckets: from an idle worker's few ms to a backlog of an hour."""
RUN_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
"""Handler run-time buckets."""
BLOCKED_LANES_SCAN = 1000
"""Lanes per queue the collector reads on a scrape to count blocked ones (oldest first)."""
_UNKNOWN = ("unknown", "unknown")


class Metrics:
    """The metric families laneway updates, registered once per registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.backend_key: tuple[str, str] | None = None
        """The (url, namespace) whose queue gauges ``instrument`` put in this registry."""
        qt = ["queue", "task"]
        self.enqueued = Counter(
            "laneway_jobs_enqueued", "Jobs that passed the enqueue stack.", qt, registry=registry
        )
        self.started = Counter("laneway_jobs_started", "Handler runs started.", qt, registry=registry)
        self.succeeded = Counter(
            "laneway_jobs_succeeded", "Jobs that succeeded (accepted outcomes).", qt, registry=registry
        )
        self.retried = Counter(
            "laneway_jobs_retried", "Failed attempts that will be retried.", qt, registry=registry
        )
        self.dead = Counter(
            "laneway_jobs_dead",
            "Jobs that went dead, as reported by workers (not those a sweep() made dead).",
            qt,
            registry=registry,
        )
        self.released = Counter(
            "laneway_jobs_released",
            "Claimed jobs given back without spending an attempt.",
            qt,
            registry=registry,
        )
        self.leases_lost = Counter(
            "laneway_leases_lost",
            "Outcomes refused because the lease had been lost (the job may run elsewhere).",
            qt,
            registry=registry,
        )
        self.pickup = Histogram(
            "laneway_job_pickup_latency_seconds",
            "Claim time minus the time the job became due (enqueue, run_at or retry), backend clock.",
            ["queue"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.run_time = Histogram(
            "laneway_job_run_seconds",
            "Handler run time, failures included.",
            qt,
            buckets=RUN_BUCKETS_S,
            registry=registry,
        )


_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, Metrics] = weakref.WeakKeyDictionary()
_by_registry_lock = threading.Lock()


def metrics_for(registry: CollectorRegistry | None = None) -> Metrics:
    """The laneway metrics of ``registry`` (default: prometheus-client's global one)."""
    reg = REGISTRY if registry is None else registry
    with _by_registry_lock:
        metrics = _by_registry.get(reg)
        if metrics is None:
            metrics = _by_registry[reg] = Metrics(reg)
        return metrics


class PrometheusListener:
    """A ``WorkerListener``: pickup latency at claim, outcomes and lost leases at finish,
    and the periodic ticks its worker stored."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics or metrics_for()
        self._claimed: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def on_claim(self, records: Sequence[JobRecord]) -> None:
        """Remember each job's labels and observe how long it waited once due."""
        now = time.time()
        with self._lock:
            for rec in records:
                self._claimed[rec.id] = (rec.queue, rec.task)
        for rec in records:
            claimed_at = rec.started_at if rec.started_at is not None else now
            self.metrics.pickup.labels(rec.queue).observe(max(0.0, claimed_at - rec.run_at))

    def on_tick(self, job: NewJob) -> None:
        """Count a periodic tick's job that this worker stored (won ``claim_tick``): the
        enqueue layer is left out while workers build a tick's job, since most lose."""
        self.metrics.enqueued.labels(job.queue, job.task).inc()

    def on_finish(self, outcome: Outcome, accepted: bool) -> None:
        """Count the outcome by verdict, or as a lost lease when the backend refused it."""
        with self._lock:
            labels = self._claimed.pop(outcome.job_id, _UNKNOWN)
        m = self.metrics
        if not accepted:
            m.leases_lost.labels(*labels).inc()
            return
        counter = {
            Verdict.SUCCEEDED: m.succeeded,
            Verdict.RETRY: m.retried,
            Verdict.DEAD: m.dead,
            Verdict.RELEASE: m.released,
        }[outcome.verdict]
        counter.labels(*labels).inc()


class RunMetrics(ContextLayer):
    """Execution layer: counts handler starts and observes run time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    @contextmanager
    def around(self, job: Job) -> Iterator[None]:
        rec = job.record
        labels = (rec.queue, rec.task) if rec is not None else _UNKNOWN
        self.metrics.started.labels(*labels).inc()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.metrics.run_time.labels(*labels).observe(time.perf_counter() - start)


class EnqueueMetrics:
    """Enqueue layer: counts the jobs that pass the rest of the enqueue stack."""

    observes_enqueue = True
    """Left out when a worker builds a periodic tick's job (``PrometheusListener.on_tick``
    counts the one stored)."""

    def __init__(self, metrics: Metrics, default_queue: str) -> None:
        self.metrics = metrics
        self.default_queue = default_queue

    def __call__(self, envelope: Envelope, call_next: Callable[[Envelope], Envelope]) -> Envelope:
        env = call_next(envelope)
        queue = env.options.queue or env.task.opts.queue or self.default_queue
        self.metrics.enqueued.labels(queue, env.task.name).inc()
        return env


class BackendCollector(Collector):
    """Gauges read from the backend on each scrape (``stats()`` and ``lanes()``).

    Args:
        backend: the backend, or a callable returning it (so an app's backend is
            opened on the first scrape, not when metrics are set up).
        lanes_scan: lanes per queue read to count blocked lanes.
    """

    def __init__(
        self, backend: Backend | Callable[[], Backend], *, lanes_scan: int = BLOCKED_LANES_SCAN
    ) -> None:
        self._backend = backend
        self.lanes_scan = lanes_scan

    def _get_backend(self) -> Backend:
        from .backends import Backend

        return self._backend if isinstance(self._backend, Backend) else self._backend()

    def describe(self) -> Iterable[Metric]:
        """The families without samples, so registering does not touch the backend."""
        return list(self._families().values())

    def collect(self) -> Iterable[Metric]:
        """Read the backend; on failure report ``laneway_backend_up 0`` only."""
        families = self._families()
        up = GaugeMetricFamily("laneway_backend_up", "1 when the last scrape could read the backend.")
        try:
            self._fill(self._get_backend(), families)
        except Exception:  # a scrape must not fail because the backend is down
            log.exception("metrics: reading the backend failed")
            up.add_metric([], 0.0)
            return [up]
        up.add_metric([], 1.0)
        return [*families.values(), up]

    @staticmethod
    def _families() -> dict[str, GaugeMetricFamily]:
        g = GaugeMetricFamily
        return {
            "jobs": g("laneway_queue_jobs", "Jobs per queue and status.", labels=["queue", "status"]),
            "depth": g("laneway_queue_depth", "Jobs waiting in lanes (queued + retrying).", labels=["queue"]),
            "lanes": g("laneway_queue_lanes", "Lanes with pending work.", labels=["queue"]),
            "blocked": g(
                "laneway_queue_blocked_lanes",
                "Lanes stopped behind a dead job (on_dead=block).",
                labels=["queue"],
            ),
            "ready_age": g(
                "laneway_queue_oldest_ready_age_seconds",
                "Age of the oldest ready, waiting job.",
                labels=["queue"],
            ),
            "head_age": g(
                "laneway_queue_oldest_lane_head_age_seconds", "Age of the oldest lane head.", labels=["queue"]
            ),
        }

    def _fill(self, backend: Backend, f: dict[str, GaugeMetricFamily]) -> None:
        for s in backend.stats():
            counts = {
                Status.SCHEDULED: s.scheduled,
                Status.QUEUED: s.queued,
                Status.RUNNING: s.running,
                Status.RETRYING: s.retrying,
                Status.SUCCEEDED: s.succeeded,
                Status.DEAD: s.dead,
                Status.CANCELLED: s.cancelled,
            }
            for status, n in counts.items():
                f["jobs"].add_metric([s.queue, status.value], float(n))
            f["depth"].add_metric([s.queue], float(s.queued + s.retrying))
            f["lanes"].add_metric([s.queue], float(s.lanes))
            if s.oldest_queued_age_s is not None:
                f["ready_age"].add_metric([s.queue], s.oldest_queued_age_s)
            lanes = backend.lanes(s.queue, limit=self.lanes_scan)
            f["blocked"].add_metric([s.queue], float(sum(1 for lane in lanes if lane.blocked)))
            if lanes:
                f["head_age"].add_metric([s.queue], max(lane.head_age_s for lane in lanes))


def instrument(
    app: App, registry: CollectorRegistry | None = None, *, collect_backend: bool = True
) -> Metrics:
    """Add Prometheus metrics to ``app``: a listener, an execution and an enqueue layer.

    Call it before building workers (a worker takes the app's layers when it starts).
    Calling it again for the same app and registry changes nothing. Several apps may
    share a registry; the counters have no app label, so their counts add up.

    Args:
        app: the app to measure.
        registry: where the metrics live; default prometheus-client's global registry.
        collect_backend: also register a ``BackendCollector`` for the app's backend
            (queue gauges read on each scrape). One per registry: another app of the
            same backend URL and namespace shares it.

    Returns:
        The ``Metrics`` updated by this app.

    Raises:
        ConfigError: ``collect_backend`` and the registry already has the gauges of
            another backend or namespace (or a ``BackendCollector`` added by hand); the
            app is left unchanged. Pass ``collect_backend=False`` or another registry.
    """
    metrics = metrics_for(registry)
    if any(isinstance(x, PrometheusListener) and x.metrics is metrics for x in app.listeners):
        return metrics
    if collect_backend:  # first: a refusal leaves the app as it was
        _register_backend(app, metrics, REGISTRY if registry is None else registry)
    app.listeners.append(PrometheusListener(metrics))
    app.middleware.insert(0, RunMetrics(metrics))
    app.enqueue_middleware.append(EnqueueMetrics(metrics, app.default_queue))
    return metrics


def _register_backend(app: App, metrics: Metrics, registry: CollectorRegistry) -> None:
    """Register the gauges of ``app``'s backend in ``registry`` (whose laneway metrics are
    ``metrics``), unless the gauges of the same backend URL and namespace are there already."""
    key = (app.url, app.namespace)
    with _by_registry_lock:
        there = metrics.backend_key
        if there == key:
            return
        if there is not None:
            raise ConfigError(
                f"this registry has the queue gauges of {shown_url(there[0])} (namespace {there[1]!r})"
                f" already; the gauges of {shown_url(app.url)} (namespace {app.namespace!r}) would"
                " collide with them: "
                "pass collect_backend=False, or another registry"
            )
        try:
            registry.register(BackendCollector(lambda: app.backend))
        except ValueError as exc:  # a BackendCollector registered by hand
            raise ConfigError(f"this registry has laneway's queue gauges already ({exc})") from None
        metrics.backend_key = key


@dataclass
class MetricsServer:
    """A running ``/metrics`` HTTP server."""

    port: int
    _server: Any
    _thread: threading.Thread

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_metrics_server(
    port: int, addr: str = "127.0.0.1", *, registry: CollectorRegistry | None = None, tries: int = 1
) -> MetricsServer:
    """Serve ``registry`` on ``http://addr:port/metrics`` from a daemon thread.

    Args:
        port: the first port to try (0 picks a free one).
        addr: address to bind; use ``0.0.0.0`` to let a Prometheus on another host scrape.
        registry: what to serve; default prometheus-client's global registry.
        tries: ports tried from ``port`` upwards, so ``-p N`` worker processes on one
            machine can each take one of ``port .. port+N-1``.

    Raises:
        OSError: no port of the range could be bound.
    """
    reg = REGISTRY if registry is None else registry
    last = port + max(1, tries) - 1
    if port and last > 65535:
        raise OSError(f"metrics ports {port}..{last} run past 65535")
    error: OSError | None = None
    for candidate in _ports(port, tries):
        try:
            server, thread = start_http_server(candidate, addr=addr, registry=reg)
        except OSError as exc:
            error = exc
            continue
        bound = int(server.server_address[1])
        log.info("metrics on http://%s:%d/metrics", addr, bound)
        return MetricsServer(bound, server, thread)
    raise OSError(f"no free metrics port in {port}..{last} on {addr}: {error}")


def _ports(port: int, tries: int) -> Iterator[int]:
    if port == 0:
        yield 0
        return
    yield from range(port, port + max(1, tries))
