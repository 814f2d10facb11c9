"""Redis Cluster specifics: hash-tagged shards spread over the masters, one slot per
script, lanes spread over shards, work found and recovered in every shard."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from laneway._errors import ConfigError
from laneway._records import NewJob, OnDead, Outcome, Verdict
from laneway.backends.redis import RedisClusterBackend
from laneway.backends.redis._keys import Layout
from laneway.backends.redis._link import Command
from tests.conftest import fresh_namespace
from tests.support.redis_cluster import cluster_url
from tests.support.workers import seconds_until_woken


@pytest.fixture
def cluster() -> Iterator[RedisClusterBackend]:
    b = RedisClusterBackend(cluster_url(), namespace=fresh_namespace())
    try:
        yield b
    finally:
        b.drop_namespace()
        b.close()


def _job(i: int, lane: str | None = None, **kw: object) -> NewJob:
    fields: dict[str, object] = dict(
        id=f"job-{i}", task="t", queue="default", lane=lane, priority=2, payload=b"{}", max_attempts=3,
        timeout_s=None, unique=None, result_ttl_s=60.0, on_dead=OnDead.SKIP,
    )  # fmt: skip
    fields.update(kw)
    return NewJob(**fields)  # type: ignore[arg-type]


def test_shard_tags_spread_evenly_over_the_hash_slots() -> None:
    layout = Layout("ns", 16)
    slots = [key_slot(s.c.encode()) for s in layout.shards]
    assert [slot * 16 // 16384 for slot in slots] == list(range(16))
    for shard in layout.shards:
        keys = [shard.c, shard.job("x"), shard.lane("q", "a:b|c{d}"), *shard.queue_keys("q")]
        assert len({key_slot(k.encode()) for k in keys}) == 1, "every key of a shard is in one slot"


def test_lanes_spread_over_the_shards_and_every_job_is_found(cluster: RedisClusterBackend) -> None:
    jobs = [_job(i, f"lane-{i}") for i in range(64)] + [_job(100 + i) for i in range(16)]
    assert all(r.created for r in cluster.enqueue(jobs))
    shards = {cluster.layout.job_shard(j).index for j in jobs}
    assert len(shards) >= 12, "64 lanes and 16 unlaned jobs land in most of the 16 shards"
    for job in jobs:
        rec = cluster.get_job(job.id)
        assert rec is not None and rec.lane == job.lane
    assert sum(s.queued for s in cluster.stats()) == 80
    assert len(cluster.list_jobs(limit=1000)) == 80


def test_a_claim_across_shards_shares_one_token_that_finish_and_extend_honour(
    cluster: RedisClusterBackend,
) -> None:
    cluster.enqueue([_job(i, f"lane-{i}") for i in range(24)])
    recs = cluster.claim(["default"], worker="w", limit=24, lease_s=30)
    assert len(recs) == 24 and len({r.token for r in recs}) == 1
    assert len({cluster.layout.job_shard(_job(0, r.lane)).index for r in recs}) > 1
    token = recs[0].token or 0
    assert cluster.extend([token], 30) == [True]
    other = RedisClusterBackend(cluster_url(), namespace=cluster.layout.namespace)
    try:  # a process that did not claim them finds their shards itself
        assert other.extend([token], 30) == [True]
        assert other.finish([Outcome(r.id, token, Verdict.SUCCEEDED) for r in recs[:12]]) == [True] * 12
    finally:
        other.close()
    assert (
        cluster.finish([Outcome(r.id, token, Verdict.SUCCEEDED) for r in recs]) == [False] * 12 + [True] * 12
    )
    assert cluster.extend([token], 30) == [False]


def test_a_dead_workers_leases_are_recovered_in_every_shard(cluster: RedisClusterBackend) -> None:
    cluster.enqueue([_job(i, f"lane-{i}") for i in range(32)])
    recs = cluster.claim(["default"], worker="dead", limit=32, lease_s=30)
    assert len(recs) == 32
    assert cluster.sweep(worker="dead") == 32
    again = cluster.claim(["default"], worker="alive", limit=32, lease_s=30)
    assert sorted(r.id for r in again) == sorted(r.id for r in recs)
    assert all(r.attempts == 2 for r in again)


def test_unique_jobs_without_a_lane_meet_in_one_shard(cluster: RedisClusterBackend) -> None:
    first = cluster.enqueue([_job(1, unique="report")])[0]
    again = cluster.enqueue([_job(2, unique="report")])[0]
    assert first.created and not again.created and again.id == first.id


def test_an_idle_worker_is_woken_by_work_on_any_shard(cluster: RedisClusterBackend) -> None:
    assert cluster.claim(["default"], worker="w", limit=1, lease_s=30) == []
    cluster.wait(["default"], 0.01)  # subscribes
    assert seconds_until_woken(cluster, lambda: cluster.enqueue([_job(7, "somewhere")])) < 2.0


def test_a_namespace_keeps_the_shard_count_it_was_created_with(cluster: RedisClusterBackend) -> None:
    with pytest.raises(ConfigError, match="16 shards"):
        RedisClusterBackend(cluster_url(), namespace=cluster.layout.namespace, shards=8)


def test_a_url_option_redis_py_does_not_take_is_refused_before_any_node_is_asked() -> None:
    with pytest.raises(ConfigError, match="'bogus'"):  # port 1: nothing listens there
        RedisClusterBackend("redis+cluster://127.0.0.1:1?ssl=true&bogus=1", namespace="never-used")


def test_a_namespace_limited_acl_user_works_on_the_cluster() -> None:
    url, ns = cluster_url(), fresh_namespace()
    nodes = [redis.Redis(host=h.rsplit(":", 1)[0], port=int(h.rsplit(":", 1)[1]))
             for h in url.split("//", 1)[1].split(",")]  # fmt: skip
    user = f"lw-{ns}"
    try:
        for node in nodes:
            node.execute_command(
                "ACL", "SETUSER", user, "reset", "on", ">pw", f"~{ns}:*", f"&{ns}:*", "+@all", "-@dangerous"
            )
        b = RedisClusterBackend(url.replace("//", f"//{user}:pw@", 1), namespace=ns)
        try:
            b.enqueue([_job(i, f"lane-{i}") for i in range(20)])
            recs = b.claim(["default"], worker="w", limit=20, lease_s=30)
            assert len(recs) == 20
            assert b.finish([Outcome(r.id, r.token or 0, Verdict.SUCCEEDED) for r in recs]) == [True] * 20
            b.wait(["default"], 0.05)
            assert b.stats()[0].succeeded == 20
        finally:
            b.drop_namespace()
            b.close()
    finally:
        for node in nodes:
            node.execute_command("ACL", "DELUSER", user)
            node.close()


def _lane_in_shard(b: RedisClusterBackend, shard: int, prefix: str = "lane") -> str:
    return next(
        n
        for n in (f"{prefix}-{i}" for i in range(10_000))
        if b.layout.lane_shard("default", n).index == shard
    )


def _nodes() -> list[redis.Redis]:
    return [redis.Redis(host=h.rsplit(":", 1)[0], port=int(h.rsplit(":", 1)[1]))
            for h in cluster_url().split("//", 1)[1].split(",")]  # fmt: skip


def test_a_lease_number_is_never_issued_twice_when_the_cluster_counter_rolls_back(
    cluster: RedisClusterBackend,
) -> None:
    cluster.enqueue([_job(1, "a")])
    (first,) = cluster.claim(["default"], worker="w1", limit=1, lease_s=0.2)
    token = first.token or 0
    # a failover of shard 0's primary lost the last increments (replication is asynchronous)
    cluster.link.execute("HSET", cluster.layout.shards[0].c, "g", token - 1)
    time.sleep(0.3)  # w1 stalls past its lease
    assert cluster.sweep() == 1
    (again,) = cluster.claim(["default"], worker="w2", limit=1, lease_s=30)
    assert again.id == first.id and (again.token or 0) > token > 10**15
    assert cluster.finish([Outcome(first.id, token, Verdict.SUCCEEDED)]) == [False], "w1's stale ack"
    stored = cluster.get_job(again.id)
    assert stored is not None and stored.token == again.token, "the token is stored with every digit"
    assert cluster.extend([again.token or 0], 30) == [True]
    assert cluster.finish([Outcome(again.id, again.token or 0, Verdict.SUCCEEDED)]) == [True]


def test_a_shard_whose_slot_is_migrating_does_not_stop_claims_and_sweeps_of_the_others(
    cluster: RedisClusterBackend,
) -> None:
    moving, other = _lane_in_shard(cluster, 3), _lane_in_shard(cluster, 4)
    cluster.enqueue([_job(1, moving)])
    cluster.enqueue([_job(2, other)])
    slot = key_slot(cluster.layout.shards[3].c.encode())
    nodes = _nodes()
    ids = [n.execute_command("CLUSTER", "MYID").decode() for n in nodes]
    src = next(i for i, n in enumerate(nodes) if n.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) > 0)
    dst = (src + 1) % len(nodes)
    try:  # resharding has begun; no key of the slot has moved yet
        nodes[dst].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[src])
        nodes[src].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[dst])
        assert [r.lane for r in cluster.claim(["default"], worker="w", limit=2, lease_s=30)] == [other]
        assert cluster.sweep() == 0
    finally:
        for i in (src, dst):
            nodes[i].execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
        for n in nodes:
            n.close()
    assert [r.lane for r in cluster.claim(["default"], worker="w", limit=2, lease_s=30)] == [moving]


def test_a_claim_that_loses_a_peeked_lane_takes_a_lane_of_another_shard_at_once(
    cluster: RedisClusterBackend,
) -> None:
    first, second = _lane_in_shard(cluster, 1), _lane_in_shard(cluster, 2)
    cluster.enqueue([_job(1, first)])
    cluster.enqueue([_job(2, second)])
    loser = RedisClusterBackend(cluster_url(), namespace=cluster.layout.namespace)
    real, calls = loser.link.pipeline, []

    def pipeline(cmds: Sequence[Command]) -> list[Any]:
        calls.append(cmds)
        if len(calls) == 2:  # between the loser's peek and its claim, a faster worker takes the oldest lane
            assert [r.lane for r in cluster.claim(["default"], worker="fast", limit=1, lease_s=30)] == [first]
        return real(cmds)

    loser.link.pipeline = pipeline  # type: ignore[method-assign]
    try:
        got = loser.wait_and_claim(["default"], 5.0, worker="loser", limit=1, lease_s=30)
    finally:
        loser.close()
    assert [r.lane for r in got] == [second]


def test_an_idle_worker_subscribes_again_after_its_pubsub_node_went_away(
    cluster: RedisClusterBackend,
) -> None:
    cluster.wait(["default"], 0.01)  # subscribes
    conn = cluster.link._local.subs[0].connection  # type: ignore[attr-defined]
    port, conn.port = conn.port, 1  # as if its node died: nothing listens there
    conn.disconnect()
    try:
        cluster.wait(["default"], 0.5)  # the wait ends, without raising
    finally:
        conn.port = port  # the connection goes back to its node's pool
    woken = seconds_until_woken(cluster, lambda: cluster.enqueue([_job(7, "somewhere")]))
    assert woken < 2.0, "woken through a new subscription"


def test_a_claim_that_keeps_losing_races_wakes_the_idle_workers_again(cluster: RedisClusterBackend) -> None:
    lanes = [_lane_in_shard(cluster, k) for k in (1, 2, 3, 4)]
    for i, lane in enumerate(lanes):
        cluster.enqueue([_job(i, lane)])
    loser = RedisClusterBackend(cluster_url(), namespace=cluster.layout.namespace)
    real, calls = loser.link.pipeline, []

    def pipeline(cmds: Sequence[Command]) -> list[Any]:
        calls.append(cmds)
        if len(calls) in (2, 4, 6):  # before each of its claims a faster worker takes the lane it planned
            assert len(cluster.claim(["default"], worker="fast", limit=1, lease_s=30)) == 1
        return real(cmds)

    try:
        loser.wait(["default"], 0.01)  # subscribes
        while True:  # take in the enqueues' wake-ups: a wait that times out found none left
            began = time.monotonic()
            loser.wait(["default"], 0.2)
            if time.monotonic() - began >= 0.2:
                break
        loser.link.pipeline = pipeline  # type: ignore[method-assign]
        assert loser.claim(["default"], worker="loser", limit=1, lease_s=30) == []
        loser.link.pipeline = real  # type: ignore[method-assign]
        began = time.monotonic()
        loser.wait(["default"], 3.0)
        assert time.monotonic() - began < 1.0, "woken by the loser's own wake-up"
        assert [r.lane for r in loser.claim(["default"], worker="loser", limit=1, lease_s=30)] == [lanes[3]]
    finally:
        loser.close()
