"""Kafka consumer loop for laneway's ordered-parallel keyed processor.

``KafkaStreamConsumer`` joins a consumer group with confluent-kafka, runs each message's
handler in parallel across keys and in order within a key, and commits only offsets below
which every message is finished. See ``docs/streams.md``.
"""

from __future__ import annotations

from laneway.streams._kafka import (
    TP,
    KafkaMessage,
    KafkaStreamConsumer,
    default_key,
    topic_partition,
)

__all__ = ["TP", "KafkaMessage", "KafkaStreamConsumer", "default_key", "topic_partition"]
