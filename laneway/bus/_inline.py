"""Inline mode: run the handlers of this process's subscribers inside ``publish``.

For tests and scripts. The publisher finds subscriptions among the apps of this
process that subscribed and share its backend *object* (apps built with the same
``backend=``, or on the same ``memory://`` URL and namespace, which share one store),
and calls each matching handler at once, in (app, key) order, with the copy it would
have received. Nothing is stored, retries do
not apply, and a handler's exception propagates out of ``publish``.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import weakref
from typing import TYPE_CHECKING, Any

from ._events import Event, json_copy, rider_event

if TYPE_CHECKING:
    from .._app import App
    from .._task import Task
    from ._registry import Subscription

_subscribing_apps: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()


def remember(app: App) -> None:
    """Note that ``app`` subscribes, so inline publishers of its bus can find it."""
    with _lock:
        _subscribing_apps.add(app)


def _same_bus(a: App, b: App) -> bool:
    return a is b or a.backend is b.backend


def apps_on_bus(publisher: App) -> list[App]:
    """This process's subscribing apps on ``publisher``'s bus, by name."""
    with _lock:
        apps = list(_subscribing_apps)
    return sorted((a for a in apps if _same_bus(publisher, a)), key=lambda a: a.name or "")


def run_now(task: Task, event: Event) -> Any:
    """Call ``task``'s handler with ``event`` here; waits for ``async`` handlers too."""
    value = task(event)
    if not inspect.isawaitable(value):
        return value

    async def wait() -> Any:
        return await value

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    result: list[Any] = []
    errors: list[BaseException] = []

    def in_thread() -> None:
        try:
            result.append(asyncio.run(wait()))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    t = threading.Thread(target=in_thread, name="laneway-bus-inline")
    t.start()
    t.join()
    if errors:
        raise errors[0]
    return result[0]


def deliver(targets: list[tuple[Subscription, Task]], event: Event) -> int:
    """Run every matching target's handler with its copy of ``event``; returns how many ran."""
    ran = 0
    for sub, task in targets:
        if sub.matcher.matches(event):
            run_now(task, rider_event(json_copy(event), sub))  # each handler its own, as in driver mode
            ran += 1
    return ran
