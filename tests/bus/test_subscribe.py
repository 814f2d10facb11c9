"""Subscribing: handlers as tasks, keys, class subscribers, the registry and unsubscribing."""

from __future__ import annotations

import logging
import re

import pytest

import laneway
from laneway.bus import DRIVER_QUEUE, FANOUT_TASK, HEARTBEAT_TASK, on, present
from laneway.bus.testing import deliver

from .conftest import Seen, make_app


def test_subscribing_needs_an_app_name(memory: object) -> None:
    nameless = laneway.App(backend=memory)  # type: ignore[arg-type]
    with pytest.raises(laneway.ConfigError, match="name="):
        nameless.subscribe("x")


def test_a_subscription_handler_is_a_laneway_task_with_its_options(billing: laneway.App) -> None:
    @billing.subscribe("user_created", max_attempts=3, timeout=5, priority=laneway.HIGH)
    def created(event: dict[str, object]) -> str:
        return f"got {event['id']}"

    assert isinstance(created, laneway.Task)
    assert billing.tasks[created.name] is created
    assert created({"id": 7}) == "got 7"
    (sub,) = billing.subscriptions
    assert (sub.app, sub.queue, sub.task) == ("billing", "billing_default", created.name)
    assert (sub.max_attempts, sub.timeout_s, sub.priority) == (3, 5.0, int(laneway.HIGH))
    assert sub.key == f"{created.name}[user_created]"


def test_stacked_subscriptions_share_one_task(billing: laneway.App) -> None:
    @billing.subscribe("user_created")
    @billing.subscribe(re.compile(r"^user_"))
    @billing.subscribe({"bus_event_type": "user_paid", "plan": present()}, queue="critical")
    def on_user(event: dict[str, object]) -> None: ...

    subs = billing.subscriptions
    assert len(subs) == 3 and {s.task for s in subs} == {on_user.name}
    assert {s.queue for s in subs} == {"billing_default", "critical"}


def test_duplicate_subscription_keys_are_an_error(billing: laneway.App) -> None:
    billing.subscribe("a", key="same", name="h.a")(lambda e: None)
    with pytest.raises(laneway.ConfigError, match="'same'"):
        billing.subscribe("b", key="same", name="h.b")(lambda e: None)

    def handler(event: dict[str, object]) -> None: ...

    billing.subscribe("c")(handler)
    with pytest.raises(laneway.ConfigError, match="already has a subscription"):
        billing.subscribe("c")(handler)


def test_task_options_belong_to_the_first_subscription_of_a_handler(billing: laneway.App) -> None:
    def handler(event: dict[str, object]) -> None: ...

    billing.subscribe("a", max_attempts=2)(handler)
    with pytest.raises(laneway.ConfigError, match="first @subscribe"):
        billing.subscribe("b", max_attempts=3)(handler)


def test_subscribing_makes_workers_serve_the_driver_and_subscriber_queues(billing: laneway.App) -> None:
    billing.subscribe("a", queue="billing_fast")(lambda e: None)
    assert billing.system_queues == [DRIVER_QUEUE, "billing_fast"]
    assert {FANOUT_TASK, HEARTBEAT_TASK} <= set(billing.tasks)
    assert billing.worker(["default"]).queues == ["default", DRIVER_QUEUE, "billing_fast"]


def test_class_subscriber_methods_each_get_a_task_and_a_fresh_instance(
    shop: laneway.App, billing: laneway.App, seen: Seen
) -> None:
    instances = []

    @billing.subscriber(queue="billing_q", max_attempts=4)
    class Billing:
        def __init__(self) -> None:
            instances.append(self)

        @on("user_created")
        def created(self, event: dict[str, object]) -> None:
            seen.add("created", event)

        @on(re.compile("^order_"), key="orders", max_attempts=9)
        @on({"bus_event_type": "refund"}, queue="billing_refunds")
        async def money(self, event: dict[str, object]) -> None:
            seen.add("money", event)

        def helper(self) -> None: ...

    subs = {s.key: s for s in billing.subscriptions}
    created_task, money_task = (
        n for n in billing.tasks if n.endswith((".Billing.created", ".Billing.money"))
    )
    assert set(subs) == {f"{created_task}[user_created]", "orders", f"{money_task}[refund]"}
    assert subs["orders"].max_attempts == 9 and subs["orders"].queue == "billing_q"
    assert subs[f"{money_task}[refund]"].queue == "billing_refunds"
    assert subs[f"{money_task}[refund]"].max_attempts == 9, "one task: its options are the method's"
    assert subs[f"{created_task}[user_created]"].max_attempts == 4, "class defaults apply"
    billing.register_subscriptions()
    shop.publish("user_created")
    shop.publish("order_paid")
    shop.publish("refund")
    deliver(billing)
    assert seen.types("created") == ["user_created"]
    assert sorted(seen.types("money")) == ["order_paid", "refund"]
    assert len(instances) == 3


