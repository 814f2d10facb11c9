"""Throughput and ordering of laneway.streams.KeyedProcessor on a synthetic partitioned log.

Submits MESSAGES items over KEYS keys spread over PARTITIONS partitions (keys hash to a
partition, as in Kafka), with a handler that sleeps HANDLER_MS, and reports messages per
second next to the ideal ``workers / handler time``. Exits non-zero if any key's items ran
out of order, any item ran twice or not at all, or the final acks do not cover every offset.

With ``--kafka`` the same log goes through a real Kafka consumer group instead:
librdkafka's in-process mock cluster (topics of 4 partitions, so 8 partitions are two
topics), consumed by ``laneway.kafka.KafkaStreamConsumer``; the rate is measured from the
first handled message to the last (the group join is excluded), and "acks" means the
group's committed offsets reach the end of every partition.

Run from the repository root:

    .venv/bin/python benchmarks/streams_bench.py                 # 100,000 msgs, 8 workers
    .venv/bin/python benchmarks/streams_bench.py --workers 32
    .venv/bin/python benchmarks/streams_bench.py --kafka
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    from laneway.streams import KeyedProcessor
except ModuleNotFoundError:  # run as a script from a checkout without installing laneway
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from laneway.streams import KeyedProcessor


@dataclass(frozen=True)
class Result:
    """Outcome of one run."""

    messages: int
    seconds: float
    order_ok: bool
    acks_ok: bool

    @property
    def rate(self) -> float:
        """Messages per second."""
        return self.messages / self.seconds


def run(
    messages: int = 100_000,
    keys: int = 1_000,
    partitions: int = 8,
    workers: int = 8,
    handler_s: float = 0.001,
    max_in_flight: int = 1_000,
    seed: int = 7,
) -> Result:
    """Run the benchmark once and return its measurements."""
    rng = random.Random(seed)
    log: list[tuple[int, int, int, int]] = []  # (key, seq within key, partition, offset)
    next_seq = [0] * keys
    next_offset = [0] * partitions
    for _ in range(messages):
        key = rng.randrange(keys)
        partition = key % partitions
        log.append((key, next_seq[key], partition, next_offset[partition]))
        next_seq[key] += 1
        next_offset[partition] += 1
    seen: list[list[int]] = [[] for _ in range(keys)]
    acked: dict[int, int] = {}
    ack_lock = threading.Lock()

    def work(item: tuple[int, int]) -> None:
        time.sleep(handler_s)
        seen[item[0]].append(item[1])

    def ack(partition: int, offset: int) -> None:
        with ack_lock:
            acked[partition] = offset

    processor: KeyedProcessor[int, tuple[int, int], int] = KeyedProcessor(
        work, ack, max_in_flight=max_in_flight, workers=workers
    )
    started = time.perf_counter()
    for key, seq, partition, offset in log:
        processor.submit(key, (key, seq), partition, offset)
    processor.flush()
    seconds = time.perf_counter() - started
    processor.close()
    order_ok = all(s == list(range(n)) for s, n in zip(seen, next_seq, strict=True))
    acks_ok = all(acked.get(p) == n - 1 for p, n in enumerate(next_offset) if n)
    return Result(messages, seconds, order_ok, acks_ok)


def run_kafka(
    messages: int = 100_000,
    keys: int = 1_000,
    partitions: int = 8,
    workers: int = 8,
    handler_s: float = 0.001,
    max_in_flight: int = 1_000,
    seed: int = 7,
) -> Result:
    """Run the benchmark through KafkaStreamConsumer on librdkafka's mock cluster."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    from laneway.kafka import KafkaStreamConsumer

    per_topic = 4  # the mock cluster auto-creates topics with 4 partitions
    topics = [f"bench-{i}" for i in range(max(1, -(-partitions // per_topic)))]
    producer = Producer({"test.mock.num.brokers": 1, "log_level": 3, "linger.ms": 5})
    broker = next(iter(producer.list_topics(timeout=10).brokers.values()))
    bootstrap = f"{broker.host}:{broker.port}"
    rng = random.Random(seed)
    next_seq = [0] * keys
    for _ in range(messages):
        key = rng.randrange(keys)
        topic, partition = topics[key % len(topics)], (key // len(topics)) % per_topic
        value = str(next_seq[key]).encode()
        next_seq[key] += 1
        while True:
            try:
                producer.produce(topic, value, str(key).encode(), partition)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)

    seen: list[list[int]] = [[] for _ in range(keys)]
    lock = threading.Lock()
    times: list[float] = []
    count = [0]

    def handle(message: Any) -> None:
        time.sleep(handler_s)
        key = int(message.key())
        seen[key].append(int(message.value()))
        with lock:
            count[0] += 1
            if count[0] in (1, messages):
                times.append(time.perf_counter())
            if count[0] == messages:
                consumer.stop()

    config = {"bootstrap.servers": bootstrap, "group.id": "bench", "auto.offset.reset": "earliest"}
    consumer = KafkaStreamConsumer(
        handle, topics=topics, config={**config, "log_level": 3}, workers=workers, max_in_flight=max_in_flight
    )
    consumer.run()
    order_ok = all(s == list(range(n)) for s, n in zip(seen, next_seq, strict=True))
    check = Consumer(config)
    parts = [TopicPartition(t, p) for t in topics for p in range(per_topic)]
    committed = sum(max(tp.offset, 0) for tp in check.committed(parts, timeout=10))
    check.close()
    seconds = times[-1] - times[0] if len(times) == 2 else float("nan")
    return Result(messages, seconds, order_ok, committed == messages)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print the figures; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--handler-ms", type=float, default=1.0)
    parser.add_argument("--max-in-flight", type=int, default=1_000)
    parser.add_argument("--kafka", action="store_true", help="go through the Kafka consumer loop")
    args = parser.parse_args(argv)
    handler_s = args.handler_ms / 1000
    result = (run_kafka if args.kafka else run)(
        args.messages,
        args.keys,
        args.partitions,
        args.workers,
        handler_s,
        args.max_in_flight,
    )
    ideal = args.workers / handler_s
    print(
        f"{'kafka (mock cluster): ' if args.kafka else ''}{result.messages} msgs, {args.keys} keys, {args.partitions} partitions, "
        f"{args.workers} workers, {args.handler_ms} ms handler: {result.seconds:.2f} s, "
        f"{result.rate:,.0f} msgs/s ({result.rate / ideal:.0%} of ideal {ideal:,.0f}/s)"
    )
    print(f"per-key order held: {result.order_ok}; final acks cover every offset: {result.acks_ok}")
    return 0 if result.order_ok and result.acks_ok else 1


if __name__ == "__main__":
    sys.exit(main())
