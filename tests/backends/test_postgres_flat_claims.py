"""Claim cost on PostgreSQL does not grow with the depth of a lane (the pg-boss #849 trap),
nor with the number of delayed or blocked jobs (SPEC §3.13).

Two namespaces are measured in alternation so that load from anything else on the machine
hits both alike: a baseline of 1,000 lanes holding one job each, and the same plus one lane
holding 100,000 jobs (bulk-inserted with one ``INSERT ... SELECT generate_series``). The deep
lane's head is the oldest work, so every claim in the second namespace takes it and every
finish looks its next head up again. ``LANEWAY_SOAK=1`` measures more claims.
"""

from __future__ import annotations

import itertools
import os
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from psycopg import sql

from laneway import Status
from laneway._records import NewJob, OnDead, Outcome, Verdict
from laneway.backends.postgres import PostgresBackend
from tests.conftest import drop_backend, make_backend

SOAK = os.environ.get("LANEWAY_SOAK") == "1"
DEEP = 100_000
SHALLOW_LANES = 1_000
ROUNDS = 200 if SOAK else 120
WARMUP = 10
PER_CLAIM = 4


def _job(i: int, lane: str) -> NewJob:
    return NewJob(
        id=f"{lane}-{i}", task="t", queue="q", lane=lane, priority=2, payload=b"[]", max_attempts=3,
        timeout_s=None, unique=None, result_ttl_s=3600.0, on_dead=OnDead.SKIP,
    )  # fmt: skip


def _bulk_insert(backend: PostgresBackend, lane: str, count: int, status: str, delay_s: float = 0.0) -> None:
    """``count`` jobs in ``lane`` with one statement, then index the lane as a claim would."""
    s = sql.Identifier(backend.schema)
    query = sql.SQL(
        "INSERT INTO {s}.jobs (id, task, queue, lane, priority, payload, status, max_attempts, "
        "result_ttl_s, on_dead, enqueued_at, run_at, seq) "
        "SELECT %(lane)s || '-' || g, 't', 'q', %(lane)s, 2, '\\x5b5d', %(status)s, 3, 3600, 'block', "
        "clock_timestamp(), clock_timestamp() + make_interval(secs => %(delay)s), "
        "CASE WHEN %(delay)s > 0 THEN NULL ELSE nextval({seq}) END FROM generate_series(1, %(n)s) AS g"
    ).format(s=s, seq=sql.Literal(f"{backend.schema}.job_seq"))
    with backend.transaction() as conn:
        conn.execute(query, {"lane": lane, "status": status, "delay": delay_s, "n": count})
        if delay_s == 0:
            conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(s))
            conn.execute("SELECT lane_lock('q', %s), lane_refresh('q', %s)", [lane, lane])
        conn.execute(sql.SQL("ANALYZE {}.jobs").format(s))


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[PostgresBackend, PostgresBackend]]:
    made = [make_backend("postgres", tmp_path), make_backend("postgres", tmp_path)]
    try:
        base, deep = made
        assert isinstance(base, PostgresBackend) and isinstance(deep, PostgresBackend)
        yield base, deep
    finally:
        for backend in made:
            drop_backend(backend)


def _fill_shallow(backend: PostgresBackend) -> None:
    jobs = [_job(0, f"lane{i}") for i in range(SHALLOW_LANES)]
    backend.enqueue(jobs)
    backend.promote()


def _claim_and_finish(backend: PostgresBackend) -> float:
    """Time one claim of ``PER_CLAIM`` jobs (the finish that follows is not timed)."""
    started = time.perf_counter()
    recs = backend.claim(["q"], worker="w", limit=PER_CLAIM, lease_s=60)
    took = time.perf_counter() - started
    assert len(recs) == PER_CLAIM
    backend.finish([Outcome(r.id, r.token or 0, Verdict.SUCCEEDED) for r in recs])
    return took


def _medians(
    base: PostgresBackend,
    deep: PostgresBackend,
    rounds: int,
    step: Callable[[PostgresBackend], float] = _claim_and_finish,
    warmup: int = WARMUP,
) -> tuple[float, float]:
    """Median time of ``step`` on each namespace, the two measured in alternation."""
    for _ in range(warmup):  # warm up: plans, caches, pool
        step(base)
        step(deep)
    times: dict[str, list[float]] = {"base": [], "deep": []}
    for _ in range(rounds):
        times["base"].append(step(base))
        times["deep"].append(step(deep))
    return statistics.median(times["base"]), statistics.median(times["deep"])


def test_claim_latency_is_flat_in_the_depth_of_a_lane(two: tuple[PostgresBackend, PostgresBackend]) -> None:
    base, deep = two
    _bulk_insert(deep, "deep", DEEP, "queued")
    _fill_shallow(base)
    _fill_shallow(deep)
    medians = _medians(base, deep, ROUNDS)
    last = deep.get_job(f"deep-{WARMUP + ROUNDS}")
    assert last is not None and last.status is Status.SUCCEEDED, "every claim took the deep lane's head"
    _assert_flat(*medians, f"with a {DEEP:,}-job lane as well")


