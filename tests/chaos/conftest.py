"""What the fault tests share: sizes, backends for worker processes, private servers, figures.

Sizes: every fault test runs at "CI size" by default and at RELIABILITY.md's "soak
size" with ``LANEWAY_SOAK=1`` (same code, bigger numbers; see :func:`size`).

Figures: each fault test reports what it measured (jobs, kills, lost, duplicated, order
violations, longest re-lease time, ...) through the ``figures`` fixture; they show in
the JUnit XML as properties and, with ``LANEWAY_CHAOS_FIGURES=path``, are appended to
that JSON-lines file (``docs/guarantees.md`` quotes them).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from laneway.backends import Backend
from tests.conftest import backend_url, drop_backend, fresh_namespace, make_backend
from tests.support.private_servers import (
    PrivatePostgres,
    PrivateRedis,
    cleanup_template,
    start_private_postgres,
    start_private_redis,
)

SOAK = os.environ.get("LANEWAY_SOAK") == "1"
ALL_BACKENDS = ["memory", "sqlite", "redis", "redis-cluster", "postgres"]
PROCESS_BACKENDS = ["sqlite", "redis", "redis-cluster", "postgres"]
"""Backends that worker processes can share (memory:// lives in one process)."""
SERVER_BACKENDS = ["redis", "postgres"]
"""Backends with a server of their own (a process to kill, a socket to cut)."""
FIGURES_ENV = "LANEWAY_CHAOS_FIGURES"


def size(ci: int, soak: int) -> int:
    """``soak`` with ``LANEWAY_SOAK=1``, else ``ci``."""
    return soak if SOAK else ci


def sizef(ci: float, soak: float) -> float:
    """``size`` for floats (durations)."""
    return soak if SOAK else ci


def timeout(ci_s: float, soak_s: float) -> pytest.MarkDecorator:
    """A per-test timeout for the size being run."""
    return pytest.mark.timeout(soak_s if SOAK else ci_s)


class Chaos:
    """A backend URL other processes can open, one fresh namespace, and a cleanup."""

    def __init__(self, kind: str, url: str, namespace: str) -> None:
        self.kind = kind
        self.url = url
        self.namespace = namespace
        self._opened: list[Backend] = []

    def open(self) -> Backend:
        """A backend on the URL and namespace (closed, and the namespace dropped, at teardown)."""
        from laneway.backends import open_backend

        backend = open_backend(self.url, self.namespace)
        self._opened.append(backend)
        return backend

    def close(self) -> None:
        for i, backend in enumerate(self._opened):
            try:
                if i == 0:
                    drop_backend(backend)
                else:
                    backend.close()
            except Exception as exc:  # noqa: BLE001 - a server a test killed may stay down
                print(f"cleanup of {self.kind} namespace {self.namespace} failed: {exc!r}")
        self._opened.clear()


@pytest.fixture
def chaos_factory(tmp_path: Path) -> Iterator[Callable[[str], Chaos]]:
    """``chaos(kind)``: a backend target for worker processes (``memory://``: for worker
    threads of this process), cleaned up after."""
    made: list[Chaos] = []

    def make(kind: str) -> Chaos:
        if kind == "postgres" or kind == "redis":
            make_backend(kind, tmp_path).close()  # skips (or fails in CI) without a server
        url = "memory://" if kind == "memory" else backend_url(kind, tmp_path)
        target = Chaos(kind, url, fresh_namespace())
        made.append(target)
        return target

    yield make
    for target in made:
        target.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A private ``redis-server`` (AOF, fsync always) the test may kill and restart."""
    server = start_private_redis(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL cluster the test may crash and restart."""
    server = start_private_postgres()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session", autouse=True)
def _remove_postgres_template() -> Iterator[None]:
    yield
    cleanup_template()


Figures = Callable[..., None]


@pytest.fixture
def figures(request: pytest.FixtureRequest, record_property: Callable[[str, Any], None]) -> Figures:
    """``figures(backend=..., jobs=..., lost=..., ...)``: report what a fault test measured."""

    def report(**values: Any) -> None:
        row = {"test": request.node.nodeid, "soak": SOAK, "at": time.strftime("%Y-%m-%d %H:%M:%S"), **values}
        for key, value in values.items():
            record_property(key, value)
        print("figures:", json.dumps(row, default=str))
        path = os.environ.get(FIGURES_ENV)
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row, default=str) + "\n")

    return report
