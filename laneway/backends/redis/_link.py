"""How commands reach Redis: one server (a lean fast path) or a cluster (redis-py's client).

Both links offer the same few operations: run one command, run many in one pipelined
round trip, block for a wake-up, scan the namespace, close. ``EVALSHA`` that meets
``NOSCRIPT`` (a restarted server, a new primary) loads the script and runs it again.

The single-server link keeps its own small stack of idle connections instead of checking
one out of redis-py's pool for every command: the pool's bookkeeping costs more than the
round trip to a local server, and claims, finishes and enqueues are the hot path.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..._errors import ConfigError

Command = tuple[Any, ...]

RECONNECT_S = 5.0
"""How long a command keeps trying to reach a server that went away before it raises."""
RECONNECT_FIRST_PAUSE_S = 0.02
RECONNECT_MAX_PAUSE_S = 0.25

_pack_one: Callable[[Command], bytes] | None
try:
    from hiredis import pack_command as _pack_one
except ImportError:  # pragma: no cover - redis[hiredis] is the documented install
    _pack_one = None


class Reconnect:
    """The rule for a command whose connection was lost: try again on a fresh connection,
    at once when the lost one had sat idle (the server restarted since it was used), else
    after a pause that doubles from ``RECONNECT_FIRST_PAUSE_S`` to ``RECONNECT_MAX_PAUSE_S``;
    give up ``RECONNECT_S`` after the first failure."""

    def __init__(self) -> None:
        self._deadline = 0.0
        self._pause = RECONNECT_FIRST_PAUSE_S

    def pause(self, reused: bool) -> float | None:
        """Seconds to wait before the next try, or None: time is up, raise."""
        now = time.monotonic()
        self._deadline = self._deadline or now + RECONNECT_S
        if now >= self._deadline:
            return None
        if reused:
            return 0.0
        pause, self._pause = self._pause, min(self._pause * 2, RECONNECT_MAX_PAUSE_S)
        return pause


@dataclass(frozen=True, slots=True)
class Script:
    """One ``.lua`` file of this package with ``lib.lua`` in front of it."""

    name: str
    body: str
    sha: str

    @classmethod
    def load(cls, name: str) -> Script:
        here = resources.files(__package__)
        lib = (here / "lib.lua").read_text(encoding="utf-8")
        body = lib + "\n" + (here / f"{name}.lua").read_text(encoding="utf-8")
        return cls(name, body, hashlib.sha1(body.encode()).hexdigest())  # Redis names scripts by SHA-1

    def command(self, keys: Sequence[str], args: Sequence[Any]) -> Command:
        """The ``EVALSHA`` command running this script."""
        return ("EVALSHA", self.sha, len(keys), *keys, *args)


class Link(ABC):
    """A connection to one Redis server or one cluster."""

    def __init__(self) -> None:
        self._bodies: dict[str, str] = {}

    def register(self, script: Script) -> None:
        """Remember ``script`` so that ``NOSCRIPT`` replies can be repaired."""
        self._bodies[script.sha] = script.body

    def _missing_script(self, cmd: Command, exc: Exception) -> bool:
        return isinstance(exc, NoScriptError) and cmd[0] == "EVALSHA" and cmd[1] in self._bodies

    def missing_scripts(self, cmds: Sequence[Command], replies: Sequence[Any]) -> list[int]:
        """Indexes of the ``EVALSHA`` commands whose reply says the server lacks the script
        (a restarted server, a new primary): load their bodies and run them again."""
        return [i for i, (c, r) in enumerate(zip(cmds, replies, strict=True)) if self._missing_script(c, r)]

    def script_body(self, sha: str) -> str:
        """The body of a registered script, for ``SCRIPT LOAD``."""
        return self._bodies[sha]

    @abstractmethod
    def execute(self, *cmd: Any) -> Any:
        """Run one command and return its reply (error replies raise)."""

    @abstractmethod
    def pipeline(self, cmds: Sequence[Command]) -> list[Any]:
        """Run ``cmds`` in one round trip (per node); error replies are returned, not raised."""

    @abstractmethod
    def wait(self, wake_keys: Sequence[str], channels: Sequence[str], timeout_s: float) -> None:
        """Block until a wake-up token arrives on ``wake_keys`` (or ``channels``) or timeout."""

    @abstractmethod
    def scan(self, pattern: str) -> Iterator[bytes]:
        """Every key matching ``pattern`` on every node (SCAN, never KEYS)."""

    @abstractmethod
    def close(self) -> None:
        """Close every connection."""


class Conns:
    """A single-server link's connections (sync or asyncio ones): the idle stack, most
    recently used on top, and every one opened. Bookkeeping only; closing what it forgets
    is the caller's. A forked child starts afresh: its parent's sockets are not its own."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._idle: list[Any] = []  # redis-py Connections (untyped in redis-py)
        self._open: list[Any] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def take(self) -> tuple[Any, bool]:
        """An idle connection (True: it may have gone stale) or a new one (``give_back``
        it after a clean round trip, or ``forget`` it)."""
        if self._pid != os.getpid():
            with self._lock:
                self._idle, self._open, self._pid = [], [], os.getpid()
        try:
            return self._idle.pop(), True
        except IndexError:
            conn = self._make()
            with self._lock:
                self._open.append(conn)
            return conn, False

    @property
    def opened(self) -> int:
        """Connections opened and not forgotten (idle or in use)."""
        return len(self._open)

    def give_back(self, conn: Any) -> None:
        """Put a connection back on top of the idle stack after a clean round trip."""
        self._idle.append(conn)

    def forget(self, conn: Any) -> None:
        with self._lock:
            if conn in self._open:
                self._open.remove(conn)

    def forget_idle(self) -> list[Any]:
        """Forget and return the idle connections."""
        with self._lock:
            idle, self._idle = self._idle, []
            for conn in idle:
                if conn in self._open:
                    self._open.remove(conn)
        return idle

    def forget_all(self) -> list[Any]:
        """Forget and return every connection opened."""
        with self._lock:
            conns, self._open, self._idle = self._open, [], []
        return conns


