"""SPEC §4: low-level lanes, the WorkerRoulette model."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import laneway


def test_send_then_claim_gives_the_lane_and_its_messages_in_order(app: laneway.App) -> None:
    lane = app.lane("shady", queue="messages")
    lane.send(["hello", "foreman"])
    lane.send({"n": 2})
    batch = app.claim("messages", batch=100)
    assert batch is not None
    assert batch.lane == "shady"
    assert batch.messages == [["hello", "foreman"], {"n": 2}]
    batch.ack()
    assert app.claim("messages", batch=100) is None


def test_a_claimed_lane_is_not_given_to_another_consumer_until_acked(app: laneway.App) -> None:
    lane = app.lane("a", queue="messages")
    lane.send(1)
    first = app.claim("messages", batch=1)
    lane.send(2)
    assert first is not None and app.claim("messages", batch=10) is None
    first.ack()
    second = app.claim("messages", batch=10)
    assert second is not None and second.messages == [2]
    second.ack()


def test_released_batch_comes_back_in_order(app: laneway.App) -> None:
    lane = app.lane("a", queue="messages")
    for i in range(3):
        lane.send(i)
    b = app.claim("messages", batch=2)
    assert b is not None
    b.release()
    again = app.claim("messages", batch=5)
    assert again is not None and again.messages == [0, 1, 2]
    again.ack()


def test_ack_after_the_lease_ran_out_raises_lease_lost(app: laneway.App) -> None:
    app.lane("a", queue="messages").send("x")
    b = app.claim("messages", batch=1, lease_s=0.2)
    assert b is not None
    time.sleep(0.3)
    with pytest.raises(laneway.LeaseLost):
        b.ack()


def test_preprocessors_transform_messages_on_send_and_claim(app: laneway.App) -> None:
    app.preprocessors.send.append(lambda m, h: ({"wrapped": m}, {**h, "via": "pre"}))
    app.preprocessors.claim.append(lambda m, h: (m["wrapped"], h))
    app.lane("a", queue="messages").send("hi", headers={"k": "v"})
    b = app.claim("messages")
    assert b is not None
    assert b.messages == ["hi"] and b.headers == [{"k": "v", "via": "pre"}]
    b.ack()


def test_batches_blocks_without_busy_looping_and_yields_new_work(app: laneway.App) -> None:
    ready = threading.Event()
    stop = threading.Event()
    got: list[Any] = []

    def consume() -> None:
        for batch in app.batches("messages", batch=10, on_ready=ready.set, stop=stop):
            got.extend(batch.messages)
            batch.ack()
            if len(got) >= 3:
                stop.set()

    t = threading.Thread(target=consume)
    t.start()
    assert ready.wait(5)
    lane = app.lane("z", queue="messages")
    for i in range(3):
        lane.send(i)
    t.join(10)
    assert not t.is_alive()
    assert got == [0, 1, 2]


def test_workerroulette_scenario_every_lane_in_send_order_once(app: laneway.App) -> None:
    """3 producers x 1,000 messages on their own lanes, 4 competing batch consumers."""
    per_producer = 1000
    seen: dict[str, list[int]] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def produce(name: str) -> None:
        lane = app.lane(name, queue="wr")
        for i in range(per_producer):
            lane.send({"from": name, "i": i})

    def consume() -> None:
        while not stop.is_set():
            batch = app.claim("wr", batch=50)
            if batch is None:
                app.backend.wait(["wr"], 0.05)
                continue
            with lock:
                for m in batch.messages:
                    seen.setdefault(m["from"], []).append(m["i"])
            batch.ack()

    consumers = [threading.Thread(target=consume) for _ in range(4)]
    producers = [threading.Thread(target=produce, args=(f"p{i}",)) for i in range(3)]
    for t in consumers + producers:
        t.start()
    for t in producers:
        t.join(60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with lock:
            if sum(len(v) for v in seen.values()) >= 3 * per_producer:
                break
        time.sleep(0.02)
    stop.set()
    for t in consumers:
        t.join(10)
    assert sorted(seen) == ["p0", "p1", "p2"]
    for name, got in seen.items():
        assert got == list(range(per_producer)), f"lane {name} out of order or duplicated"
