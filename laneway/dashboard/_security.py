"""The dashboard's guards: host check, token auth, CSRF tokens, Origin check, headers.

The rules (docs/observability.md repeats them for operators):

- With a token, every route but ``/login`` answers 401 until the request carries the
  token, as ``Authorization: Bearer <token>`` or as the session cookie that the login
  form sets (HttpOnly, SameSite=Strict; its value is derived from the token, so it
  survives restarts and dies when the token changes). Tokens are compared with
  ``hmac.compare_digest``.
- Without a token the dashboard only answers requests whose ``Host`` is a loopback
  name, so a page on another site cannot reach it through DNS rebinding.
- Every mutating route is a POST that must carry a CSRF token bound to a per-browser
  cookie, and whose ``Origin`` (or, failing that, ``Referer``) is the dashboard itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Collection, Mapping
from urllib.parse import parse_qsl, urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._net import is_loopback

SESSION_COOKIE = "laneway_session"
CSRF_COOKIE = "laneway_csrf"
CSRF_FIELD = "csrf"
MAX_FORM_BYTES = 64 * 1024
"""Largest form body a POST may send (the dashboard's forms are a few fields)."""
PUBLIC_PATHS = frozenset({"/login"})
CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


def _hostname(host_header: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8080`` -> ``::1``)."""
    return urlsplit(f"//{host_header}").hostname or ""


def _mac(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class Security:
    """Decides who may read and who may act.

    Args:
        token: the shared secret; None serves loopback hosts without auth.
        read_only: refuse every mutating action.
        allowed_hosts: ``Host`` names accepted; default loopback names without a
            token, any name with one.
    """

    def __init__(
        self, token: str | None, *, read_only: bool = False, allowed_hosts: Collection[str] | None = None
    ) -> None:
        if token is not None and not token:
            raise ValueError("the dashboard token must not be empty")
        self.token = token
        self.read_only = read_only
        self.allowed_hosts = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}
        key = token.encode() if token else secrets.token_bytes(32)
        self._csrf_key = hmac.new(key, b"laneway-dashboard-csrf", hashlib.sha256).digest()
        self.session_value = _mac(key, "laneway-dashboard-session")

    def host_allowed(self, host_header: str) -> bool:
        """Whether a request addressed to ``host_header`` may be answered."""
        name = _hostname(host_header)
        if self.allowed_hosts is not None:
            return name in self.allowed_hosts
        return self.token is not None or is_loopback(name)

    def token_matches(self, candidate: str) -> bool:
        """Constant-time comparison of ``candidate`` with the token."""
        return self.token is not None and _same(candidate, self.token)

    def authenticated(self, headers: Headers, cookies: Mapping[str, str]) -> bool:
        """Whether the request carries the token (bearer header) or the session cookie."""
        if self.token is None:
            return True
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.token_matches(credentials.strip()):
            return True
        return _same(cookies.get(SESSION_COOKIE, ""), self.session_value)

    def csrf_token(self, cookie_value: str) -> str:
        """The form token that goes with a browser's CSRF cookie."""
        return _mac(self._csrf_key, cookie_value)

    def csrf_valid(self, cookie_value: str | None, form_value: str | None) -> bool:
        """Whether a POST's form token matches its CSRF cookie."""
        if not cookie_value or not form_value:
            return False
        return _same(form_value, self.csrf_token(cookie_value))

    @staticmethod
    def origin_ok(headers: Headers) -> bool:
        """Whether the POST comes from a page of this dashboard (``Origin``, else ``Referer``)."""
        source = headers.get("origin") or headers.get("referer")
        if not source or source == "null":
            return False
        return urlsplit(source).netloc.lower() == headers.get("host", "").lower()


def new_csrf_cookie() -> str:
    """A fresh random value for a browser's CSRF cookie."""
    return secrets.token_urlsafe(24)


async def read_form(request: Request) -> dict[str, str] | None:
    """The urlencoded form of a POST, or None when it is too large or not a form."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("application/x-www-form-urlencoded", ""):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return None
    return dict(parse_qsl(text, keep_blank_values=True))


class Guard:
    """ASGI middleware: host check, then auth, then security headers on every response.

    Args:
        app: the wrapped application.
        security: the rules.
        unauthorized: builds the 401 answer (the login page for browsers).
    """

    def __init__(self, app: ASGIApp, security: Security, unauthorized: Callable[[Request], Response]) -> None:
        self.app = app
        self.security = security
        self.unauthorized = unauthorized

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        send = _with_headers(send)
        if not self.security.host_allowed(request.headers.get("host", "")):
            answer: Response = PlainTextResponse(
                "this dashboard answers only on a loopback host name (start it with --token to serve others)",
                status_code=403,
            )
            await answer(scope, receive, send)
            return
        if scope["path"] in PUBLIC_PATHS or self.security.authenticated(request.headers, request.cookies):
            await self.app(scope, receive, send)
            return
        await self.unauthorized(request)(scope, receive, send)


def _with_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            present = {name.lower() for name, _ in headers}
            extra = {**_HEADERS, "content-security-policy": CSP}
            for name, value in extra.items():
                if name.encode() not in present:
                    headers.append((name.encode(), value.encode()))
            message = {**message, "headers": headers}
        await send(message)

    return wrapped
