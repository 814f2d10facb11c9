"""Private Redis and PostgreSQL servers that a test may kill and restart.

The shared servers on 6379/5432 belong to every test; a test that kills its backend
needs its own. Both servers here listen on a free loopback port, keep their data in a
temporary directory, are stopped by their own PID (never by name) and are persistent,
so a restart shows what an acknowledged write survives:

- :class:`PrivateRedis`: ``redis-server --appendonly yes --appendfsync always``;
  ``kill9()`` sends SIGKILL, ``start()`` starts it again on the same port and data.
- :class:`PrivatePostgres`: a cluster made by ``initdb`` (run as the ``postgres`` OS user
  through ``runuser`` when the tests run as root); ``crash()`` is
  ``pg_ctl stop -m immediate`` (no shutdown checkpoint: recovery replays the WAL),
  ``start()`` is ``pg_ctl start``. ``initdb`` runs once per test process; each server
  gets a copy of that template.

The fixtures ``private_redis`` and ``private_postgres`` (registered by
``tests/chaos/conftest.py``) skip the test when the binaries are missing, or fail it
under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("LANEWAY_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
_IN_CI = os.environ.get("CI", "").lower() == "true"


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, *, first: int, offsets: tuple[int, ...] = (0,), last: int = 20000) -> list[int]:
    """``count`` ports p from ``first`` up with every p + offset free on loopback. They lie
    below the kernel's ephemeral range (32768 up), so no outgoing connection takes one of
    them between this check and its use, as one can with a port the kernel picked."""
    ports: list[int] = []
    candidate = first
    while len(ports) < count and candidate < last:
        if all(_port_free(candidate + o) for o in offsets):
            ports.append(candidate)
        candidate += 1
    if len(ports) < count:
        raise RuntimeError(f"no {count} free loopback ports from {first} to {last} (offsets {offsets})")
    return ports


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait(predicate: object, what: str, timeout_s: float = START_TIMEOUT_S) -> float:
    """Poll until ``predicate()``; returns the seconds waited. Raises after ``timeout_s``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if callable(predicate) and predicate():
            return time.monotonic() - start
        time.sleep(0.02)
    raise RuntimeError(f"timed out after {timeout_s} s waiting for {what}")


def _unavailable(message: str) -> None:
    if _IN_CI:
        pytest.fail(f"{message}, and CI=true requires it")
    pytest.skip(message)


class PrivateRedis:
    """One ``redis-server`` with an fsync-always append-only file, on a free port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> float:
        """Start (or restart) the server on its port and data; returns seconds to PONG."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        _wait(lambda: not port_open(self.port), f"port {self.port} to be free", STOP_TIMEOUT_S)
        cmd = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--appendonly", "yes", "--appendfsync", "always", "--save", "",
            "--dir", str(self.workdir), "--daemonize", "no", "--logfile", "redis.log",
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return _wait(self._pong, f"private redis-server on {self.port}")

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill9(self) -> None:
        """SIGKILL the server (whatever it had acknowledged is on disk: fsync always)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT_S)

    def stop(self) -> None:
        """Terminate the server by its PID and wait for it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT_S)


