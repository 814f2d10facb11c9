"""The event bus on every backend: routing, lane order per subscriber, no duplicate copies,
per-subscriber retries and dead letters, the registry, delays and the heartbeat."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator

import pytest

import laneway
from laneway._execute import Runner
from laneway._records import Status
from laneway.backends import Backend
from laneway.bus import DRIVER_QUEUE, FANOUT_TASK, HEARTBEAT_EVENT, copy_id, present
from tests.conformance.conftest import Trace, Workers, wait_for

from .conftest import Seen, make_app


@pytest.fixture
def workers() -> Iterator[Workers]:
    ws = Workers()
    yield ws
    ws.stop()


def settle(*apps: laneway.App, timeout: float = 20.0) -> None:
    """Run burst workers of each app on its own queues until a whole round claims nothing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        claimed = sum(a.worker(a.system_queues, idle_wait_s=0.01).run(burst=True).claimed for a in apps)
        if claimed == 0:
            return
    raise AssertionError("the bus did not settle")


def count(backend: Backend, queue: str, status: Status) -> int:
    return sum(getattr(s, status.value) for s in backend.stats() if s.queue == queue)


def test_each_subscriber_gets_exactly_its_matching_events_on_its_own_queue(
    backend: Backend, seen: Seen
) -> None:
    shop, billing, mail = (make_app(backend, n) for n in ("shop", "billing", "mail"))
    billing.subscribe(re.compile(r"^order_"), name="billing.h")(lambda e: seen.add("billing", e))
    mail.subscribe({"notify": "email", "to": present()}, name="mail.h")(lambda e: seen.add("mail", e))
    billing.register_subscriptions()
    mail.register_subscriptions()
    shop.publish("order_created", {"n": 1, "notify": "email", "to": "ann@example.com"})
    shop.publish("order_paid", {"n": 2, "notify": "sms", "to": "+1"})
    shop.publish("user_created", {"n": 3, "notify": "email", "to": "bob@example.com"})
    shop.publish("user_deleted", {"n": 4, "notify": "email", "to": ""})
    settle(billing, mail)
    assert sorted(e["n"] for e in seen.of("billing")) == [1, 2]
    assert sorted(e["n"] for e in seen.of("mail")) == [1, 3]
    assert {e["bus_rider_queue"] for e in seen.of("billing")} == {"billing_default"}
    assert count(backend, "billing_default", Status.SUCCEEDED) == 2
    assert count(backend, "mail_default", Status.SUCCEEDED) == 2
    assert count(backend, DRIVER_QUEUE, Status.SUCCEEDED) == 4


def test_laned_events_reach_each_subscriber_in_lane_order_with_competing_workers(
    backend: Backend, workers: Workers
) -> None:
    shop, billing, mail = (make_app(backend, n) for n in ("shop", "billing", "mail"))
    traces = {"billing": Trace(), "mail": Trace()}

    def handler(who: str) -> object:
        def handle(event: dict[str, object]) -> None:
            traces[who].add("start", event["bus_lane"], event["seq"])
            time.sleep(random.uniform(0, 0.002))
            traces[who].add("end", event["bus_lane"], event["seq"])

        return handle

    billing.subscribe(re.compile("^order_"), name="billing.h")(handler("billing"))
    mail.subscribe({"mail": True}, name="mail.h")(handler("mail"))
    for app in (billing, mail):
        app.register_subscriptions()
        workers.start(app, app.system_queues, concurrency=4)
        workers.start(app, app.system_queues, concurrency=4)
    sent: dict[str, dict[str, list[int]]] = {"billing": {}, "mail": {}}
    for seq in range(12):
        for lane in range(6):
            kind = "order_paid" if (seq + lane) % 3 else "user_seen"
            is_mail = seq % 2 == 0
            shop.publish(kind, {"seq": seq, "mail": is_mail}, lane=f"L{lane}")
            if kind.startswith("order_"):
                sent["billing"].setdefault(f"L{lane}", []).append(seq)
            if is_mail:
                sent["mail"].setdefault(f"L{lane}", []).append(seq)
    for who in ("billing", "mail"):
        total = sum(len(v) for v in sent[who].values())
        wait_for(lambda w=who, t=total: len(traces[w].of("end")) >= t, 30, f"{who}'s {total} events")
    time.sleep(0.2)
    for who, trace in traces.items():
        trace.assert_lanes_serial()
        for lane, seqs in sent[who].items():
            assert [s for ln, s in trace.of("start") if ln == lane] == seqs, (who, lane)


def test_standalone_publisher_routes_through_the_stored_registry(backend: Backend, seen: Seen) -> None:
    billing = make_app(backend, "billing")
    billing.subscribe("user_created", name="billing.h")(lambda e: seen.add("billing", e))
    billing.register_subscriptions()
    stranger = make_app(backend, "stranger")
    stranger.configure_bus(mode="standalone")
    event = stranger.publish("user_created", {"id": 5}, lane="user:5")
    (sub,) = stranger.stored_subscriptions()
    rec = backend.get_job(copy_id(event["bus_id"], "billing", sub.key))
    assert rec is not None and rec.queue == "billing_default" and rec.lane == "user:5"
    assert backend.list_jobs(queue=DRIVER_QUEUE) == []
    settle(billing)
    assert [e["id"] for e in seen.of("billing")] == [5]


