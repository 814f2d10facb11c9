"""Publishing: metadata, the JSON-only rule, hooks, and what each mode stores or runs."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import laneway
from laneway._records import Status
from laneway.bus import DRIVER_QUEUE, FANOUT_TASK, BusMode, copy_id
from laneway.bus.testing import assert_not_published, assert_published, deliver, published, record_published

from .conftest import Seen


def test_publish_adds_the_bus_metadata_and_returns_the_event(shop: laneway.App) -> None:
    event = shop.publish("user_created", {"id": 42}, lane="user:42")
    assert event["id"] == 42
    assert event["bus_event_type"] == "user_created"
    assert event["bus_app"] == "shop"
    assert event["bus_lane"] == "user:42"
    assert re.fullmatch(r"[0-9a-f]{32}", event["bus_id"])
    assert abs(event["bus_published_at"] - shop.backend.now()) < 5
    assert "bus_delayed_until" not in event


def test_every_event_gets_its_own_id(shop: laneway.App) -> None:
    ids = {shop.publish("tick")["bus_id"] for _ in range(100)}
    assert len(ids) == 100


@pytest.mark.parametrize(
    ("attrs", "named"),
    [
        ({"when": datetime.now(timezone.utc)}, "attributes.when is a datetime"),
        ({"tags": {1, 2}}, "attributes.tags is a set"),
        ({"raw": b"x"}, "attributes.raw is a bytes"),
        ({"deep": {"list": [1, object()]}}, "attributes.deep.list[1] is a object"),
        ({"ratio": float("nan")}, "attributes.ratio is nan"),
        ({"m": {1: "x"}}, "attributes.m has a int key 1"),
    ],
)
def test_non_json_attributes_raise_encode_error_naming_them_and_store_nothing(
    shop: laneway.App, attrs: dict[str, object], named: str
) -> None:
    with pytest.raises(laneway.EncodeError, match=re.escape(named)):
        shop.publish("user_created", attrs)
    assert shop.backend.stats() == []


def test_attribute_names_starting_with_bus_are_reserved(shop: laneway.App) -> None:
    with pytest.raises(laneway.ConfigError, match="bus_app"):
        shop.publish("user_created", {"bus_app": "spoofed"})


@pytest.mark.parametrize("bad_type", ["", None, 3])
def test_event_type_must_be_a_non_empty_string(shop: laneway.App, bad_type: object) -> None:
    with pytest.raises(laneway.ConfigError):
        shop.publish(bad_type)  # type: ignore[arg-type]


def test_delay_and_at_together_are_refused(shop: laneway.App) -> None:
    with pytest.raises(laneway.ConfigError, match="not both"):
        shop.publish("x", delay=1, at=datetime.now(timezone.utc))


def test_an_event_too_large_for_a_copy_is_refused_at_publish(memory: object) -> None:
    small = laneway.App(backend=memory, name="shop", max_payload_bytes=4096)  # type: ignore[arg-type]
    with pytest.raises(laneway.PayloadTooLarge, match="nothing was published"):
        small.publish("big", {"blob": "x" * 3500})


def test_before_publish_hooks_add_attributes_but_cannot_change_metadata(shop: laneway.App) -> None:
    record_published(shop)

    @shop.before_publish
    def stamp(event: dict[str, object]) -> None:
        event["request_id"] = "r-1"
        event["bus_app"] = "someone-else"

    shop.before_publish(lambda e: {**e, "second": True})
    event = shop.publish("user_created", {"id": 1})
    assert event["request_id"] == "r-1" and event["second"] is True
    assert event["bus_app"] == "shop"
    assert_published(shop, "user_created", request_id="r-1", second=True)


def test_a_hook_that_makes_the_event_non_json_fails_the_publish(shop: laneway.App) -> None:
    shop.before_publish(lambda e: {**e, "when": datetime.now(timezone.utc)})
    with pytest.raises(laneway.EncodeError, match="event.when is a datetime"):
        shop.publish("user_created")
    assert shop.backend.stats() == []


def test_driver_mode_stores_the_event_once_as_a_laned_fanout_job(shop: laneway.App) -> None:
    assert shop.bus_mode is BusMode.DRIVER
    event = shop.publish("user_created", {"id": 1}, lane="user:1")
    jobs = shop.backend.list_jobs(queue=DRIVER_QUEUE)
    assert [(j.task, j.lane, j.status) for j in jobs] == [(FANOUT_TASK, "user:1", Status.QUEUED)]
    assert laneway.Job(shop, jobs[0].id).args == [event]


def test_driver_mode_delays_the_fanout_until_due(shop: laneway.App) -> None:
    at = datetime.now(timezone.utc) + timedelta(hours=1)
    event = shop.publish("reminder", at=at)
    rec = shop.backend.list_jobs(queue=DRIVER_QUEUE)[0]
    assert rec.status is Status.SCHEDULED and rec.run_at == pytest.approx(at.timestamp())
    assert event["bus_delayed_until"] == pytest.approx(at.timestamp())


def test_standalone_mode_enqueues_copies_directly_without_a_fanout_job(
    shop: laneway.App, billing: laneway.App, seen: Seen
) -> None:
    billing.subscribe("user_created")(lambda e: seen.add("billing", e))
    billing.register_subscriptions()
    shop.configure_bus(mode="standalone")
    event = shop.publish("user_created", {"id": 1}, lane="user:1")
    shop.publish("ignored")
    assert shop.backend.list_jobs(queue=DRIVER_QUEUE) == []
    (copy,) = shop.backend.list_jobs(queue="billing_default")
    assert copy.lane == "user:1"
    assert copy.id == copy_id(event["bus_id"], "billing", billing.subscriptions[0].key)
    deliver(billing)
    assert seen.types("billing") == ["user_created"]


def test_standalone_mode_delays_each_copy(shop: laneway.App, billing: laneway.App) -> None:
    billing.subscribe("later")(lambda e: None)
    billing.register_subscriptions()
    shop.configure_bus(mode="standalone")
    shop.publish("later", delay=timedelta(minutes=5))
    (copy,) = shop.backend.list_jobs(queue="billing_default")
    assert copy.status is Status.SCHEDULED


def test_inline_mode_runs_matching_handlers_in_the_publisher(
    shop: laneway.App, billing: laneway.App, mail: laneway.App, seen: Seen
) -> None:
    billing.subscribe(re.compile("^user_"))(lambda e: seen.add("billing", e))

    @mail.subscribe({"notify": "email"})
    async def send(event: dict[str, object]) -> None:
        await asyncio.sleep(0)
        seen.add("mail", event)

    shop.configure_bus(mode="inline")
    shop.publish("user_created", {"notify": "email"})
    shop.publish("order_paid", {"notify": "sms"})
    assert seen.types("billing") == ["user_created"]
    assert seen.types("mail") == ["user_created"]
    assert seen.of("mail")[0]["bus_rider_app"] == "mail"
    assert shop.backend.stats() == [], "inline mode stores nothing"
    assert len(published(shop)) == 2, "inline mode records what it published"


def test_inline_mode_raises_the_handlers_exception_in_the_publisher(
    shop: laneway.App, billing: laneway.App
) -> None:
    @billing.subscribe("boom")
    def boom(event: dict[str, object]) -> None:
        raise ValueError("handler failed")

    shop.configure_bus(mode="inline")
    with pytest.raises(ValueError, match="handler failed"):
        shop.publish("boom")


def test_inline_mode_runs_async_handlers_from_inside_an_event_loop(
    shop: laneway.App, billing: laneway.App
) -> None:
    got = []

    @billing.subscribe("ping")
    async def pong(event: dict[str, object]) -> str:
        got.append(event["bus_event_type"])
        return "pong"

    shop.configure_bus(mode="inline")

    async def publisher() -> None:
        shop.publish("ping")

    asyncio.run(publisher())
    assert got == ["ping"]


def test_inline_mode_ignores_apps_on_other_backends(shop: laneway.App, seen: Seen) -> None:
    other = laneway.App("memory://", namespace="elsewhere", name="other")
    other.subscribe("user_created")(lambda e: seen.add("other", e))
    shop.configure_bus(mode="inline")
    shop.publish("user_created")
    assert seen.of("other") == []


def test_unknown_bus_mode_is_a_config_error(shop: laneway.App) -> None:
    with pytest.raises(laneway.ConfigError, match="driver, standalone or inline"):
        shop.configure_bus(mode="eager")


def test_published_helpers_need_recording_to_be_on(shop: laneway.App) -> None:
    shop.publish("x")
    with pytest.raises(laneway.ConfigError, match="record_published"):
        published(shop)


def test_published_helpers_filter_by_type_and_attributes(shop: laneway.App) -> None:
    record_published(shop)
    shop.publish("user_created", {"id": 1, "plan": "pro"})
    shop.publish("user_created", {"id": 2})
    shop.publish("order_paid", {"id": 1})
    assert [e["id"] for e in published(shop, "user_created")] == [1, 2]
    assert assert_published(shop, "user_created", plan="pro")["id"] == 1
    assert_not_published(shop, "user_deleted")
    with pytest.raises(AssertionError, match="no 'user_created' event"):
        assert_published(shop, "user_created", id=3)
    with pytest.raises(AssertionError, match="1 matching"):
        assert_not_published(shop, "order_paid")


def test_publish_inside_a_transaction_needs_an_sql_backend(shop: laneway.App) -> None:
    with pytest.raises(laneway.ConfigError, match="SQL"):
        shop.publish("x", connection=object())


@pytest.mark.parametrize("mode", ["driver", "standalone", "inline"])
def test_every_mode_matches_and_delivers_the_json_form_of_tuples(
    mode: str, shop: laneway.App, billing: laneway.App, seen: Seen
) -> None:
    from laneway.bus import blank

    billing.subscribe({"bus_event_type": "order", "items": blank()}, name="empty")(
        lambda e: seen.add("empty", e)
    )
    billing.register_subscriptions()
    shop.configure_bus(mode=mode)
    sizes = [1, 2]
    shop.publish("order", {"items": (), "sizes": (1, 2), "kept": sizes})
    sizes.append(3)  # the publisher's own objects are not what handlers get
    deliver(shop, billing)
    (empty,) = seen.of("empty")
    assert (empty["items"], empty["sizes"], empty["kept"]) == ([], [1, 2], [1, 2])


def test_deliver_stores_the_subscriptions_first_as_a_worker_would(
    shop: laneway.App, billing: laneway.App, seen: Seen
) -> None:
    billing.subscribe("user_created")(lambda e: seen.add("billing", e))  # never registered by hand
    shop.publish("user_created", {"id": 43})
    deliver(shop, billing)
    assert [e["id"] for e in seen.of("billing")] == [43]


def test_inline_handlers_each_get_their_own_copy_of_the_event(
    shop: laneway.App, billing: laneway.App, mail: laneway.App, seen: Seen
) -> None:
    def meddle(event: dict[str, Any]) -> None:
        event["items"].append("added by billing")

    billing.subscribe("order")(meddle)
    mail.subscribe("order")(lambda e: seen.add("mail", e))
    shop.configure_bus(mode="inline")
    returned = shop.publish("order", {"items": ["a"]})
    assert seen.of("mail")[0]["items"] == ["a"] and returned["items"] == ["a"]
