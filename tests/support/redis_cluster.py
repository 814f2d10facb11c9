"""Private Redis servers for the tests: a three-master cluster started once per test
process, and single servers a test starts and stops itself.

``cluster_url()`` starts three ``redis-server --cluster-enabled yes`` processes on free
loopback ports (in a temporary directory, no persistence), joins them with
``redis-cli --cluster create``, waits for ``cluster_state:ok`` on every node and returns
``redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3``. The servers are stopped by
their PIDs when the process exits. ``LANEWAY_TEST_REDIS_CLUSTER`` names an existing
cluster instead.

``RedisServer`` is one private ``redis-server`` (for tests that restart it, flush its
script cache, fill it with millions of keys or speak TLS to it).
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field

import pytest

from tests.support.private_servers import free_ports

MASTERS = 3
START_TIMEOUT_S = 30.0
_lock = threading.Lock()


@dataclass
class _Cluster:
    ports: list[int]
    workdir: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)


_cluster: _Cluster | None = None
_failure: str | None = None


def _free_ports(count: int, first: int = 17101) -> list[int]:
    """Ports p with p and the cluster bus port p + 10000 both free."""
    return free_ports(count, first=first, offsets=(0, 10000))


def _cli(port: int, *args: str) -> str:
    out = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        timeout=10,
        check=False,
    )
    return out.stdout.decode(errors="replace")


def _wait_for(predicate: object, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"private Redis Cluster: timed out waiting for {what}")


def _start() -> _Cluster:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        raise RuntimeError("redis-server and redis-cli must be on PATH for the redis-cluster tests")
    cluster = _Cluster(_free_ports(MASTERS), tempfile.mkdtemp(prefix="laneway-cluster-"))
    try:
        for port in cluster.ports:
            node_dir = os.path.join(cluster.workdir, str(port))
            os.makedirs(node_dir)
            cmd = [
                "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "5000", "--save", "", "--appendonly", "no",
                "--dir", node_dir, "--daemonize", "no", "--logfile", "redis.log",
            ]  # fmt: skip
            cluster.procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in cluster.ports:
            _wait_for(lambda port=port: _cli(port, "PING").strip() == "PONG", f"node {port}")
        create = subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in cluster.ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        if create.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {create.stdout.decode()[-500:]}")
        for port in cluster.ports:
            _wait_for(
                lambda port=port: "cluster_state:ok" in _cli(port, "CLUSTER", "INFO"), "cluster_state:ok"
            )
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _stop_at_exit() -> None:
    global _cluster
    with _lock:
        if _cluster is not None:
            _cluster.stop()
            _cluster = None


def cluster_url() -> str:
    """The URL of the session's private cluster, started on first use.

    Skips the calling test when the cluster cannot be started (fails under ``CI=true``).
    """
    global _cluster, _failure
    existing = os.environ.get("LANEWAY_TEST_REDIS_CLUSTER")
    if existing:
        return existing
    with _lock:
        if _cluster is None and _failure is None:
            try:
                _cluster = _start()
                atexit.register(_stop_at_exit)
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                _failure = str(exc)
        if _cluster is not None:
            return _cluster.url
    message = f"no private Redis Cluster: {_failure}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


class RedisServer:
    """One private ``redis-server`` on a free loopback port, without persistence.

    Args:
        extra: more ``redis-server`` arguments (e.g. TLS settings).
        tls: the server listens with TLS only (``extra`` must name the certificates).
    """

    def __init__(self, *extra: str, tls: bool = False) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not on PATH")
        self.port = free_ports(1, first=17201)[0]  # no cluster bus: one port
        self.workdir = tempfile.mkdtemp(prefix="laneway-redis-")
        self.extra = list(extra)
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        listen = ["--port", "0", "--tls-port", str(self.port)] if self.tls else ["--port", str(self.port)]
        cmd = ["redis-server", *listen, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", self.workdir, "--daemonize", "no", *self.extra]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(self._listening, f"redis-server on port {self.port}")

    def _listening(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
