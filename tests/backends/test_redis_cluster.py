"""Redis Cluster specifics: hash-tagged shards spread over the masters, one slot per
script, lanes spread over shards, work found and recovered in every shard."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis
from redis.crc import key_slot

from laneway._errors import ConfigError
from laneway._records import NewJob, OnDead, Outcome, Verdict
from laneway.backends.redis import RedisClusterBackend
from laneway.backends.redis._keys import Layout
from tests.conftest import fresh_namespace
from tests.support.redis_cluster import cluster_url


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

    def later() -> None:
        time.sleep(0.2)
        cluster.enqueue([_job(7, "somewhere")])

    t = threading.Thread(target=later)
    t.start()
    began = time.monotonic()
    cluster.wait(["default"], 5.0)
    t.join()
    assert time.monotonic() - began < 2.0


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
