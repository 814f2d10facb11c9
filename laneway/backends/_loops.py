"""One resource per asyncio event loop, for the backends' native ``enqueue_async``.

An asyncio connection belongs to the loop that opened it, so a backend used from several
loops (``asyncio.run`` called twice, a loop per thread) needs one per loop. ``PerLoop``
opens it on the loop's first ``get()`` and closes it when that loop shuts down:
``asyncio.run`` finalises async generators, and a suspended one per loop holds the
``finally`` that closes it. ``close()`` closes the resources whose loops can still run.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger("laneway.backends")


class PerLoop(Generic[T]):
    """``open()`` once per running loop (again when ``alive`` says the last one died);
    ``shut(resource)`` when the loop finalises or on ``close()``. Exceptions of the types in
    ``errors`` raised by ``shut`` during ``close()`` are logged, not raised."""

    def __init__(
        self,
        open: Callable[[], Awaitable[T]],
        shut: Callable[[T], Coroutine[Any, Any, None]],
        *,
        alive: Callable[[T], bool] = lambda _: True,
        errors: tuple[type[Exception], ...] = (),
    ) -> None:
        self._open, self._shut, self._alive, self._errors = open, shut, alive, errors
        self._lock = threading.Lock()
        self._items: dict[asyncio.AbstractEventLoop, T] = {}
        self._keepers: dict[asyncio.AbstractEventLoop, AsyncIterator[None]] = {}
        self._opening: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    async def get(self) -> T:
        """The running loop's resource, opened on first use."""
        loop = asyncio.get_running_loop()
        item = self._items.get(loop)  # one dict read: atomic, no lock on the hot path
        if item is not None and self._alive(item):
            return item
        with self._lock:
            opening = self._opening.setdefault(loop, asyncio.Lock())
        async with opening:
            with self._lock:
                item = self._items.get(loop)
            if item is not None and self._alive(item):
                return item
            item = await self._open()
            keeper = self._keep(loop, item)
            await keeper.__anext__()
            with self._lock:
                self._items[loop] = item
                self._keepers[loop] = keeper
            return item

    async def _keep(self, loop: asyncio.AbstractEventLoop, item: T) -> AsyncIterator[None]:
        """Suspended for the loop's life; shuts ``item`` when the loop finalises it."""
        try:
            yield
        finally:
            with self._lock:
                if self._items.get(loop) is item:
                    del self._items[loop]
                self._keepers.pop(loop, None)
                self._opening.pop(loop, None)
            await self._shut(item)

    def close(self) -> None:
        """Shut every resource whose loop can still run the shutdown. The per-loop keepers
        stay referenced so that their loops finalise them as usual."""
        with self._lock:
            pending = list(self._items.items())
            self._items.clear()
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        caught: tuple[type[Exception], ...] = (RuntimeError, TimeoutError, *self._errors)
        for loop, item in pending:
            if loop.is_closed():
                continue
            if loop is current:
                loop.create_task(self._shut(item))
                continue
            try:
                if loop.is_running():
                    asyncio.run_coroutine_threadsafe(self._shut(item), loop).result(5.0)
                else:
                    loop.run_until_complete(self._shut(item))
            except caught as exc:
                log.debug("could not close a per-loop connection: %s", exc)
