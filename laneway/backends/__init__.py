"""Backends, chosen by URL scheme. ``open_backend(url, namespace)`` makes one."""

from __future__ import annotations

import os
import re
import threading
from urllib.parse import urlsplit, urlunsplit

from .._errors import ConfigError
from ._base import Backend

__all__ = ["Backend", "open_backend", "shown_url"]

_shared_memory: dict[tuple[str, str], Backend] = {}
_shared_lock = threading.Lock()


_SECRET_OPTIONS = re.compile(r"(?i)(^|&)((?:ssl)?password)=[^&]*")


def shown_url(url: str) -> str:
    """``url`` as it may be printed or logged: its password, in the user part or as a
    ``password=``/``sslpassword=`` option, replaced by ``***``."""
    parts = urlsplit(url)
    query = _SECRET_OPTIONS.sub(r"\1\2=***", parts.query)
    if parts.password is None and query == parts.query:
        return url  # unchanged (urlunsplit would turn sqlite:///a.db into sqlite:/a.db)
    if parts.password is not None:
        user = parts.username or ""
        parts = parts._replace(netloc=f"{user}:***@{parts.netloc.rpartition('@')[2]}")
    return urlunsplit(parts._replace(query=query))


def open_backend(url: str, namespace: str, *, create: bool = True) -> Backend:
    """The backend for ``url``: ``memory://``, ``sqlite:///path``, ``redis://``,
    ``rediss://``, ``redis+cluster://`` or ``postgresql://``.

    ``memory://`` URLs are process-wide: every app of one process with the same URL and
    namespace shares one store, as apps sharing a server would.

    With ``create=False`` (for commands that read or tend a store, not for workers and
    producers) the store must exist already: a missing SQLite file or namespace, a
    PostgreSQL namespace that was never migrated or is behind this laneway, or a Redis
    namespace no app ever opened, raises ``ConfigError`` and nothing is created.
    """
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from .memory import MemoryBackend

        with _shared_lock:
            return _shared_memory.setdefault((url, namespace), MemoryBackend())
    if scheme == "sqlite":
        from .sqlite import SQLiteBackend
        from .sqlite._db import parse_url

        if not create:
            path = parse_url(url, synchronous="FULL", busy_timeout_s=0).path  # only the path
            if not os.path.exists(path):
                raise ConfigError(
                    f"no SQLite database at {path!r} (check the URL; `laneway migrate` creates one)"
                )
        return SQLiteBackend(url, namespace=namespace, create=create)
    if scheme in ("redis", "rediss", "unix"):
        from .redis import RedisBackend

        return RedisBackend(url, namespace=namespace, create=create)
    if scheme == "redis+cluster":
        from .redis import RedisClusterBackend

        return RedisClusterBackend(url, namespace=namespace, create=create)
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresBackend

        backend = PostgresBackend(url, namespace=namespace, migrate=create)
        if not create:
            backend.require_schema()
        return backend
    raise ConfigError(
        f"unknown backend URL scheme {scheme!r} in {url!r}: use memory://, sqlite:///path.db, "
        "redis://, rediss://, redis+cluster:// or postgresql://"
    )
