"""Scale (SPEC §3 rule 13) on a private Redis server: idle lanes cost nothing, stored
messages cost a constant each, and a claim costs the same with 1,000 or 100,000 ready
lanes (1,000,000 with ``LANEWAY_SOAK=1``), with deep lanes and many delayed jobs.

Set-up writes jobs through pipelined bulk ``enqueue`` scripts (1,000 jobs a script).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator

import pytest
import redis

from laneway._records import NewJob, OnDead, Outcome, Verdict
from laneway.backends.redis import RedisBackend
from tests.support.redis_cluster import RedisServer

SOAK = os.environ.get("LANEWAY_SOAK") == "1"
SMALL, BIG = 1_000, (1_000_000 if SOAK else 100_000)
CHUNK = 1_000
PAYLOAD = b'{"a":[],"k":{},"h":{}}'


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    srv = RedisServer()
    yield srv
    srv.close()


@pytest.fixture
def admin(server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url)
    yield client
    client.close()


def _job(i: int, lane: str | None, *, delay_s: float = 0.0, ttl_s: float = 3600.0) -> NewJob:
    return NewJob(
        id=f"{i:032x}", task="noop", queue="default", lane=lane, priority=2, payload=PAYLOAD,
        max_attempts=20, timeout_s=None, unique=None, result_ttl_s=ttl_s, on_dead=OnDead.SKIP,
        delay_s=delay_s,
    )  # fmt: skip


def fill(backend: RedisBackend, jobs: Iterator[NewJob] | list[NewJob], per_pipeline: int = 10) -> None:
    """Enqueue ``jobs`` fast: 1,000 a script, ``per_pipeline`` scripts a round trip."""
    shard = backend.layout.shards[0]
    cmds, chunk = [], []
    for job in jobs:
        chunk.append(job)
        if len(chunk) == CHUNK:
            cmds.append(backend._enqueue_cmd(shard, chunk, None))
            chunk = []
        if len(cmds) == per_pipeline:
            assert not any(isinstance(r, Exception) for r in backend.link.pipeline(cmds))
            cmds = []
    if chunk:
        cmds.append(backend._enqueue_cmd(shard, chunk, None))
    assert not any(isinstance(r, Exception) for r in backend.link.pipeline(cmds))


def _lane_keys(admin: redis.Redis, ns: str) -> int:
    return sum(1 for _ in admin.scan_iter(match=f"{ns}:*:l:*", count=1000))


def test_drained_lanes_leave_no_key_and_give_their_memory_back(
    server: RedisServer, admin: redis.Redis
) -> None:
    lanes = 20_000
    b = RedisBackend(server.url, namespace="idle")

    def drain() -> None:
        while recs := b.claim(["default"], worker="w", limit=500, lease_s=60):
            assert all(b.finish([Outcome(r.id, r.token or 0, Verdict.SUCCEEDED) for r in recs]))
        b.sweep()

    try:
        fill(b, [_job(lanes, "warm-up", ttl_s=0.0)])  # scripts cached, connections open
        drain()
        base = int(admin.info("memory")["used_memory"])
        fill(b, (_job(i, f"user:{i}", ttl_s=0.0) for i in range(lanes)))
        assert _lane_keys(admin, "idle") == lanes
        drain()
        shard = b.layout.shards[0]
        assert _lane_keys(admin, "idle") == 0
        assert admin.scard(shard.key("L:default")) == 0 and admin.hlen(shard.key("held")) == 0
        assert admin.zcard(shard.key("r:default")) == 0 and admin.zcard(shard.key("a")) == 0
        left = sorted(k.decode() for k in admin.scan_iter(match="idle:*", count=1000))
        assert left == sorted(["idle:config", shard.key("c"), shard.key("w:default")])
        # allocator slack after 20,000 drained lanes, not kept keys (asserted above): < 26 B a lane;
        # the server shrinks its key table in the background, so give it a moment
        deadline = time.monotonic() + 5
        while int(admin.info("memory")["used_memory"]) - base >= 512 * 1024 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert int(admin.info("memory")["used_memory"]) - base < 512 * 1024, "no memory kept for idle lanes"
    finally:
        b.drop_namespace()
        b.close()


def test_a_stored_message_costs_the_same_with_a_thousand_or_many_lanes(
    server: RedisServer, admin: redis.Redis
) -> None:
    """Memory grows with stored messages only: per message it is the same whether there
    are few lanes or very many, and a lane adds a bounded index overhead to its message."""
    costs = []
    for n in (SMALL * 10, BIG):
        b = RedisBackend(server.url, namespace=f"cost{n}")
        try:
            before = int(admin.info("memory")["used_memory"])
            fill(b, (_job(i, f"user:{i}") for i in range(n)))
            costs.append((int(admin.info("memory")["used_memory"]) - before) / n)
            message = admin.memory_usage(b.layout.shards[0].job(f"{7:032x}")) or 0
        finally:
            b.close()  # the private server goes away with its data
    small, big = costs
    print(f"\nbytes per one-message lane: {small:.0f} ({SMALL * 10} lanes), {big:.0f} ({BIG} lanes); "
          f"the message's own hash: {message}")  # fmt: skip
    assert big <= small * 1.15
    assert big <= message + 600, "lane zset, lane set entry, ready and listing index entries"


def _claim_latency_us(b: RedisBackend) -> float:
    t = time.perf_counter()
    recs = b.claim(["default"], worker="w", limit=1, lease_s=60)
    took = (time.perf_counter() - t) * 1e6
    assert recs
    b.finish([Outcome(recs[0].id, recs[0].token or 0, Verdict.RELEASE)])
    return took


def test_claim_latency_does_not_grow_with_ready_lanes_deep_lanes_or_delayed_jobs(server: RedisServer) -> None:
    small = RedisBackend(server.url, namespace="small")
    big = RedisBackend(server.url, namespace="big")
    try:
        fill(small, (_job(i, f"user:{i}") for i in range(SMALL)))
        fill(big, (_job(i, f"user:{i}") for i in range(BIG)))
        fill(big, (_job(BIG + i, "deep") for i in range(BIG // 10)))
        fill(big, (_job(2 * BIG + i, f"later:{i}", delay_s=3600) for i in range(BIG // 10)))
        for b in (small, big):
            for _ in range(200):
                _claim_latency_us(b)
        samples: dict[str, list[float]] = {"small": [], "big": []}
        for _ in range(2_000):
            samples["small"].append(_claim_latency_us(small))
            samples["big"].append(_claim_latency_us(big))
        med_small, med_big = statistics.median(samples["small"]), statistics.median(samples["big"])
        print(f"\nclaim latency median: {med_small:.0f} us with {SMALL} lanes, {med_big:.0f} us with {BIG} "
              f"ready lanes + a lane {BIG // 10} deep + {BIG // 10} delayed jobs: ratio {med_big / med_small:.2f}")  # fmt: skip
        assert med_big <= 1.5 * med_small
    finally:
        for b in (small, big):
            b.close()  # the private server goes away with its data
