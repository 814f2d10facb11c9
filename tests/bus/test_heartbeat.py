"""The heartbeat: when an app's workers publish it, and what it carries."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import laneway
from laneway._execute import Runner
from laneway.backends.memory import MemoryBackend
from laneway.bus import DRIVER_QUEUE, HEARTBEAT_EVENT, HEARTBEAT_TASK
from laneway.bus._events import heartbeat_event
from laneway.bus.testing import deliver
from laneway.testing import Clock

from .conftest import Seen


def test_subscribing_to_the_heartbeat_by_name_schedules_it(billing: laneway.App) -> None:
    billing.subscribe(re.compile("heartbeat"), name="h.re")(lambda e: None)
    assert HEARTBEAT_TASK not in billing.schedules
    billing.subscribe(HEARTBEAT_EVENT, name="h.exact")(lambda e: None)
    schedule = billing.schedules[HEARTBEAT_TASK]
    assert schedule.every_s == 60.0
    assert billing.tasks[HEARTBEAT_TASK].opts.queue == DRIVER_QUEUE


def test_heartbeat_can_be_forced_on_or_off(billing: laneway.App, mail: laneway.App) -> None:
    mail.configure_bus(heartbeat=True)
    assert HEARTBEAT_TASK in mail.schedules and DRIVER_QUEUE in mail.system_queues
    billing.subscribe(HEARTBEAT_EVENT, name="h.exact")(lambda e: None)
    billing.configure_bus(heartbeat=False)
    assert HEARTBEAT_TASK not in billing.schedules


def test_unsubscribing_from_the_heartbeat_stops_scheduling_it(billing: laneway.App) -> None:
    billing.subscribe(HEARTBEAT_EVENT, key="beat", name="h.exact")(lambda e: None)
    billing.unsubscribe("beat")
    assert HEARTBEAT_TASK not in billing.schedules


def test_the_heartbeat_carries_the_minute_in_utc() -> None:
    minute = datetime(2024, 2, 29, 13, 7, tzinfo=timezone.utc).timestamp()
    event = heartbeat_event(minute + 42.5, "clock")
    assert event["timestamp"] == event["epoch_seconds"] == int(minute)
    assert event["epoch_minutes"] == int(minute) // 60
    assert (event["year"], event["month"], event["day"]) == (2024, 2, 29)
    assert (event["hour"], event["minute"], event["yday"], event["wday"]) == (13, 7, 60, 4)
    assert event["iso"] == "2024-02-29T13:07:00+00:00"
    assert event["bus_event_type"] == HEARTBEAT_EVENT and event["bus_app"] == "clock"


def test_every_worker_names_the_same_heartbeat_event_for_a_minute() -> None:
    minute = 1_700_000_040.0
    assert heartbeat_event(minute, "a")["bus_id"] == heartbeat_event(minute + 59, "b")["bus_id"]
    assert heartbeat_event(minute, "a")["bus_id"] != heartbeat_event(minute + 60, "a")["bus_id"]


def test_a_heartbeat_job_that_runs_twice_delivers_once(billing: laneway.App, seen: Seen) -> None:
    billing.subscribe(HEARTBEAT_EVENT, name="h.exact")(lambda e: seen.add("billing", e))
    billing.register_subscriptions()
    billing.tasks[HEARTBEAT_TASK].enqueue()
    (rec,) = billing.backend.claim([DRIVER_QUEUE], worker="doomed", limit=1, lease_s=30)
    Runner(billing).run(rec)
    billing.backend.sweep(worker="doomed")
    deliver(billing)
    assert len(seen.of("billing")) == 1


def test_subscribers_see_the_minutes_in_order_when_a_heartbeat_worker_dies() -> None:
    clock = Clock(start=1_800_000_000.0)  # a minute's start
    backend = MemoryBackend(clock=clock)
    reports = laneway.App(backend=backend, name="reports")
    minutes: list[int] = []
    reports.subscribe(HEARTBEAT_EVENT, name="on_minute")(lambda e: minutes.append(e["epoch_minutes"]))
    reports.register_subscriptions()
    ticker = reports.worker()
    clock.advance(1)
    ticker._tick_schedules()  # minute m's heartbeat job
    (doomed,) = backend.claim([DRIVER_QUEUE], worker="killed", limit=1, lease_s=60)
    clock.advance(60)
    ticker._tick_schedules()  # minute m+1's, while m's worker is gone but holds its lease
    reports.run_until_idle(list(reports.system_queues))
    assert minutes == []  # m+1 waits behind m on the heartbeat's lane
    clock.advance(5)  # the killed worker's lease has run out
    backend.sweep()
    reports.run_until_idle(list(reports.system_queues))
    assert minutes == [int(doomed.enqueued_at // 60), int(doomed.enqueued_at // 60) + 1]
