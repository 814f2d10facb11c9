"""Fixtures shared by every test: backends of every kind, each in a fresh namespace.

Tests against Redis and Postgres use the servers on 127.0.0.1 (``LANEWAY_TEST_REDIS``,
``LANEWAY_TEST_POSTGRES`` override the URLs). Without a server they are skipped with
the reason, except under ``CI=true``, where a missing server is a failure.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from laneway.backends import Backend

REDIS_URL = os.environ.get("LANEWAY_TEST_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("LANEWAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"

ALL_BACKENDS = ["memory", "sqlite", "redis", "redis-cluster", "postgres"]
"""Every backend kind the conformance suite runs on."""


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=1):
            return True
    except OSError:
        return False


def require_server(url: str, what: str) -> None:
    """Skip (or, in CI, fail) when the server behind ``url`` does not answer."""
    if _reachable(url):
        return
    message = f"{what} is not reachable at {url}"
    if IN_CI:
        pytest.fail(f"{message}, and CI=true requires it")
    pytest.skip(f"{message} (start it, or set CI=true to make this a failure)")


def fresh_namespace() -> str:
    return "t" + uuid.uuid4().hex[:12]


BackendFactory = Callable[..., Backend]


def make_backend(kind: str, tmp_path: Path, namespace: str | None = None) -> Backend:
    """A new, empty backend of ``kind`` in its own namespace."""
    ns = namespace or fresh_namespace()
    if kind == "memory":
        from laneway.backends.memory import MemoryBackend

        return MemoryBackend()
    if kind == "sqlite":
        from laneway.backends.sqlite import SQLiteBackend

        return SQLiteBackend(f"sqlite:///{tmp_path / 'laneway.db'}", namespace=ns)
    if kind == "redis":
        require_server(REDIS_URL, "Redis")
        from laneway.backends.redis import RedisBackend

        return RedisBackend(REDIS_URL, namespace=ns)
    if kind == "redis-cluster":
        from laneway.backends.redis import RedisClusterBackend
        from tests.support.redis_cluster import cluster_url

        return RedisClusterBackend(cluster_url(), namespace=ns)
    if kind == "postgres":
        require_server(POSTGRES_URL, "PostgreSQL")
        from laneway.backends.postgres import PostgresBackend

        return PostgresBackend(POSTGRES_URL, namespace=ns)
    raise ValueError(kind)


def backend_url(kind: str, tmp_path: Path) -> str:
    """A URL for ``kind`` that other processes can open (not for memory)."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'laneway.db'}"
    if kind == "redis":
        require_server(REDIS_URL, "Redis")
        return REDIS_URL
    if kind == "redis-cluster":
        from tests.support.redis_cluster import cluster_url

        return cluster_url()
    if kind == "postgres":
        require_server(POSTGRES_URL, "PostgreSQL")
        return POSTGRES_URL
    raise ValueError(f"{kind} has no URL other processes can open")


def drop_backend(backend: Backend) -> None:
    """Remove everything the backend stored (its namespace), then close it."""
    drop = getattr(backend, "drop_namespace", None)
    if callable(drop):
        drop()
    backend.close()


@pytest.fixture(params=ALL_BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend(backend_kind: str, tmp_path: Path) -> Iterator[Backend]:
    """A fresh backend of every kind in turn."""
    b = make_backend(backend_kind, tmp_path)
    try:
        yield b
    finally:
        drop_backend(b)
