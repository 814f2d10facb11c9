"""Least privilege: the Redis backend works as an ACL user that may only touch its own
namespace's keys and channels, with every ``@dangerous`` command denied; and two
namespaces on one server never see each other's work.

The ACL part runs a representative slice of the conformance suite (imported here, so
its tests use this module's ``backend`` fixture) through such a user on the shared
server, and deletes the user afterwards.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

import laneway
from laneway._records import NewJob, OnDead, Outcome, Verdict
from laneway.backends import Backend
from laneway.backends.redis import RedisBackend
from tests.conformance.conftest import app, trace, workers  # noqa: F401 - fixtures for the imported tests
from tests.conformance.test_delays import test_rule4_delayed_job_joins_its_lane_when_due_not_when_sent  # noqa: F401
from tests.conformance.test_jobs import (  # noqa: F401
    test_cancel_stops_a_queued_job_and_its_lane_moves_on,
    test_enqueue_async_works_from_asyncio,
    test_enqueue_many_stores_all_in_order_in_one_call,
    test_rule10_unique_returns_the_pending_job_instead_of_adding_one,
    test_rule11_result_is_kept_and_none_is_not_stored,
)
from tests.conformance.test_lanes import (  # noqa: F401
    test_rule1_lane_order_holds_across_several_workers,
    test_rule3_higher_priority_lane_heads_are_claimed_first,
)
from tests.conformance.test_leases import (  # noqa: F401
    test_rule6_a_worker_whose_lease_ran_out_cannot_ack,
    test_rule6_expired_lease_returns_work_to_the_head_of_its_lane,
    test_rule6_held_lane_stays_held_while_its_lease_is_alive,
    test_rule6_sweep_of_a_dead_worker_recovers_its_work_at_once,
    test_rule7_release_gives_work_back_without_spending_an_attempt,
)
from tests.conformance.test_lowlevel_lanes import test_batches_blocks_without_busy_looping_and_yields_new_work  # noqa: F401
from tests.conftest import REDIS_URL, fresh_namespace, require_server


def _with_user(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{user}:{password}@{host}:{parts.port or 6379}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@pytest.fixture
def limited_url() -> Iterator[tuple[str, str]]:
    """A URL of a fresh ACL user limited to namespace ``ns``, and ``ns``; deleted after."""
    require_server(REDIS_URL, "Redis")
    ns = fresh_namespace()
    user, password = f"laneway-{ns}", secrets.token_hex(16)
    admin = redis.Redis.from_url(REDIS_URL)
    admin.execute_command(
        "ACL", "SETUSER", user, "reset", "on", f">{password}",
        f"~{ns}:*", f"&{ns}:*", "+@all", "-@dangerous",
    )  # fmt: skip
    try:
        yield _with_user(REDIS_URL, user, password), ns
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


@pytest.fixture
def backend(limited_url: tuple[str, str]) -> Iterator[Backend]:
    """The backend the imported conformance tests run on: the limited user's."""
    url, ns = limited_url
    b = RedisBackend(url, namespace=ns)
    try:
        yield b
    finally:
        b.drop_namespace()
        b.close()


def test_the_limited_user_really_is_limited(limited_url: tuple[str, str]) -> None:
    url, ns = limited_url
    client = redis.Redis.from_url(url)
    try:
        client.set(f"{ns}:probe", 1)
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set("someone-else:probe", 1)
        for dangerous in (("KEYS", "*"), ("FLUSHALL",), ("CONFIG", "GET", "maxmemory"), ("INFO",)):
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command(*dangerous)
        client.delete(f"{ns}:probe")
    finally:
        client.close()


def test_a_whole_job_life_works_as_the_limited_user(app: laneway.App) -> None:  # noqa: F811
    seen: list[int] = []

    @app.task(name="t")
    def t(i: int) -> int:
        seen.append(i)
        return i

    jobs = [t.options(lane="L").enqueue(i) for i in range(5)] + [t.options(delay=0.05).enqueue(9)]
    deadline = time.monotonic() + 10
    while len(seen) < 6 and time.monotonic() < deadline:
        app.worker(idle_wait_s=0.05).run(burst=True)
        app.backend.wait(["default"], 0.1)
    assert [i for i in seen if i != 9] == [0, 1, 2, 3, 4] and sorted(seen) == [0, 1, 2, 3, 4, 9]
    assert [j.result(timeout=1) for j in jobs] == [0, 1, 2, 3, 4, 9]
    assert app.backend.stats()[0].succeeded == 6
    assert app.backend.list_jobs(limit=2)[0].id == jobs[-1].id
    assert app.backend.purge(status=laneway.Status.SUCCEEDED) == 6


def _job(job_id: str, lane: str | None = None) -> NewJob:
    return NewJob(
        id=job_id, task="t", queue="default", lane=lane, priority=2, payload=b"{}", max_attempts=3,
        timeout_s=None, unique="same", result_ttl_s=60.0, on_dead=OnDead.SKIP,
    )  # fmt: skip


def test_two_namespaces_on_one_server_never_see_each_others_work() -> None:
    require_server(REDIS_URL, "Redis")
    one = RedisBackend(REDIS_URL, namespace=fresh_namespace())
    two = RedisBackend(REDIS_URL, namespace=fresh_namespace())
    try:
        assert one.enqueue([_job("a1", "L")])[0].created
        assert two.enqueue([_job("b1", "L")])[0].created, "unique keys are per namespace"
        one.put_meta("k", b"1")
        assert two.get_meta("") == {}
        assert two.get_job("a1") is None and one.get_job("b1") is None
        got = two.claim(["default"], worker="w", limit=10, lease_s=30)
        assert [r.id for r in got] == ["b1"], "lane L of one namespace is not lane L of the other"
        assert one.finish([Outcome("a1", got[0].token or 0, Verdict.SUCCEEDED)]) == [False]
        assert [s.queued for s in one.stats()] == [1]
        assert [s.running for s in two.stats()] == [1]
        one.drop_namespace()
        assert one.stats() == [] and two.get_job("b1") is not None
    finally:
        for b in (one, two):
            b.drop_namespace()
            b.close()
