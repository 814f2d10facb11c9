"""Redis backend specifics on one server: round trips, blocking pickup, recovery from a
restarted server or a flushed script cache, and TLS."""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import laneway
from laneway._records import NewJob, OnDead, Outcome, Verdict
from laneway.backends.redis import RedisBackend
from laneway.backends.redis._link import Link
from tests.conftest import drop_backend, make_backend
from tests.support.redis_cluster import RedisServer
from tests.support.workers import seconds_until_woken


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[RedisBackend]:
    b = make_backend("redis", tmp_path)
    assert isinstance(b, RedisBackend)
    try:
        yield b
    finally:
        drop_backend(b)


def _job(i: int, lane: str | None = None, **kw: Any) -> NewJob:
    fields: dict[str, Any] = dict(
        id=f"job-{i}", task="t", queue="default", lane=lane, priority=2, payload=b"{}", max_attempts=3,
        timeout_s=None, unique=None, result_ttl_s=60.0, on_dead=OnDead.SKIP,
    )  # fmt: skip
    fields.update(kw)
    return NewJob(**fields)


class Counting:
    """Counts round trips through a link."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.trips = 0
        self._execute, self._pipeline = link.execute, link.pipeline
        link.execute = self.execute  # type: ignore[method-assign]
        link.pipeline = self.pipeline  # type: ignore[method-assign]

    def execute(self, *cmd: Any) -> Any:
        self.trips += 1
        return self._execute(*cmd)

    def pipeline(self, cmds: Any) -> Any:
        self.trips += 1
        return self._pipeline(cmds)


def test_enqueue_claim_and_finish_of_many_jobs_are_one_round_trip_each(backend: RedisBackend) -> None:
    count = Counting(backend.link)
    backend.enqueue([_job(0)])
    backend.enqueue([_job(i, f"lane-{i % 3}") for i in range(1, 10)])
    assert count.trips == 2
    recs = backend.claim(["default"], worker="w", limit=8, batch=3, lease_s=30)
    assert len(recs) == 8 and count.trips == 3
    assert backend.finish([Outcome(r.id, r.token or 0, Verdict.SUCCEEDED) for r in recs]) == [True] * 8
    assert backend.extend([recs[0].token or 0], 30) == [False]
    assert count.trips == 5


def test_an_ack_and_the_next_claim_are_one_round_trip_and_the_ack_comes_first(backend: RedisBackend) -> None:
    backend.enqueue([_job(i, "lane") for i in range(3)])
    first = backend.claim(["default"], worker="w", limit=1, lease_s=30)
    count = Counting(backend.link)
    accepted, nxt = backend.finish_and_claim(
        [Outcome(first[0].id, first[0].token or 0, Verdict.SUCCEEDED)],
        ["default"],
        worker="w",
        limit=2,
        lease_s=30,
    )
    assert accepted == [True] and [r.id for r in nxt] == ["job-1"], "the lane was freed before the claim"
    assert count.trips == 1


def test_an_idle_worker_is_woken_by_an_enqueue_at_once(backend: RedisBackend) -> None:
    assert backend.claim(["default"], worker="w", limit=1, lease_s=30) == []
    assert 0.15 < seconds_until_woken(backend, lambda: backend.enqueue([_job(1, "a")])) < 1.0
    assert len(backend.claim(["default"], worker="w", limit=1, lease_s=30)) == 1


def test_an_idle_worker_waits_no_longer_than_the_next_delayed_job(backend: RedisBackend) -> None:
    backend.enqueue([_job(1, delay_s=0.3)])
    began, waits = time.monotonic(), 0
    while not backend.claim(["default"], worker="w", limit=1, lease_s=30):
        backend.wait(["default"], 5.0)
        waits += 1
    assert 0.25 < time.monotonic() - began < 0.8
    assert waits <= 3, "woken when due, not by polling"


def test_a_wait_shorter_than_a_millisecond_is_not_a_wait_forever(backend: RedisBackend) -> None:
    began = time.monotonic()
    for timeout in (0.0004, 0.00001, 0.0):
        backend.wait(["default"], timeout)
    assert time.monotonic() - began < 0.5


def test_a_newly_earliest_delayed_job_wakes_a_waiting_worker(backend: RedisBackend) -> None:
    assert backend.claim(["default"], worker="w", limit=1, lease_s=30) == []

    def later() -> None:
        time.sleep(0.1)
        backend.enqueue([_job(1, delay_s=0.2)])

    t = threading.Thread(target=later)
    t.start()
    began = time.monotonic()
    backend.wait(["default"], 5.0)
    assert backend.claim(["default"], worker="w", limit=1, lease_s=30) == []
    backend.wait(["default"], 5.0)
    t.join()
    assert time.monotonic() - began < 0.8
    assert len(backend.claim(["default"], worker="w", limit=1, lease_s=30)) == 1


@pytest.fixture
def private() -> Iterator[RedisServer]:
    srv = RedisServer()
    yield srv
    srv.close()


def test_work_goes_on_after_the_script_cache_is_flushed(private: RedisServer) -> None:
    b = RedisBackend(private.url, namespace="flush")
    try:
        b.enqueue([_job(1)])
        admin = redis.Redis.from_url(private.url)
        admin.script_flush()
        admin.close()
        b.enqueue([_job(2)])
        recs = b.claim(["default"], worker="w", limit=2, lease_s=30)
        assert [r.id for r in recs] == ["job-1", "job-2"]
    finally:
        b.close()


def test_connections_recover_after_the_server_restarts(private: RedisServer) -> None:
    b = RedisBackend(private.url, namespace="restart")
    try:
        b.enqueue([_job(1)])
        private.stop()
        private.start()  # no persistence: the data is gone, the connections are stale
        assert b.enqueue([_job(2)])[0].created
        assert [r.id for r in b.claim(["default"], worker="w", limit=2, lease_s=30)] == ["job-2"]
    finally:
        b.close()


def test_rediss_urls_speak_tls_with_the_given_ca(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        capture_output=True, check=False,
    )  # fmt: skip
    if made.returncode != 0:
        pytest.skip("openssl cannot make a test certificate")
    srv = RedisServer("--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
                      "--tls-auth-clients", "no", tls=True)  # fmt: skip
    try:
        url = f"rediss://127.0.0.1:{srv.port}/0?ssl_cert_reqs=required&ssl_ca_certs={cert}"
        b = RedisBackend(url, namespace="tls")
        try:
            b.enqueue([_job(1, "secure")])
            recs = b.claim(["default"], worker="w", limit=1, lease_s=30)
            assert b.finish([Outcome(recs[0].id, recs[0].token or 0, Verdict.SUCCEEDED)]) == [True]
        finally:
            b.close()
        plain = RedisBackend.__new__(RedisBackend)
        with pytest.raises(redis.exceptions.ConnectionError):
            RedisBackend.__init__(
                plain, f"rediss://127.0.0.1:{srv.port}/0?ssl_cert_reqs=required", namespace="tls"
            )
    finally:
        srv.close()


def test_a_worker_rides_out_an_outage_and_claims_again_when_the_server_is_back(
    private: RedisServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from laneway.backends.redis import _link

    monkeypatch.setattr(_link, "RECONNECT_S", 0.3)
    app = laneway.App(backend=RedisBackend(private.url, namespace="outage"))
    ran: list[int] = []

    @app.task(name="t")
    def t(i: int) -> None:
        ran.append(i)

    w = app.worker(idle_wait_s=0.2)
    th = threading.Thread(target=w.run)
    try:
        private.stop()
        with pytest.raises(redis.exceptions.ConnectionError):  # a caller of claim sees the outage
            app.backend.claim(["default"], worker="w", limit=1, lease_s=30)
        with pytest.raises(redis.exceptions.ConnectionError):  # producers are told
            t.enqueue(1)
        th.start()
        time.sleep(2.0)  # the worker's claims fail again and again meanwhile
        failures = [r for r in caplog.records if r.name == "laneway.worker" and r.levelno >= logging.ERROR]
        assert len(failures) == 1, "a worker logs an outage's traceback at most every 5 s"
        private.start()
        t.enqueue(2)
        deadline = time.monotonic() + 10
        while not ran and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ran == [2]
    finally:
        w.stop()
        if th.is_alive():
            th.join(10)
        app.close()


def test_pool_and_connection_options_of_redis_py_are_accepted_in_the_url() -> None:
    from laneway.backends.redis._link import check_url

    check_url("redis://127.0.0.1:6379/0?max_connections=50&socket_timeout=5&health_check_interval=10")


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("redis://127.0.0.1:6379/0?namespace=x", "'namespace'"),
        ("rediss://127.0.0.1:6379/0?ssl_cert_reqs=none&sokcet_timeout=5", "'sokcet_timeout'"),
        ("unix:///tmp/no.sock?bogus=1", "'bogus'"),
        ("redis://127.0.0.1:6379/0?socket_timeout=soon", "socket_timeout"),
        ("redis://127.0.0.1:6379/abc", "database"),
    ],
)
def test_a_url_option_redis_py_does_not_take_is_refused_when_the_backend_is_made(
    url: str, named: str
) -> None:
    with pytest.raises(laneway.ConfigError, match=named):
        RedisBackend(url, namespace="never-used")


@pytest.mark.parametrize("namespace", ["x*", "a:b", "Caps", ""])
def test_a_namespace_that_is_not_a_plain_name_is_refused_so_its_scan_cannot_match_others(
    namespace: str,
) -> None:
    with pytest.raises(laneway.ConfigError, match="namespace"):
        RedisBackend("redis://127.0.0.1:6379/0", namespace=namespace)


def test_opening_without_create_refuses_a_namespace_nobody_used_and_writes_nothing(
    backend: RedisBackend,
) -> None:
    from laneway.backends import open_backend
    from tests.conftest import REDIS_URL, fresh_namespace

    missing = fresh_namespace()
    with pytest.raises(laneway.ConfigError, match=f"no laneway namespace '{missing}'"):
        open_backend(REDIS_URL, missing, create=False)
    assert not redis.Redis.from_url(REDIS_URL).exists(f"{missing}:config")  # was created
    open_backend(REDIS_URL, backend.layout.namespace, create=False).close()