def test_a_redelivered_fanout_does_not_duplicate_pending_or_finished_copies(
    backend: Backend, seen: Seen
) -> None:
    shop, billing, mail = (make_app(backend, n) for n in ("shop", "billing", "mail"))
    billing.subscribe("user_created", name="billing.h")(lambda e: seen.add("billing", e))
    mail.subscribe("user_created", name="mail.h")(lambda e: seen.add("mail", e))
    billing.register_subscriptions()
    mail.register_subscriptions()
    event = shop.publish("user_created", {"id": 1})
    # A worker runs the fan-out, then dies before its ack: the lease is lost.
    (fanout,) = backend.claim([DRIVER_QUEUE], worker="doomed", limit=1, lease_s=0.3)
    Runner(billing).run(fanout)
    settle(mail)  # mail's copy finishes; billing's stays pending
    assert backend.sweep(worker="doomed") == 1
    settle(billing, mail)  # the fan-out runs again, then billing's copy
    assert [e["id"] for e in seen.of("billing")] == [1]
    assert [e["id"] for e in seen.of("mail")] == [1], "a finished copy is not delivered again"
    rec = backend.get_job(fanout.id)
    assert rec is not None and rec.status is Status.SUCCEEDED and rec.attempts == 2
    assert count(backend, "mail_default", Status.SUCCEEDED) == 1
    for sub in shop.stored_subscriptions():
        assert backend.get_job(copy_id(event["bus_id"], sub.app, sub.key)) is not None


def test_a_failing_subscriber_retries_and_dead_letters_alone(
    backend: Backend, seen: Seen, workers: Workers
) -> None:
    shop, billing, mail = (make_app(backend, n) for n in ("shop", "billing", "mail"))
    attempts: list[int] = []

    @billing.subscribe("order_paid", max_attempts=3)
    def charge(event: dict[str, object]) -> None:
        attempts.append(1)
        raise RuntimeError("card declined")

    mail.subscribe("order_paid", name="mail.h")(lambda e: seen.add("mail", e))
    for app in (billing, mail):
        app.register_subscriptions()
        workers.start(app, app.system_queues, concurrency=2)
    event = shop.publish("order_paid", {"order": 9}, lane="order:9")
    shop.publish("order_paid", {"order": 10}, lane="order:9")
    wait_for(lambda: count(backend, "billing_default", Status.DEAD) == 2, 20, "billing's copies to go dead")
    wait_for(lambda: len(seen.of("mail")) == 2, 10, "mail's copies")
    assert len(attempts) == 6
    assert [e["order"] for e in seen.of("mail")] == [9, 10]
    dead = backend.get_job(copy_id(event["bus_id"], "billing", billing.subscriptions[0].key))
    assert dead is not None and dead.status is Status.DEAD and "card declined" in (dead.error or "")
    assert count(backend, "mail_default", Status.DEAD) == 0
    assert count(backend, DRIVER_QUEUE, Status.SUCCEEDED) == 2


def test_a_delayed_event_reaches_subscribers_when_due(backend: Backend, seen: Seen, workers: Workers) -> None:
    shop, billing = make_app(backend, "shop"), make_app(backend, "billing")
    billing.subscribe("reminder", name="billing.h")(lambda e: seen.add("billing", e))
    billing.register_subscriptions()
    workers.start(billing, billing.system_queues, concurrency=2)
    published = time.monotonic()
    shop.publish("reminder", delay=0.6)
    wait_for(lambda: len(seen.of("billing")) == 1, 10, "the delayed event")
    assert time.monotonic() - published >= 0.55


def test_heartbeat_is_published_once_per_minute_across_workers(
    backend: Backend, seen: Seen, workers: Workers
) -> None:
    apps = [make_app(backend, "clock") for _ in range(3)]
    for i, app in enumerate(apps):
        app.subscribe(HEARTBEAT_EVENT, name="clock.tick", key="tick")(lambda e, i=i: seen.add("clock", e))
        workers.start(app, app.system_queues, concurrency=2)
    wait_for(lambda: len(seen.of("clock")) >= 1, 10, "a heartbeat")
    time.sleep(1.5)  # three workers tick their schedules every 0.5 s
    beats = seen.of("clock")
    minutes = [b["timestamp"] for b in beats]
    assert len(minutes) == len(set(minutes)), f"one heartbeat per minute, got {minutes}"
    assert len(beats) <= 2, "only a minute turning during the test adds a second one"
    beat = beats[0]
    assert beat["bus_event_type"] == HEARTBEAT_EVENT and beat["bus_lane"] == "bus.heartbeat"
    assert beat["timestamp"] % 60 == 0 and abs(backend.now() - beat["timestamp"]) < 70
    assert beat["epoch_minutes"] == beat["timestamp"] // 60
    at = time.gmtime(beat["timestamp"])
    assert (beat["minute"], beat["hour"], beat["yday"]) == (at.tm_min, at.tm_hour, at.tm_yday)


def test_publishing_inside_a_rolled_back_transaction_publishes_nothing(backend: Backend) -> None:
    shop = make_app(backend, "shop")
    try:
        with backend.transaction() as conn:
            shop.publish("order_paid", {"id": 1}, connection=conn)
            raise RuntimeError("the caller's transaction fails")
    except laneway.ConfigError:
        pytest.skip(f"{type(backend).__name__} has no transactions")
    except RuntimeError:
        pass
    assert backend.list_jobs(queue=DRIVER_QUEUE) == []
    with backend.transaction() as conn:
        shop.publish("order_paid", {"id": 2}, connection=conn)
    (rec,) = backend.list_jobs(queue=DRIVER_QUEUE)
    assert rec.task == FANOUT_TASK