def check_url(url: str) -> None:
    """Raise ``ConfigError`` naming a query option of ``url`` that redis-py's connections
    do not take, or a value it cannot parse.

    redis-py hands unknown options to the connection class, which only fails on the
    first command, as a ``TypeError``; this builds that object up front (no socket is
    opened) so a misspelt option is refused when the backend is made.
    """
    parts = urlsplit(url)
    db = parts.path.strip("/")
    if parts.scheme in ("redis", "rediss") and db and not db.isdigit():
        raise ConfigError(f"Redis URL: the database is a number (redis://host:6379/0), not {db!r}")
    try:  # the pool takes its own options (max_connections, ...) and keeps the rest for connections
        pool: Any = redis.ConnectionPool.from_url(url)
    except ValueError as exc:
        raise ConfigError(f"Redis URL: {exc}") from None
    except TypeError as exc:  # an option the pool's own arguments cannot take
        raise ConfigError(f"Redis URL: {exc}") from None
    try:
        pool.connection_class(**pool.connection_kwargs)
    except TypeError as exc:
        found = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
        what = repr(found.group(1)) if found else f"({exc})"
        raise ConfigError(
            f"unknown Redis URL option {what}: the query options are redis-py's connection "
            "arguments (socket_timeout, ssl_cert_reqs, ssl_ca_certs, ...)"
        ) from None