def _as_postgres(cmd: list[str]) -> list[str]:
    """Run ``cmd`` as the ``postgres`` OS user when we are root (Postgres refuses root)."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


_template_lock = threading.Lock()
_template: Path | None = None


def _pg_template() -> Path:
    """A data directory made by ``initdb`` once per test process, copied for each server."""
    global _template
    with _template_lock:
        if _template is None:
            root = Path(tempfile.mkdtemp(prefix="laneway-pg-template-"))
            data = root / "data"
            data.mkdir()
            if os.geteuid() == 0:
                shutil.chown(root, "postgres", "postgres")
                shutil.chown(data, "postgres", "postgres")
            out = subprocess.run(
                _as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                              "--no-sync", "-E", "UTF8", "--locale=C"]),
                capture_output=True, timeout=120, check=False,
            )  # fmt: skip
            if out.returncode != 0:
                shutil.rmtree(root, ignore_errors=True)
                raise RuntimeError(f"initdb failed: {out.stderr.decode(errors='replace')[-500:]}")
            _template = data
        return _template


class PrivatePostgres:
    """One PostgreSQL cluster on a free port, with durable commits (fsync on).

    Its directory is made under the system temp dir, not pytest's ``tmp_path``, because
    the ``postgres`` user must be able to reach it; ``stop()`` removes it.
    """

    def __init__(self) -> None:
        self.workdir = workdir = Path(tempfile.mkdtemp(prefix="laneway-pg-"))
        self.port = free_port()
        self.data = workdir / "data"
        self.log = workdir / "postgres.log"
        shutil.copytree(_pg_template(), self.data, symlinks=True)
        if os.geteuid() == 0:
            for path in [workdir, *workdir.rglob("*")]:
                shutil.chown(path, "postgres", "postgres")
        self.data.chmod(0o700)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str, timeout_s: float = START_TIMEOUT_S) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args]),
            capture_output=True, timeout=timeout_s, check=False,
        )  # fmt: skip

    def start(self) -> float:
        """Start (or restart, running crash recovery) the cluster; returns seconds to ready."""
        _wait(lambda: not port_open(self.port), f"port {self.port} to be free", STOP_TIMEOUT_S)
        began = time.monotonic()
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.workdir} -c fsync=on "
            "-c synchronous_commit=on -c max_connections=200 -c shared_buffers=32MB"
        )
        out = self._ctl("-o", options, "-l", str(self.log), "-w", "-t", str(int(START_TIMEOUT_S)), "start")
        if out.returncode != 0:
            tail = self.log.read_text(errors="replace")[-800:] if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {out.stderr.decode(errors='replace')}\n{tail}")
        _wait(lambda: port_open(self.port), f"private postgres on {self.port}")
        return time.monotonic() - began

    @property
    def pid(self) -> int | None:
        """The postmaster's PID from ``postmaster.pid``, or None when it is not running."""
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def crash(self) -> None:
        """``pg_ctl stop -m immediate``: every backend exits at once, no checkpoint."""
        out = self._ctl("-m", "immediate", "-w", "stop", timeout_s=STOP_TIMEOUT_S)
        if out.returncode != 0:
            raise RuntimeError(f"pg_ctl stop -m immediate failed: {out.stderr.decode(errors='replace')}")

    def stop(self) -> None:
        """Stop the cluster (fast shutdown), or SIGKILL its postmaster by PID if that fails."""
        pid = self.pid
        if pid is None:
            return
        out = self._ctl("-m", "fast", "-w", "stop", timeout_s=STOP_TIMEOUT_S)
        if out.returncode != 0 and self.pid == pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def remove(self) -> None:
        """Stop the cluster and delete its directory."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_private_redis(workdir: Path) -> PrivateRedis:
    """A running private Redis in ``workdir``; skips (or fails in CI) without ``redis-server``."""
    if shutil.which("redis-server") is None:
        _unavailable("redis-server is not on PATH")
    workdir.mkdir(parents=True, exist_ok=True)
    server = PrivateRedis(workdir)
    server.start()
    return server


def start_private_postgres() -> PrivatePostgres:
    """A running private PostgreSQL; skips (or fails in CI) without the binaries."""
    if not (PG_BIN / "pg_ctl").exists():
        _unavailable(f"PostgreSQL binaries not found in {PG_BIN} (set LANEWAY_TEST_PG_BIN)")
    server = PrivatePostgres()
    try:
        server.start()
    except BaseException:
        server.remove()
        raise
    return server


def cleanup_template() -> None:
    """Remove the ``initdb`` template (at the end of the test session)."""
    global _template
    with _template_lock:
        if _template is not None:
            shutil.rmtree(_template.parent, ignore_errors=True)
            _template = None
