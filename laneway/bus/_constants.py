"""Every reserved name and default of the event bus, in one place, with units in the names."""

from __future__ import annotations

DRIVER_QUEUE = "laneway.bus"
"""Reserved queue of fan-out and heartbeat jobs; every worker of a subscribing app listens to it."""
FANOUT_TASK = "laneway.bus.fanout"
"""Reserved task that copies one stored event into the queue of every matching subscriber."""
HEARTBEAT_TASK = "laneway.bus.heartbeat"
"""Reserved periodic task that publishes the ``bus.heartbeat`` event once a minute."""

HEARTBEAT_EVENT = "bus.heartbeat"
"""Event type of the heartbeat (ResqueBus's ``heartbeat_minutes``)."""
HEARTBEAT_LANE = "bus.heartbeat"
"""Lane of the heartbeat jobs (in ``DRIVER_QUEUE``) and of every heartbeat copy, so each
subscriber sees the minutes in order."""
HEARTBEAT_EVERY_S = 60.0

META_PREFIX = "bus:app:"
"""Backend meta key prefix of the subscription registry: one value per subscribing app."""
REGISTRY_VERSION = 1

REGISTRY_TTL_S = 1.0
"""How long a process reuses the registry it read before reading it again."""

PUBLISHED_LOG_MAX = 100_000
"""Most published events an app keeps in memory while recording for tests."""

COPY_OVERHEAD_BYTES = 1024
"""Room kept under ``max_payload_bytes`` at publish for what fan-out adds to each copy."""

RESERVED_PREFIX = "bus_"
"""Attribute names starting with this belong to the bus (metadata); publishers may not set them."""

EVENT_TYPE = "bus_event_type"
PUBLISHED_AT = "bus_published_at"
BUS_ID = "bus_id"
BUS_APP = "bus_app"
BUS_LANE = "bus_lane"
DELAYED_UNTIL = "bus_delayed_until"
RIDER_APP = "bus_rider_app"
RIDER_KEY = "bus_rider_key"
RIDER_QUEUE = "bus_rider_queue"
