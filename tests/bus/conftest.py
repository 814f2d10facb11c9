"""Fixtures of the event-bus tests: publisher and subscriber apps sharing one backend."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import laneway
from laneway.backends import Backend
from laneway.backends.memory import MemoryBackend


def make_app(backend: Backend, name: str | None, **kwargs: Any) -> laneway.App:
    """An app on ``backend`` with quick retries and a registry read on every use."""
    app = laneway.App(backend=backend, name=name, backoff_s=0.05, backoff_max_s=0.2, lease_s=30, **kwargs)
    app.configure_bus(registry_ttl_s=0)
    return app


@dataclass
class Seen:
    """What handlers received, per subscriber name, thread-safe."""

    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, who: str, event: dict[str, Any]) -> None:
        with self.lock:
            self.events.setdefault(who, []).append(event)

    def of(self, who: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.events.get(who, []))

    def types(self, who: str) -> list[str]:
        return [e["bus_event_type"] for e in self.of(who)]

    def count(self) -> int:
        with self.lock:
            return sum(len(v) for v in self.events.values())


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
def memory() -> MemoryBackend:
    """A private in-memory backend."""
    return MemoryBackend()


@pytest.fixture
def shop(memory: MemoryBackend) -> Iterator[laneway.App]:
    yield make_app(memory, "shop")


@pytest.fixture
def billing(memory: MemoryBackend) -> Iterator[laneway.App]:
    yield make_app(memory, "billing")


@pytest.fixture
def mail(memory: MemoryBackend) -> Iterator[laneway.App]:
    yield make_app(memory, "mail")
