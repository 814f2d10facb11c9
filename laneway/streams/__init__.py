"""Ordered-parallel keyed stream processing (the WorkShaper / parallel-consumer model).

Consume a partitioned log, run different keys in parallel and each key in order, and ack
only offsets below which everything is finished. :class:`KeyedProcessor` does this on
worker threads, :class:`AsyncKeyedProcessor` on an asyncio event loop; ``laneway.kafka``
drives a :class:`KeyedProcessor` from a Kafka consumer group. See ``docs/streams.md``.
"""

from __future__ import annotations

from laneway.streams._async import AsyncKeyedProcessor
from laneway.streams._processor import KeyedProcessor
from laneway.streams._types import (
    Action,
    ErrorPolicy,
    ProcessorClosedError,
    ProcessorStoppedError,
    Record,
    Stats,
)

__all__ = [
    "Action",
    "AsyncKeyedProcessor",
    "ErrorPolicy",
    "KeyedProcessor",
    "ProcessorClosedError",
    "ProcessorStoppedError",
    "Record",
    "Stats",
]
