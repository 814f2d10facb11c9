"""Class subscribers: ``@on(matcher)`` marks methods; ``@app.subscriber`` registers them.

```python
@app.subscriber(queue="billing")
class Billing:
    @on("user_created")
    def created(self, event): ...

    @on({"bus_event_type": "user_paid", "plan": "pro"}, max_attempts=5)
    async def paid(self, event): ...
```

Each marked method becomes one laneway task named ``module.Class.method`` whose job
makes a new instance (the class must take no constructor arguments) and calls the
method with the event; stacking ``@on`` gives the method several subscriptions.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .._errors import ConfigError
from ._matchers import MatcherSpec

F = TypeVar("F", bound=Callable[..., Any])
_MARK = "__laneway_bus_on__"


@dataclass(frozen=True, slots=True)
class OnSpec:
    """One ``@on(...)``: a matcher, where copies go, and task options."""

    matcher: MatcherSpec
    queue: str | None = None
    key: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def on(
    matcher: MatcherSpec, *, queue: str | None = None, key: str | None = None, **task_options: Any
) -> Callable[[F], F]:
    """Mark a method of a class subscriber as a handler of events ``matcher`` accepts.

    Args:
        matcher: an event type, a compiled regex on the event type, or an attribute dict.
        queue: the queue its copies go to (default: the class's, else ``<app>_default``).
        key: the subscription's key (default ``module.Class.method[matcher label]``).
        **task_options: options of the method's task (``max_attempts``, ``timeout``,
            ``priority``, ``on_dead``, hooks ...), as for ``@app.task``.
    """

    def mark(fn: F) -> F:
        specs = (*getattr(fn, _MARK, ()), OnSpec(matcher, queue, key, dict(task_options)))
        setattr(fn, _MARK, specs)
        return fn

    return mark


def marked_methods(cls: type) -> list[tuple[str, Callable[..., Any], tuple[OnSpec, ...]]]:
    """``(name, function, specs)`` of every ``@on`` method of ``cls`` and its bases.

    In definition order, base classes first; a subclass's method replaces its base's.
    """
    found: dict[str, tuple[Callable[..., Any], tuple[OnSpec, ...]]] = {}
    for klass in reversed(cls.__mro__):
        for name, attr in vars(klass).items():
            specs = getattr(attr, _MARK, None)
            if specs and callable(attr):
                found[name] = (attr, tuple(reversed(specs)))
            elif name in found:
                del found[name]
    return [(name, fn, specs) for name, (fn, specs) in found.items()]


def merge_options(base: dict[str, Any], specs: tuple[OnSpec, ...], where: str) -> dict[str, Any]:
    """The method's task options: the class's, overridden by its ``@on`` ones."""
    own: dict[str, Any] = {}
    for spec in specs:
        for name, val in spec.options.items():
            if name in own and own[name] != val:
                raise ConfigError(f"{where}: task option {name!r} given twice with different values")
            own[name] = val
    return {**base, **own}


def handler_for(cls: type, attr: str, method: Callable[..., Any]) -> Callable[[dict[str, Any]], Any]:
    """A function that runs ``cls().attr(event)``; async when the method is."""
    if inspect.iscoroutinefunction(method):

        async def handle_async(event: dict[str, Any]) -> Any:
            return await getattr(cls(), attr)(event)

        handler: Callable[[dict[str, Any]], Any] = handle_async
    else:

        def handle(event: dict[str, Any]) -> Any:
            return getattr(cls(), attr)(event)

        handler = handle
    handler.__name__ = attr
    handler.__qualname__ = f"{cls.__qualname__}.{attr}"
    handler.__module__ = cls.__module__
    handler.__doc__ = method.__doc__
    return handler
