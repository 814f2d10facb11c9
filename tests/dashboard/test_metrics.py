"""Prometheus metrics: the listener, both layers, the backend collector and the server."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

import laneway
from laneway._metrics import BackendCollector, instrument, start_metrics_server
from laneway._records import JobRecord, Outcome, Status, Verdict
from laneway.backends.memory import MemoryBackend
from laneway.testing import Clock, enqueued, memory_app
from tests.support.private_servers import free_ports


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    got = registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def test_enqueue_run_and_outcomes_are_counted_per_queue_and_task(registry):
    app = memory_app(backoff_s=0.0, backoff_max_s=0.0)
    instrument(app, registry)

    @app.task(name="ok", queue="q")
    def ok() -> None: ...

    @app.task(name="boom", queue="q", max_attempts=2)
    def boom() -> None:
        raise ValueError("no")

    ok.enqueue()
    ok.enqueue()
    boom.enqueue()
    app.worker(["q"], idle_wait_s=0.01).run(burst=True)

    assert value(registry, "laneway_jobs_enqueued_total", queue="q", task="ok") == 2
    assert value(registry, "laneway_jobs_enqueued_total", queue="q", task="boom") == 1
    assert value(registry, "laneway_jobs_started_total", queue="q", task="ok") == 2
    assert value(registry, "laneway_jobs_started_total", queue="q", task="boom") == 2
    assert value(registry, "laneway_jobs_succeeded_total", queue="q", task="ok") == 2
    assert value(registry, "laneway_jobs_retried_total", queue="q", task="boom") == 1
    assert value(registry, "laneway_jobs_dead_total", queue="q", task="boom") == 1
    assert value(registry, "laneway_job_run_seconds_count", queue="q", task="ok") == 2
    assert value(registry, "laneway_job_pickup_latency_seconds_count", queue="q") == 4


def test_pickup_latency_is_claim_time_minus_due_time_on_the_backend_clock(registry):
    clock = Clock(1_000.0)
    app = memory_app(clock=clock)
    instrument(app, registry, collect_backend=False)

    @app.task(name="t")
    def t() -> None: ...

    t.enqueue()
    clock.advance(7.0)
    app.worker(idle_wait_s=0.01).run(burst=True)

    assert value(registry, "laneway_job_pickup_latency_seconds_bucket", queue="default", le="5.0") == 0
    assert value(registry, "laneway_job_pickup_latency_seconds_bucket", queue="default", le="10.0") == 1
    assert value(registry, "laneway_job_pickup_latency_seconds_sum", queue="default") == pytest.approx(7.0)


def test_a_refused_outcome_counts_as_a_lost_lease_not_as_a_success(registry):
    app = memory_app()
    metrics = instrument(app, registry, collect_backend=False)
    listener = app.listeners[0]
    rec = JobRecord(
        id="j1",
        task="t",
        queue="q",
        lane=None,
        priority=2,
        payload=b"{}",
        status=Status.RUNNING,
        attempts=1,
        max_attempts=3,
        timeout_s=None,
        unique=None,
        result_ttl_s=1.0,
        on_dead=laneway.OnDead.SKIP,
        enqueued_at=0.0,
        run_at=0.0,
        token=5,
        started_at=1.0,
    )
    listener.on_claim([rec])
    listener.on_finish(Outcome("j1", 5, Verdict.SUCCEEDED), accepted=False)

    assert metrics is listener.metrics
    assert value(registry, "laneway_leases_lost_total", queue="q", task="t") == 1
    assert value(registry, "laneway_jobs_succeeded_total", queue="q", task="t") == 0


def test_instrumenting_twice_adds_nothing_more(registry):
    app = memory_app()
    instrument(app, registry)
    instrument(app, registry)

    assert len(app.listeners) == 1
    assert len(app.middleware) == 1
    assert len(app.enqueue_middleware) == 1


def test_a_periodic_tick_is_counted_once_however_many_workers_build_it(registry):
    app = memory_app(clock=Clock(1_000_000.0))
    instrument(app, registry, collect_backend=False)

    @app.periodic(every=60, name="tick")
    def tick() -> None: ...

    for w in [app.worker(idle_wait_s=0.01) for _ in range(3)]:
        w._tick_schedules()  # all three see the tick; claim_tick lets one store it

    assert len(enqueued(app, "tick")) == 1
    assert value(registry, "laneway_jobs_enqueued_total", queue="default", task="tick") == 1


def test_apps_of_one_backend_share_the_queue_gauges(registry):
    first = laneway.App("memory://", namespace="shop")
    second = laneway.App("memory://", namespace="shop", name="billing")
    instrument(first, registry)
    instrument(second, registry)

    first.send_task("t")
    assert value(registry, "laneway_queue_jobs", queue="default", status="queued") == 1
    assert len(second.listeners) == 1


def test_a_second_backend_in_one_registry_is_refused_and_its_app_left_unchanged(registry):
    instrument(memory_app(namespace="billing"), registry)
    other = memory_app(namespace="shipping")

    with pytest.raises(laneway.ConfigError, match="collect_backend=False"):
        instrument(other, registry)

    assert other.listeners == [] and other.middleware == [] and other.enqueue_middleware == []
    instrument(other, registry, collect_backend=False)  # its counters, without the gauges
    assert len(other.listeners) == 1


def test_backend_collector_reports_depth_blocked_lanes_and_oldest_head_age(registry):
    clock = Clock(1_000.0)
    app = memory_app(clock=clock, backoff_s=0.0)
    registry.register(BackendCollector(app.backend))

    @app.task(name="stuck", queue="q", max_attempts=1, on_dead="block")
    def stuck() -> None:
        raise RuntimeError("stuck")

    @app.task(name="later", queue="q")
    def later() -> None: ...

    stuck.options(lane="user:1").enqueue()
    later.options(lane="user:1").enqueue()
    later.options(lane="user:2").enqueue()
    later.options(delay=60).enqueue()
    app.run_until_idle(max_jobs=1)
    clock.advance(30.0)

    assert value(registry, "laneway_backend_up") == 1
    assert value(registry, "laneway_queue_jobs", queue="q", status="dead") == 1
    assert value(registry, "laneway_queue_jobs", queue="q", status="scheduled") == 1
    assert value(registry, "laneway_queue_depth", queue="q") == 2
    assert value(registry, "laneway_queue_blocked_lanes", queue="q") == 1
    assert value(registry, "laneway_queue_oldest_lane_head_age_seconds", queue="q") == pytest.approx(30.0)


def test_backend_collector_reports_down_instead_of_failing_the_scrape(registry):
    backend = MemoryBackend()

    def broken() -> MemoryBackend:
        raise ConnectionError("backend unreachable")

    registry.register(BackendCollector(broken))

    assert value(registry, "laneway_backend_up") == 0
    backend.close()


def test_metrics_server_serves_the_registry_over_http(registry):
    app = memory_app()
    instrument(app, registry)

    @app.task(name="t")
    def t() -> None: ...

    t.enqueue()
    server = start_metrics_server(0, registry=registry)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as resp:
            body = resp.read().decode()
    finally:
        server.close()

    assert 'laneway_jobs_enqueued_total{queue="default",task="t"} 1.0' in body
    assert 'laneway_queue_jobs{queue="default",status="queued"} 1.0' in body


def test_metrics_server_moves_to_the_next_port_when_one_is_taken(registry):
    first = start_metrics_server(0, registry=registry)
    try:
        second = start_metrics_server(first.port, registry=registry, tries=20)
        try:
            assert first.port < second.port < first.port + 20
        finally:
            second.close()
        with pytest.raises(OSError, match="no free metrics port"):
            start_metrics_server(first.port, registry=registry, tries=1)
    finally:
        first.close()


APP_MODULE = """
import laneway