def test_claim_latency_is_flat_in_delayed_and_blocked_work(
    two: tuple[PostgresBackend, PostgresBackend],
) -> None:
    base, deep = two
    _bulk_insert(deep, "later", 50_000, "waiting", delay_s=3600)
    _bulk_insert(deep, "blocked", 50_000, "queued")
    with deep.transaction() as conn:
        conn.execute(
            sql.SQL("UPDATE {}.jobs SET status = 'dead' WHERE id = 'blocked-1'").format(
                sql.Identifier(deep.schema)
            )
        )
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(deep.schema)))
        conn.execute("SELECT lane_refresh('q', 'blocked')")
    _fill_shallow(base)
    _fill_shallow(deep)
    _assert_flat(*_medians(base, deep, ROUNDS), "with 100,000 delayed or blocked jobs as well")


def test_claim_latency_is_flat_right_after_a_burst_of_new_lanes(
    two: tuple[PostgresBackend, PostgresBackend],
) -> None:
    """An enqueue joins its laned jobs to their lanes itself, so claims after a burst of
    20,000 new lanes (enqueued 2,000 per call) do not pay for it."""
    base, burst = two
    _fill_shallow(base)
    _fill_shallow(burst)
    _burst_of_lanes(burst, 20_000)
    _assert_flat(*_medians(base, burst, ROUNDS), "right after 20,000 new lanes")


def test_claim_latency_stays_flat_when_lanes_grow_after_the_claim_was_planned(
    two: tuple[PostgresBackend, PostgresBackend],
) -> None:
    """A worker keeps its connection, and with it the claim's plan, made when the queue
    was nearly empty; a burst of lanes that follows must not turn that plan into a scan
    of every lane (autovacuum is off here, so no ANALYZE comes to replan it)."""
    base, grown = two
    for backend in two:
        _without_autovacuum(backend)
        backend.enqueue([_job(0, "first")])
        _claim_and_finish_one(backend)  # the plans are made now, with one lane
    _fill_shallow(base)
    _fill_shallow(grown)
    _burst_of_lanes(grown, 30_000)
    _assert_flat(*_medians(base, grown, ROUNDS), "with 30,000 lanes more than when it was planned")


def _without_autovacuum(backend: PostgresBackend) -> None:
    """No autovacuum (and so no ANALYZE) on the namespace's tables: plans made now stay."""
    with backend.transaction() as conn:
        for table in ("jobs", "lanes"):
            conn.execute(
                sql.SQL("ALTER TABLE {}.{} SET (autovacuum_enabled = false)").format(
                    sql.Identifier(backend.schema), sql.Identifier(table)
                )
            )


def _burst_of_lanes(backend: PostgresBackend, lanes: int) -> None:
    """``lanes`` new single-job lanes, enqueued 2,000 per call."""
    for start in range(0, lanes, 2_000):
        backend.enqueue([_job(0, f"new{i}") for i in range(start, start + 2_000)])


def _assert_flat(base_s: float, other_s: float, what: str, timed: str = "claim") -> None:
    print(f"median {timed}: {base_s * 1e3:.2f} ms with 1,000 lanes, {other_s * 1e3:.2f} ms {what}")
    assert other_s <= 1.5 * base_s, f"median {timed} {other_s * 1e3:.2f} ms {what} vs {base_s * 1e3:.2f} ms"


def _claim_and_finish_one(backend: PostgresBackend) -> None:
    recs = backend.claim(["q"], worker="w", limit=1, lease_s=60)
    assert len(recs) == 1
    backend.finish([Outcome(recs[0].id, recs[0].token or 0, Verdict.SUCCEEDED)])


_new_lanes = itertools.count()


def _enqueue_one_new_lane(backend: PostgresBackend) -> float:
    """Time one enqueue of a job on a lane of its own (its join to the lane included)."""
    started = time.perf_counter()
    backend.enqueue([_job(0, f"one{next(_new_lanes)}")])
    return time.perf_counter() - started


def test_enqueue_of_a_laned_job_stays_flat_as_lanes_grow_after_it_was_planned(
    two: tuple[PostgresBackend, PostgresBackend],
) -> None:
    """Each laned job joins its lane in the enqueue's transaction (the lane's head is
    rewritten). Planned while the queue had one lane, that rewrite must stay one index
    probe per lane, not a scan of every lane of the queue, when 30,000 lanes follow."""
    base, grown = two
    for backend in two:
        _without_autovacuum(backend)
        for _ in range(WARMUP):  # the plans are made now, with a handful of lanes
            _enqueue_one_new_lane(backend)
    _fill_shallow(base)
    _fill_shallow(grown)
    _burst_of_lanes(grown, 30_000)
    medians = _medians(base, grown, ROUNDS, _enqueue_one_new_lane, warmup=0)
    _assert_flat(*medians, "with 30,000 lanes more than when it was planned", timed="laned enqueue")
