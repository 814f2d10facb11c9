"""The event bus: publish events between apps; each subscriber gets its own laned copy.

```python
import re
import laneway
from laneway.bus import on, present

billing = laneway.App(url, name="billing")

@billing.subscribe("user_created")                          # exact event type
@billing.subscribe(re.compile(r"^user_"))                   # regex on the event type
@billing.subscribe({"bus_event_type": "user_paid", "plan": present()}, queue="critical")
def on_user(event: dict) -> None: ...

shop = laneway.App(url, name="shop")
shop.publish("user_created", {"id": 42}, lane="user:42")    # or delay= / at=
```

See ``docs/bus.md`` for matchers, modes, lanes per subscriber, the registry and the
heartbeat.
"""

from __future__ import annotations

from ._constants import DRIVER_QUEUE, FANOUT_TASK, HEARTBEAT_EVENT, HEARTBEAT_TASK
from ._events import Event, copy_id
from ._matchers import Matcher, Special, SpecialKind, blank, empty, key, nil, present, value
from ._mixin import BusMixin, BusMode
from ._registry import Subscription
from ._subscriber import on

__all__ = [
    "DRIVER_QUEUE",
    "FANOUT_TASK",
    "HEARTBEAT_EVENT",
    "HEARTBEAT_TASK",
    "BusMixin",
    "BusMode",
    "Event",
    "Matcher",
    "Special",
    "SpecialKind",
    "Subscription",
    "blank",
    "copy_id",
    "empty",
    "key",
    "nil",
    "on",
    "present",
    "value",
]
