"""A dashboard served by uvicorn on a free loopback port, and headless Chromium to look at it.

Used by the browser test and by ``python -m tests.dashboard.screenshot``.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn

from tests.support.private_servers import free_port

CHROMIUM = os.environ.get("LANEWAY_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
IN_CI = os.environ.get("CI", "").lower() == "true"


@contextmanager
def serve(asgi_app: Any, timeout_s: float = 10.0) -> Iterator[str]:
    """Run ``asgi_app`` with uvicorn in a thread; yields its base URL; stops it after."""
    port = free_port()
    config = uvicorn.Config(asgi_app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="dashboard-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the dashboard server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)


def require_browser() -> None:
    """Skip (or under ``CI=true`` fail) when Chromium or Playwright is missing."""
    problems = []
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        problems.append(f"Chromium is not at {CHROMIUM} (apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the playwright package is not installed (pip install playwright)")
    if not problems:
        return
    message = "; ".join(problems)
    if IN_CI:
        pytest.fail(f"{message}, and CI=true requires the browser test to run")
    pytest.skip(message)


@contextmanager
def browser_page(width: int = 1440, height: int = 900) -> Iterator[Any]:
    """A Playwright page in headless Chromium (the system's, never a downloaded one)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            page.set_default_timeout(15_000)
            yield page
            context.close()
        finally:
            browser.close()
