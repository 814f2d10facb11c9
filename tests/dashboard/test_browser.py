"""End to end in headless Chromium: a lane stuck behind a dead job is retried from the page.

Needs ``/usr/bin/chromium`` (``apt-get install -y chromium``) and the ``playwright`` package
(never ``playwright install``). Without them the test is skipped locally and fails under
``CI=true``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import laneway
from laneway.dashboard import create_app

from .live import IN_CI, browser_page, require_browser, serve


def sqlite_app(tmp_path: Path) -> laneway.App:
    try:
        from laneway.backends.sqlite import SQLiteBackend  # noqa: F401
    except ImportError as exc:
        if IN_CI:
            pytest.fail(f"the SQLite backend is missing ({exc}), and CI=true requires it")
        pytest.skip(f"the SQLite backend is missing: {exc}")
    return laneway.App(f"sqlite:///{tmp_path / 'shop.db'}", namespace="shop", backoff_s=0.05)


def wait_until(predicate, timeout_s: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_stuck_lane_is_retried_from_the_page_and_its_jobs_succeed(tmp_path):
    require_browser()
    app = sqlite_app(tmp_path)
    card_fixed = tmp_path / "card-fixed"
    charged: list[int] = []

    @app.task(name="billing.charge", queue="billing", max_attempts=1, on_dead="block")
    def charge(user: int, cents: int) -> None:
        if not card_fixed.exists():
            raise RuntimeError(f"card of user {user} declined")
        charged.append(cents)

    first = charge.options(lane="user:42").enqueue(42, 999)
    second = charge.options(lane="user:42").enqueue(42, 1)
    worker = app.worker(["billing"], concurrency=2, idle_wait_s=0.05)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    errors: list[str] = []
    try:
        wait_until(lambda: first.refresh().status is laneway.Status.DEAD, what="the first job to go dead")
        assert second.refresh().status is laneway.Status.QUEUED

        with serve(create_app(app, refresh_s=0.5)) as base, browser_page() as page:
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(base + "/")
            lane_row = page.locator("table.lanes tr", has_text="user:42")
            assert "blocked" in lane_row.inner_text()
            assert "dead" in lane_row.inner_text()
            page.screenshot(path=str(tmp_path / "stuck.png"), full_page=True)

            lane_row.locator(f'a[href="/jobs/{first.id}"]').click()
            page.wait_for_url(f"**/jobs/{first.id}")
            assert "card of user 42 declined" in page.locator("main").inner_text()

            card_fixed.touch()
            page.get_by_role("button", name="Retry").click()
            page.wait_for_selector("p.flash")
            assert "back at the head of its lane" in page.locator("p.flash").inner_text()

            page.locator("h1 .badge.s-succeeded").wait_for(timeout=15_000)
            wait_until(lambda: second.refresh().status is laneway.Status.SUCCEEDED, what="the second job")
            page.goto(base + "/")
            assert page.locator("table.lanes tr", has_text="user:42").count() == 0
            page.goto(base + "/dead")
            assert "No jobs match" in page.locator("main").inner_text()
    finally:
        worker.stop()
        thread.join(timeout=10)
        app.close()

    assert charged == [999, 1]
    assert errors == []
