"""Helpers for the dashboard tests: a cookie-keeping client over ASGI, and sample data."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import laneway
from laneway.testing import memory_app

BASE = "http://127.0.0.1:8080"


class Client:
    """A synchronous client for an ASGI app (httpx over ``ASGITransport``) keeping cookies."""

    def __init__(self, app: Any, base_url: str = BASE) -> None:
        self._runner = asyncio.Runner()
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)
        self.base_url = base_url

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._runner.run(self._client.request(method, path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(
        self, path: str, data: dict[str, str] | None = None, *, origin: str | None = "self", **kwargs: Any
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if origin == "self":
            headers.setdefault("origin", self.base_url)
        elif origin is not None:
            headers["origin"] = origin
        return self.request("POST", path, data=data or {}, headers=headers, **kwargs)

    def csrf(self, path: str = "/", **kwargs: Any) -> str:
        """The CSRF token of a page (fetching it also sets the CSRF cookie)."""
        page = self.get(path, **kwargs)
        found = re.search(r'name="csrf(?:-token)?" (?:value|content)="([^"]+)"', page.text)
        assert found, f"no CSRF field on {path} ({page.status_code})"
        return found.group(1)

    @property
    def cookies(self) -> httpx.Cookies:
        return self._client.cookies

    def close(self) -> None:
        self._runner.run(self._client.aclose())
        self._runner.close()


def open_client(app: Any, base_url: str = BASE) -> Client:
    return Client(app, base_url)


@pytest.fixture
def client_for() -> Iterator[Any]:
    """``client_for(asgi_app, base_url=...)``: clients closed at teardown."""
    clients: list[Client] = []

    def make(app: Any, base_url: str = BASE) -> Client:
        c = Client(app, base_url)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


class Shop:
    """A memory app with a blocked lane, a dead job, a succeeded job and waiting work."""

    def __init__(self) -> None:
        self.app = memory_app(backoff_s=0.0, backoff_max_s=0.0)
        app = self.app

        @app.task(name="billing.charge", queue="billing", max_attempts=1, on_dead="block")
        def charge(user: int, cents: int) -> None:
            raise RuntimeError(f"card declined for <user {user}>")

        @app.task(name="mail.send", queue="mail", max_attempts=1)
        def send(to: str) -> str:
            if to == "bounce":
                raise ValueError("mailbox <full>")
            return f"sent to {to}"

        self.stuck = charge.options(lane="user:<42>").enqueue(42, 999)
        self.behind = charge.options(lane="user:<42>").enqueue(42, 1)
        self.bounced = send.options(lane="inbox:7").enqueue("bounce")
        self.sent = send.enqueue("ann@example.com")
        app.run_until_idle()
        self.waiting = send.options(lane="inbox:9").enqueue("<script>alert(1)</script>")
        self.later = send.options(delay=600).enqueue("later")


@pytest.fixture
def shop() -> Shop:
    return Shop()


def status_of(app: laneway.App, job: laneway.Job) -> laneway.Status:
    rec = app.backend.get_job(job.id)
    assert rec is not None
    return rec.status