class SingleLink(Link):
    """One Redis server (``redis://``, ``rediss://``, ``unix://``)."""

    def __init__(self, url: str) -> None:
        super().__init__()
        check_url(url)
        self.client = redis.Redis.from_url(url, decode_responses=False)
        self._conns = Conns(self.client.connection_pool.make_connection)

    def _drop(self, conn: Any) -> None:
        conn.disconnect()
        self._conns.forget(conn)

    def _drop_idle(self) -> None:
        """Forget every idle connection: one died, so the server went away and they did too."""
        for conn in self._conns.forget_idle():
            conn.disconnect()

    def _once(self, conn: Any, cmds: Sequence[Command]) -> list[Any]:
        conn.send_packed_command(packed_commands(conn, cmds), check_health=False)
        replies: list[Any] = []
        for _ in cmds:
            try:
                replies.append(conn.read_response())
            except ResponseError as exc:
                replies.append(exc)
        return replies

    def _roundtrip(self, cmds: Sequence[Command]) -> list[Any]:
        """Send ``cmds`` and read every reply.

        A lost connection is retried on fresh connections, backing off, for up to
        ``RECONNECT_S``: a restarted server is found again without the caller noticing.
        Every script is safe to repeat (``enqueue`` stores an id once; a repeated claim at
        worst leases jobs nobody runs until the lease runs out).
        """
        retry = Reconnect()
        while True:
            conn, reused = self._conns.take()
            try:
                replies = self._once(conn, cmds)
            except (RedisConnectionError, OSError):
                self._drop(conn)
                pause = retry.pause(reused)
                if pause is None:
                    raise
                if reused:
                    self._drop_idle()
                time.sleep(pause)
                continue
            except BaseException:
                self._drop(conn)
                raise
            self._conns.give_back(conn)
            return replies

    def _repair(self, cmds: Sequence[Command], replies: list[Any]) -> list[Any]:
        missing = self.missing_scripts(cmds, replies)
        if missing:
            for sha in {cmds[i][1] for i in missing}:
                self._roundtrip([("SCRIPT", "LOAD", self.script_body(sha))])
            again = self._roundtrip([cmds[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    def execute(self, *cmd: Any) -> Any:
        reply = self._repair([cmd], self._roundtrip([cmd]))[0]
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    def pipeline(self, cmds: Sequence[Command]) -> list[Any]:
        if not cmds:
            return []
        return self._repair(cmds, self._roundtrip(cmds))

    def wait(self, wake_keys: Sequence[str], channels: Sequence[str], timeout_s: float) -> None:
        """``BLPOP`` on the wake lists; a lost connection just ends the wait (after a pause,
        so a caller whose server is away retries at a calm pace)."""
        try:
            self._blocking(wake_keys, timeout_s, None)
        except (RedisConnectionError, OSError):
            time.sleep(min(timeout_s, RECONNECT_MAX_PAUSE_S))

    def wait_then(self, wake_keys: Sequence[str], timeout_s: float, cmd: Command) -> Any:
        """``wait`` with ``cmd`` sent behind the ``BLPOP`` in the same write: the server runs
        ``cmd`` the moment the wait ends (woken or timed out), so its reply comes without
        another round trip. Returns ``cmd``'s reply (an error reply is returned, not
        raised), or None when the reply did not come in time (a spurious wake-up); a lost
        connection raises, as the claim alone would."""
        reply = self._blocking(wake_keys, timeout_s, cmd)
        return None if reply is None else self._repair([cmd], [reply])[0]

    def _blocking(self, wake_keys: Sequence[str], timeout_s: float, cmd: Command | None) -> Any:
        """``BLPOP`` on ``wake_keys`` for at most ``timeout_s`` with ``cmd`` (if any) in the
        same write; ``cmd``'s reply (an error reply returned), or None when nothing came in
        time (an overloaded server: the connection is dropped). A lost connection drops
        every idle one too and raises."""
        conn, _ = self._conns.take()
        blpop = ("BLPOP", *wake_keys, _blpop_seconds(conn, timeout_s))
        reply: Any = None
        try:
            conn.send_packed_command(
                packed_commands(conn, [blpop] if cmd is None else [blpop, cmd]), check_health=False
            )
            conn.read_response()
            if cmd is not None:
                try:
                    reply = conn.read_response()
                except ResponseError as exc:
                    reply = exc
        except RedisTimeoutError:
            self._drop(conn)
            return None
        except (RedisConnectionError, OSError):
            self._drop(conn)
            self._drop_idle()
            raise
        except BaseException:
            self._drop(conn)
            raise
        self._conns.give_back(conn)
        return reply

    def scan(self, pattern: str) -> Iterator[bytes]:
        return self.client.scan_iter(match=pattern, count=1000)

    def close(self) -> None:
        for conn in self._conns.forget_all():
            conn.disconnect()
        self.client.close()


def packed_commands(conn: Any, cmds: Sequence[Command]) -> Any:
    """``cmds`` encoded for one ``send_packed_command`` (hiredis' encoder when present)."""
    return [b"".join([_pack_one(c) for c in cmds])] if _pack_one else conn.pack_commands(cmds)


def _blpop_seconds(conn: Any, timeout_s: float) -> str:
    """``BLPOP``'s timeout argument for a wait of ``timeout_s`` on ``conn``: at most half
    its socket timeout (the reply must arrive before the socket gives up), never 0 (which
    means forever)."""
    limit = conn.socket_timeout
    if limit is not None:
        timeout_s = min(timeout_s, float(limit) / 2)
    return f"{max(math.ceil(timeout_s * 1000), 1) / 1000:.3f}"


def _node(host: str, port: int) -> ClusterNode:
    node: ClusterNode = ClusterNode(host, port)  # type: ignore[no-untyped-call]
    return node


def cluster_client(url: str) -> Any:
    """A ``RedisCluster`` for ``redis+cluster://[user:pass@]host:port[,host:port...][?query]``.

    Query options are those of ``redis://`` URLs (``ssl=true`` and the ``ssl_*`` options
    for TLS, ``socket_timeout``, ...).
    """
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    nodes = []
    for hostport in hosts.split(","):
        host, _, port = hostport.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"redis+cluster URL {url!r}: expected host:port[,host:port...]")
        nodes.append(_node(host, int(port)))
    query = parts.query
    scheme = "redis"
    if "ssl=true" in query.lower().split("&"):
        scheme = "rediss"
        query = "&".join(q for q in query.split("&") if q.lower() != "ssl=true")
    first = f"{userinfo}@{nodes[0].host}:{nodes[0].port}" if userinfo else f"{nodes[0].host}:{nodes[0].port}"
    base = urlunsplit((scheme, first, "", query, ""))
    check_url(base)
    return RedisCluster.from_url(base, startup_nodes=nodes, decode_responses=False)  # a RedisCluster


class ClusterLink(Link):
    """A Redis Cluster, through redis-py's cluster client (routing, redirects, failover)."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.client = cluster_client(url)
        self._local = threading.local()
        self._subs: list[Any] = []
        self._lock = threading.Lock()

    def _load(self, shas: set[str]) -> None:
        for sha in shas:
            self.client.script_load(self.script_body(sha))

    def execute(self, *cmd: Any) -> Any:
        try:
            return self.client.execute_command(*cmd)
        except NoScriptError as exc:
            if not self._missing_script(cmd, exc):
                raise
            self._load({cmd[1]})
            return self.client.execute_command(*cmd)

    def pipeline(self, cmds: Sequence[Command]) -> list[Any]:
        if not cmds:
            return []
        pipe = self.client.pipeline()
        for cmd in cmds:
            pipe.execute_command(*cmd)
        replies = list(pipe.execute(raise_on_error=False))
        missing = self.missing_scripts(cmds, replies)
        if missing:
            self._load({cmds[i][1] for i in missing})
            for i in missing:
                try:
                    replies[i] = self.client.execute_command(*cmds[i])
                except ResponseError as exc:
                    replies[i] = exc
        return replies

    def _pubsub(self, channels: Sequence[str]) -> Any:
        subs: tuple[Any, set[str]] | None = getattr(self._local, "subs", None)
        if subs is None:
            subs = self._local.subs = (self.client.pubsub(), set())
            with self._lock:
                self._subs.append(subs[0])
        pubsub, joined = subs
        new = [c for c in channels if c not in joined]
        if new:
            pubsub.subscribe(*new)
            joined.update(new)
        return pubsub

    def _drop_pubsub(self) -> None:
        """Forget this thread's subscription, whose node went away, and refresh the
        topology, so that the next ``wait`` subscribes afresh on a node that answers (a
        pubsub stays on the node it first chose, even after that node failed over)."""
        subs: tuple[Any, set[str]] | None = getattr(self._local, "subs", None)
        self._local.subs = None
        if subs is not None:
            with self._lock:
                if subs[0] in self._subs:
                    self._subs.remove(subs[0])
            try:
                subs[0].close()
            except (RedisError, OSError):
                pass
        try:
            self.client.nodes_manager.initialize()
        except (RedisError, OSError):
            pass  # no node answers now: the next wait tries again

    def wait(self, wake_keys: Sequence[str], channels: Sequence[str], timeout_s: float) -> None:
        """Wait for a message on ``channels``; a lost connection ends the wait (after a
        pause, as on one server) and the next wait subscribes again (``_drop_pubsub``)."""
        deadline = time.monotonic() + timeout_s
        try:
            pubsub = self._pubsub(channels)
            while True:
                left = deadline - time.monotonic()
                msg = pubsub.get_message(ignore_subscribe_messages=True, timeout=max(0.0, left))
                if msg is not None:
                    while pubsub.get_message(ignore_subscribe_messages=True, timeout=0.0) is not None:
                        pass
                    return
                if left <= 0:
                    return
        except (RedisConnectionError, RedisTimeoutError, OSError):
            self._drop_pubsub()
            time.sleep(max(0.0, min(deadline - time.monotonic(), RECONNECT_MAX_PAUSE_S)))

    def scan(self, pattern: str) -> Iterator[bytes]:
        keys: Iterator[bytes] = self.client.scan_iter(match=pattern, count=1000)
        return keys

    def close(self) -> None:
        with self._lock:
            subs, self._subs = self._subs, []
        for pubsub in subs:
            pubsub.close()
        self.client.close()
