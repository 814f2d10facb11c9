"""Testing the event bus: assert what an app published, and deliver events without workers.

```python
from laneway.bus.testing import assert_published, deliver, record_published

record_published(shop)                      # or shop.configure_bus(mode="inline")
shop.publish("user_created", {"id": 42})
assert_published(shop, "user_created", id=42)
deliver(shop, billing)                      # run fan-outs and billing's copies here
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._errors import ConfigError
from ._constants import EVENT_TYPE
from ._events import Event

if TYPE_CHECKING:
    from .._app import App

__all__ = [
    "assert_not_published",
    "assert_published",
    "clear_published",
    "deliver",
    "published",
    "record_published",
]


def record_published(app: App) -> None:
    """Start keeping the events ``app`` publishes (inline mode does it by itself)."""
    app.configure_bus(record=True)


def _log(app: App) -> list[Event]:
    log = app._bus().log
    if log is None:
        raise ConfigError(
            "this app does not record what it publishes: call laneway.bus.testing.record_published(app) "
            "or app.configure_bus(record=True) (or mode='inline') before publishing"
        )
    return list(log)


def published(app: App, event_type: str | None = None, **attrs: Any) -> list[Event]:
    """Events ``app`` published since recording started, oldest first, optionally only
    those of ``event_type`` whose attributes include ``attrs``."""
    return [
        e
        for e in _log(app)
        if (event_type is None or e.get(EVENT_TYPE) == event_type)
        and all(k in e and e[k] == v for k, v in attrs.items())
    ]


def assert_published(app: App, event_type: str, **attrs: Any) -> Event:
    """Assert ``app`` published an ``event_type`` event with these attributes; return the last."""
    found = published(app, event_type, **attrs)
    if not found:
        seen = [
            (e.get(EVENT_TYPE), {k: v for k, v in e.items() if not k.startswith("bus_")}) for e in _log(app)
        ]
        raise AssertionError(f"no {event_type!r} event with {attrs!r} was published; published: {seen!r}")
    return found[-1]


def assert_not_published(app: App, event_type: str | None = None, **attrs: Any) -> None:
    """Assert ``app`` published no event of ``event_type`` (any, if None) with these attributes."""
    found = published(app, event_type, **attrs)
    if found:
        raise AssertionError(f"{len(found)} matching event(s) were published, first: {found[0]!r}")


def clear_published(app: App) -> None:
    """Forget the events recorded so far."""
    log = app._bus().log
    if log is not None:
        log.clear()


def deliver(*apps: App, max_rounds: int = 1000) -> int:
    """Run, in this thread, every due fan-out and copy for ``apps`` until none is left.

    Each app runs only its own queues (``app.system_queues``: the driver queue and its
    subscriber queues), so no app claims another's copies; apps that only publish run
    nothing. Apps with subscriptions store them first (``register_subscriptions``), as a
    worker does when it starts: a fan-out routes by the stored set. Retries and delayed
    jobs not yet due stay queued.

    Returns:
        How many jobs ran.
    """
    for app in apps:
        if app.subscriptions:
            app.register_subscriptions()
    total = 0
    for _ in range(max_rounds):
        ran = sum(a.run_until_idle(list(a.system_queues)) for a in apps if a.system_queues)
        total += ran
        if ran == 0:
            return total
    raise AssertionError(f"deliver: still running jobs after {max_rounds} rounds")