def test_a_class_without_marked_methods_is_refused(billing: laneway.App) -> None:
    with pytest.raises(laneway.ConfigError, match="no method marked"):

        @billing.subscriber
        class Empty:
            def created(self, event: dict[str, object]) -> None: ...


def test_workers_store_the_registry_when_they_start(memory: object, seen: Seen) -> None:
    billing = make_app(memory, "billing")  # type: ignore[arg-type]
    billing.subscribe("user_created")(lambda e: seen.add("billing", e))
    shop = make_app(memory, "shop")  # type: ignore[arg-type]
    assert shop.stored_subscriptions() == []
    billing.worker(idle_wait_s=0.01).run(burst=True)
    assert [s.app for s in shop.stored_subscriptions()] == ["billing"]


def test_a_publisher_routes_to_subscribers_it_never_imported(memory: object, seen: Seen) -> None:
    billing = make_app(memory, "billing")  # type: ignore[arg-type]
    billing.subscribe("user_created")(lambda e: seen.add("billing", e))
    billing.register_subscriptions()
    stranger = make_app(memory, "stranger")  # type: ignore[arg-type]
    stranger.configure_bus(mode="standalone")
    stranger.publish("user_created", {"id": 3})
    deliver(billing)
    assert [e["id"] for e in seen.of("billing")] == [3]


def test_registry_replacement_drops_subscriptions_a_new_deploy_removed(memory: object) -> None:
    old = make_app(memory, "billing")  # type: ignore[arg-type]
    old.subscribe("a", name="h.a")(lambda e: None)
    old.subscribe("b", name="h.b")(lambda e: None)
    old.register_subscriptions()
    new = make_app(memory, "billing")  # type: ignore[arg-type]
    new.subscribe("b", name="h.b")(lambda e: None)
    new.register_subscriptions()
    assert [s.matcher.label for s in new.stored_subscriptions()] == ["b"]


def test_unsubscribe_one_key_then_the_whole_app(shop: laneway.App, billing: laneway.App) -> None:
    billing.subscribe("a", key="ka", queue="qa", name="h.a")(lambda e: None)
    billing.subscribe("b", key="kb", queue="qb", name="h.b")(lambda e: None)
    billing.register_subscriptions()
    assert billing.unsubscribe("ka") == 1
    assert [s.key for s in shop.stored_subscriptions()] == ["kb"]
    assert "qa" not in billing.system_queues and "qb" in billing.system_queues
    assert billing.unsubscribe() == 1
    assert shop.stored_subscriptions() == [] and billing.subscriptions == []
    assert billing.unsubscribe("nothing") == 0


def test_an_operator_can_unsubscribe_an_app_it_does_not_run(shop: laneway.App, billing: laneway.App) -> None:
    billing.subscribe("a")(lambda e: None)
    billing.register_subscriptions()
    operator = make_app(shop.backend, "billing")
    assert operator.unsubscribe() == 1
    assert shop.stored_subscriptions() == []


def test_unreadable_registry_entries_are_skipped_not_fatal(shop: laneway.App, billing: laneway.App) -> None:
    billing.subscribe("a")(lambda e: None)
    billing.register_subscriptions()
    shop.backend.put_meta("bus:app:broken", b"{not json")
    assert [s.app for s in shop.stored_subscriptions()] == ["billing"]


def test_two_apps_sharing_a_queue_get_a_warning(
    shop: laneway.App, billing: laneway.App, mail: laneway.App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="laneway")
    billing.subscribe("a", queue="shared")(lambda e: None)
    mail.subscribe("b", queue="shared")(lambda e: None)
    billing.register_subscriptions()
    mail.register_subscriptions()
    assert "also subscribed by app 'billing'" in caplog.text
