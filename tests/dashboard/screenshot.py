"""Render ``docs/dashboard.png``: an hour of simulated traffic on a memory backend.

    python -m tests.dashboard.screenshot [docs/dashboard.png]

The clock is simulated, so the throughput and backlog charts hold an hour of history.
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import laneway
from laneway.dashboard import create_app
from laneway.testing import Clock, memory_app

from .live import browser_page, serve

QUEUES = ["billing", "mail", "media", "webhooks"]


def build(clock: Clock) -> laneway.App:
    """An app with four queues whose handlers fail now and then, like real ones."""
    rng = random.Random(7)
    app = memory_app(clock=clock, backoff_s=5.0, backoff_max_s=60.0)

    @app.task(name="billing.charge", queue="billing", priority=laneway.HIGH, max_attempts=3, on_dead="block")
    def charge(account: int, cents: int) -> None:
        if cents < 0:
            raise ValueError(f"refund of {-cents} cents exceeds the balance of account {account}")

    @app.task(name="mail.send", queue="mail", max_attempts=5)
    def send(to: str, template: str) -> None:
        if rng.random() < 0.03:
            raise TimeoutError("smtp.example.com:587 did not answer in 10 s")

    @app.task(name="media.resize", queue="media")
    def resize(image_id: int, width: int) -> str:
        return f"img/{image_id}@{width}.webp"

    @app.task(name="webhooks.deliver", queue="webhooks", max_attempts=3)
    def deliver(endpoint: str, event: str) -> None:
        if endpoint.startswith("https://hooks.partner13.") or rng.random() < 0.08:
            raise ConnectionError(f"POST {endpoint}: 503 Service Unavailable")

    return app


def enqueue_minute(app: laneway.App, minute: int, rng: random.Random, scale: float = 1.0) -> None:
    load = int(scale * (70 + 50 * math.sin(minute / 9) + rng.randint(0, 25)))
    t = app.tasks
    for _ in range(load):
        kind = rng.random()
        if kind < 0.35:
            t["mail.send"].options(lane=f"inbox:{rng.randint(1, 300)}").enqueue(
                f"user{rng.randint(1, 9999)}@example.com", "receipt"
            )
        elif kind < 0.6:
            t["billing.charge"].options(lane=f"account:{rng.randint(1, 120)}").enqueue(
                rng.randint(1, 120), rng.randint(100, 90_000)
            )
        elif kind < 0.85:
            t["media.resize"].enqueue(rng.randint(1, 10**6), rng.choice([320, 640, 1280]))
        else:
            t["webhooks.deliver"].options(lane=f"endpoint:{rng.randint(1, 25)}").enqueue(
                f"https://hooks.partner{rng.randint(1, 25)}.example/laneway", "order.paid"
            )


def simulate(app: laneway.App, clock: Clock, web: object) -> None:
    rng = random.Random(42)
    sampler = web.state.dashboard.sampler  # type: ignore[attr-defined]
    for minute in range(60):
        slow = minute >= 54  # the last minutes: a worker machine went away, the backlog grows
        for _ in range(6):
            enqueue_minute(app, minute, rng, scale=1 / 6)
            clock.advance(10.0)
            app.run_until_idle(QUEUES, max_jobs=rng.randint(8, 14) if slow else rng.randint(15, 40))
            sampler.record(clock(), app.backend.stats())
    charge = app.tasks["billing.charge"]
    charge.options(lane="account:77").enqueue(77, -12_500)
    for cents in (1200, 800, 4500):
        charge.options(lane="account:77").enqueue(77, cents)
    app.run_until_idle(["billing"], max_jobs=200)
    for _ in range(3):
        clock.advance(20.0)
        app.run_until_idle(["billing"], max_jobs=50)
        sampler.record(clock(), app.backend.stats())
    for i in range(25):
        app.tasks["mail.send"].options(delay=900).enqueue(f"digest{i}@example.com", "weekly")
    app.backend.claim(QUEUES, worker="web-1:4242:a1b2c3", limit=12, lease_s=60)
    clock.advance(4.0)
    sampler.record(clock(), app.backend.stats())


def main(out: str = "docs/dashboard.png") -> None:
    clock = Clock(1_714_557_600.0)
    app = build(clock)
    web = create_app(app, refresh_s=0, sample_s=10)
    simulate(app, clock, web)
    with serve(web) as base, browser_page(1440, 1000) as page:
        page.goto(base + "/")
        page.wait_for_selector("svg.chart")
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=out, full_page=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
