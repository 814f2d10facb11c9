"""Events: the metadata the bus adds, the JSON-only rule, ids of events and of their copies.

An event is a flat JSON object: the publisher's attributes plus the bus's metadata,
all under keys starting with ``bus_``:

- ``bus_event_type``: what happened (``"user_created"``);
- ``bus_published_at``: the publisher's clock, epoch seconds;
- ``bus_id``: a 32-hex-digit id, unique per event, sorting by publish time;
- ``bus_app``: the publishing app's name (None if it has none);
- ``bus_lane``: the lane the event was published on (None if none);
- ``bus_delayed_until``: for delayed events, when they are due (epoch seconds).

Each subscriber's copy adds ``bus_rider_app``, ``bus_rider_key`` and ``bus_rider_queue``
(which subscription it was delivered for).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .._errors import ConfigError, EncodeError
from . import _constants as C

if TYPE_CHECKING:
    from ._registry import Subscription

Event = dict[str, Any]


def new_bus_id(now: float | None = None) -> str:
    """A 32-hex-digit event id: 48-bit milliseconds of ``now``, then 80 random bits."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"{ms:012x}{os.urandom(10).hex()}"


def copy_id(bus_id: str, app: str, key: str) -> str:
    """The job id of event ``bus_id``'s copy for subscription ``key`` of ``app``.

    Deterministic, so a fan-out that runs twice names the same job both times (and a
    test or an operator can find any copy): the event's time prefix, then 80 bits of a
    hash of (event, app, subscription). Same shape as every laneway job id.
    """
    digest = hashlib.blake2b(f"{bus_id}\x00{app}\x00{key}".encode(), digest_size=10).hexdigest()
    return f"{bus_id[:12]}{digest}"


class _NotJson(Exception):
    """Where a value stops being plain JSON (the message names the path)."""


def _plain(value: Any, path: str) -> Any:
    """``value`` as plain JSON data: a copy with tuples as lists and mappings as dicts, so
    matchers and handlers see the same value in every bus mode (driver mode decodes the
    stored JSON). Raises ``_NotJson`` naming where it stops being JSON."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotJson(f"{path} is {value!r} (not finite)")
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, item in value.items():
            if not isinstance(k, str):
                raise _NotJson(f"{path} has a {type(k).__name__} key {k!r} (JSON keys are strings)")
            out[k] = _plain(item, f"{path}.{k}")
        return out
    raise _NotJson(f"{path} is a {type(value).__name__}")


def check_attrs(attrs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The publisher's attributes as a plain JSON copy (tuples as lists), if they are JSON
    and not reserved.

    Raises:
        EncodeError: an attribute (named by its path) is not plain JSON (str, int, float,
            bool, None, list, tuple or str-keyed dict), e.g. a datetime, set or bytes.
        ConfigError: ``attrs`` is not a mapping, or uses a reserved ``bus_`` name.
    """
    if attrs is None:
        return {}
    if not isinstance(attrs, Mapping):
        raise ConfigError(f"event attributes must be a dict, not {type(attrs).__name__}")
    for name in attrs:
        if isinstance(name, str) and name.startswith(C.RESERVED_PREFIX):
            raise ConfigError(f"attribute {name!r}: names starting with {C.RESERVED_PREFIX!r} are the bus's")
    try:
        plain: dict[str, Any] = _plain(attrs, "attributes")
    except _NotJson as exc:
        raise EncodeError(f"event {exc}, not JSON; convert it (e.g. isoformat() a datetime)") from None
    return plain


def check_event(event: Any) -> Event:
    """``event`` as a plain JSON copy, if it is JSON and carries the bus's metadata (after
    hooks, on fan-out)."""
    if not isinstance(event, dict):
        raise EncodeError(f"an event must be a dict, not {type(event).__name__}")
    try:
        plain: Event = _plain(event, "event")
    except _NotJson as exc:
        raise EncodeError(f"{exc}, not JSON; before_publish hooks must keep events JSON") from None
    for name in (C.EVENT_TYPE, C.BUS_ID):
        if not isinstance(plain.get(name), str) or not plain[name]:
            raise EncodeError(f"event has no {name!r}: not an event of the bus")
    return plain


def build_event(
    event_type: str, attrs: dict[str, Any], *, app: str | None, lane: str | None,
    delayed_until: float | None,
) -> Event:  # fmt: skip
    """The event as stored and delivered: attributes plus metadata."""
    if not isinstance(event_type, str) or not event_type:
        raise ConfigError(f"event type must be a non-empty string, not {event_type!r}")
    now = time.time()
    event: Event = dict(attrs)
    event[C.EVENT_TYPE] = event_type
    event[C.PUBLISHED_AT] = now
    event[C.BUS_ID] = new_bus_id(now)
    event[C.BUS_APP] = app
    event[C.BUS_LANE] = lane
    if delayed_until is not None:
        event[C.DELAYED_UNTIL] = delayed_until
    return event


def json_copy(event: Event) -> Event:
    """A copy of a checked event that shares nothing with it (an inline handler's own)."""
    copied: Event = _plain(event, "event")
    return copied


def rider_event(event: Event, sub: Subscription) -> Event:
    """The copy one subscription receives: the event plus which subscription it is for."""
    copy = dict(event)
    copy[C.RIDER_APP] = sub.app
    copy[C.RIDER_KEY] = sub.key
    copy[C.RIDER_QUEUE] = sub.queue
    return copy


def heartbeat_event(minute_s: float, app: str | None) -> Event:
    """The ``bus.heartbeat`` event of the minute starting at ``minute_s`` (epoch, UTC).

    Attributes follow ResqueBus's ``heartbeat_minutes``: ``timestamp`` / ``epoch_seconds``,
    ``epoch_minutes``, ``epoch_hours``, ``epoch_days``, ``minute``, ``hour``, ``day``,
    ``month``, ``year``, ``yday`` (1-366), ``wday`` (0 = Sunday) and ``iso`` (UTC).
    The event id is derived from the minute, so every worker names the same event.
    """
    seconds = int(minute_s // 60 * 60)
    at = datetime.fromtimestamp(seconds, tz=timezone.utc)
    attrs = {
        "timestamp": seconds, "epoch_seconds": seconds, "epoch_minutes": seconds // 60,
        "epoch_hours": seconds // 3600, "epoch_days": seconds // 86400, "minute": at.minute,
        "hour": at.hour, "day": at.day, "month": at.month, "year": at.year,
        "yday": at.timetuple().tm_yday, "wday": (at.weekday() + 1) % 7, "iso": at.isoformat(),
    }  # fmt: skip
    event = build_event(C.HEARTBEAT_EVENT, attrs, app=app, lane=C.HEARTBEAT_LANE, delayed_until=None)
    digest = hashlib.blake2b(f"{C.HEARTBEAT_EVENT}\x00{seconds}".encode(), digest_size=10).hexdigest()
    event[C.BUS_ID] = f"{seconds * 1000:012x}{digest}"
    return event
