"""Redis backends: ``redis://`` / ``rediss://`` (one server) and ``redis+cluster://``.

See ``docs/backends/redis.md`` for the key schema, cluster sharding, ACL and TLS.
"""

from __future__ import annotations

from ._backend import RedisBackend, RedisClusterBackend

__all__ = ["RedisBackend", "RedisClusterBackend"]
