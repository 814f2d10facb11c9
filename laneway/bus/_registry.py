"""The subscription registry: which apps want which events, stored in the backend.

Layout: one backend meta value per subscribing app, under ``bus:app:<name>``, holding
JSON ``{"v": 1, "app": name, "written_at": epoch_s, "subscriptions": [...]}``. Each
subscription carries everything a router needs to build that subscriber's job without
importing it: its key, queue, task name, matcher and resolved job options. An app's
value is replaced in one ``put_meta`` (atomic), so a reader sees its old set or its new
set, never a mix. Workers write their app's value when they start.

Readers cache what they read for ``REGISTRY_TTL_S``; a write in this process makes
every cache of this process read again.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .._records import OnDead
from ..backends import Backend
from . import _constants as C
from ._matchers import Matcher

log = logging.getLogger("laneway.bus")
_generation = itertools.count(1)
_current_generation = 0
_generation_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Subscription:
    """One subscription as stored: where matching events go and how their jobs behave.

    Attributes:
        app: the subscribing app's name.
        key: the subscription's key, unique within its app.
        queue: the subscriber's queue its copies go to.
        task: the task name that handles the copies (registered in the subscriber).
        matcher: which events it wants.
        priority, max_attempts, timeout_s, result_ttl_s, on_dead: the copy's job options,
            resolved from the task and the subscribing app's defaults.
    """

    app: str
    key: str
    queue: str
    task: str
    matcher: Matcher
    priority: int
    max_attempts: int
    timeout_s: float | None
    result_ttl_s: float
    on_dead: OnDead

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key, "queue": self.queue, "task": self.task, "matcher": self.matcher.to_json(),
            "priority": self.priority, "max_attempts": self.max_attempts, "timeout_s": self.timeout_s,
            "result_ttl_s": self.result_ttl_s, "on_dead": self.on_dead.value,
        }  # fmt: skip

    @classmethod
    def from_json(cls, app: str, data: dict[str, Any]) -> Subscription:
        timeout = data.get("timeout_s")
        return cls(
            app=app, key=str(data["key"]), queue=str(data["queue"]), task=str(data["task"]),
            matcher=Matcher.from_json(data["matcher"]), priority=int(data["priority"]),
            max_attempts=int(data["max_attempts"]), timeout_s=None if timeout is None else float(timeout),
            result_ttl_s=float(data["result_ttl_s"]), on_dead=OnDead(data["on_dead"]),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class AppEntry:
    """One app's stored subscriptions and when a worker last wrote them."""

    app: str
    written_at: float
    subscriptions: tuple[Subscription, ...]


def meta_key(app: str) -> str:
    return f"{C.META_PREFIX}{app}"


def _invalidate_caches() -> None:
    global _current_generation
    with _generation_lock:
        _current_generation = next(_generation)


def store(backend: Backend, app: str, subscriptions: Sequence[Subscription]) -> None:
    """Replace ``app``'s stored subscriptions (atomically); none deletes its entry."""
    if not subscriptions:
        backend.put_meta(meta_key(app), None)
    else:
        doc = {"v": C.REGISTRY_VERSION, "app": app, "written_at": time.time(),
               "subscriptions": [s.to_json() for s in subscriptions]}  # fmt: skip
        backend.put_meta(meta_key(app), json.dumps(doc, separators=(",", ":")).encode())
    _invalidate_caches()


def _decode(key: str, raw: bytes) -> AppEntry | None:
    app = key[len(C.META_PREFIX) :]
    try:
        doc = json.loads(raw)
        if doc.get("v") != C.REGISTRY_VERSION:
            raise ValueError(f"version {doc.get('v')!r}, this laneway reads {C.REGISTRY_VERSION}")
        subs = tuple(Subscription.from_json(app, s) for s in doc["subscriptions"])
        return AppEntry(app, float(doc.get("written_at", 0.0)), subs)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("bus registry entry %r cannot be read (%s); it is ignored", key, exc)
        return None


def load_entries(backend: Backend) -> list[AppEntry]:
    """Every app's stored subscriptions, by app name. Unreadable entries are skipped."""
    raw = backend.get_meta(C.META_PREFIX)
    entries = [_decode(k, v) for k, v in sorted(raw.items())]
    return [e for e in entries if e is not None]


def load(backend: Backend) -> list[Subscription]:
    """Every stored subscription of every app, sorted by (app, key)."""
    return [s for e in load_entries(backend) for s in sorted(e.subscriptions, key=lambda s: s.key)]


def remove(backend: Backend, app: str, key: str | None = None) -> int:
    """Delete ``app``'s stored subscription ``key``, or all of them; returns how many.

    Read-modify-write: a worker of ``app`` starting at the same moment may write its own
    set back (it is the authority on what it subscribes to).
    """
    entry = next((e for e in load_entries(backend) if e.app == app), None)
    if entry is None:
        return 0
    keep = [s for s in entry.subscriptions if key is not None and s.key != key]
    removed = len(entry.subscriptions) - len(keep)
    if removed:
        store(backend, app, keep)
    return removed


class RegistryCache:
    """The stored registry as read by this process, reused for ``ttl_s`` seconds."""

    def __init__(self, ttl_s: float = C.REGISTRY_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []
        self._read_at = float("-inf")
        self._generation = -1

    def get(self, backend: Backend) -> list[Subscription]:
        """The registry, read again when older than ``ttl_s`` or written by this process."""
        now = self._clock()
        with self._lock:
            fresh = now - self._read_at < self.ttl_s and self._generation == _current_generation
            if fresh:
                return self._subs
        generation = _current_generation
        subs = load(backend)
        with self._lock:
            self._subs, self._read_at, self._generation = subs, now, generation
        return subs