app = laneway.App({url!r}, namespace="metrics")


@app.task(name="work")
def work(i: int) -> int:
    return i
"""


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
        return resp.read().decode()


def succeeded_in(text: str) -> float:
    found = re.search(r'laneway_jobs_succeeded_total\{queue="default",task="work"\} ([0-9.]+)', text)
    return float(found.group(1)) if found else 0.0


def test_worker_command_serves_the_metrics_of_each_process_on_its_own_port(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    (tmp_path / "metrics_app.py").write_text(APP_MODULE.format(url=url))
    producer = laneway.App(url, namespace="metrics")
    for i in range(20):
        producer.send_task("work", [i])
    producer.close()
    port = free_ports(1, first=18301, offsets=(0, 1))[0]  # the two processes take port, port + 1
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "laneway",
            "worker",
            "metrics_app:app",
            "-p",
            "2",
            "-c",
            "2",
            "--metrics-port",
            str(port),
            "--log-level",
            "WARNING",
        ],
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 60
        total = 0.0
        while time.monotonic() < deadline:
            texts = []
            for p in (port, port + 1):
                try:
                    texts.append(scrape(p))
                except OSError:
                    pass
            total = sum(succeeded_in(t) for t in texts)
            if len(texts) == 2 and total == 20:
                break
            time.sleep(0.2)
        assert len(texts) == 2, "both worker processes serve metrics"
        assert total == 20
        assert "laneway_queue_depth" in texts[0]
        assert "laneway_queue_depth" not in texts[1]  # the gauges once, from the first port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
