"""The dashboard's web application: ``create_app(app_or_backend, token=..., read_only=...)``.

Server-rendered pages (starlette, no build step) over the backend contract only, so it
works on every backend. Reads run in starlette's thread pool; mutations are POSTs
guarded as ``_security`` describes.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

try:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "the laneway dashboard needs starlette and uvicorn: pip install 'laneway[dashboard]'"
    ) from exc

from .._app import App
from .._records import Status
from ..backends import Backend
from . import _pages as P
from ._data import Cached, Sampler, call_view, lane_view, subscriptions, throughput
from ._html import Html, esc, fill, static_text
from ._security import CSRF_COOKIE, CSRF_FIELD, SESSION_COOKIE, Guard, Security, new_csrf_cookie, read_form

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

OVERVIEW_LANES = 20
QUEUE_LANES = 200
RECENT_JOBS = 20
PAGE_SIZE = 50
MAX_OFFSET = 1_000_000_000  # a page further than this is empty on every backend (SQLite overflows at 2^63)
THROUGHPUT_CACHE_S = 15.0
MAX_BULK_RETRY = 10_000
FLASH_COOKIE = "laneway_flash"
REFRESH_HEADER = "x-laneway-refresh"
FLASH_MAX_CHARS = 300
Handler = Callable[[Request], Awaitable[Response]]


class Dashboard:
    """The pages and actions over one backend.

    Args:
        backend: where the jobs are.
        security: who may read and act.
        namespace: shown in the header.
        refresh_s: how often open pages reload their content (0: never).
        sample_s: how often the backlog is sampled into memory.
        throughput_scan: stored jobs per final status read for the throughput chart.
    """

    def __init__(
        self,
        backend: Backend,
        security: Security,
        *,
        namespace: str,
        refresh_s: float,
        sample_s: float,
        throughput_scan: int,
    ) -> None:
        self.backend = backend
        self.security = security
        self.namespace = namespace
        self.refresh_s = refresh_s
        self.sampler = Sampler(backend, interval_s=sample_s)
        self.throughput = Cached(
            lambda: throughput(backend, backend.now(), scan_limit=throughput_scan), THROUGHPUT_CACHE_S
        )
        self._registry: CollectorRegistry | None = None

    # --- request plumbing ------------------------------------------------------------

    def _ctx(self, request: Request) -> tuple[P.Ctx, str | None]:
        """The page context, and a new CSRF cookie value when the browser has none."""
        cookie = request.cookies.get(CSRF_COOKIE)
        fresh = None
        if not cookie:
            cookie = fresh = new_csrf_cookie()
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        flash = "" if _refreshing(request) else unquote(request.cookies.get(FLASH_COOKIE, ""))
        ctx = P.Ctx(
            csrf=self.security.csrf_token(cookie),
            read_only=self.security.read_only,
            here=here,
            namespace=self.namespace,
            now=self.backend.now(),
            flash=flash[:FLASH_MAX_CHARS] or None,
            signed_in=SESSION_COOKIE in request.cookies and self.security.token is not None,
            refresh_s=self.refresh_s,
        )
        return ctx, fresh

    def _page(
        self, request: Request, title: str, build: Callable[[P.Ctx], Html], status: int = 200
    ) -> Response:
        ctx, fresh = self._ctx(request)
        response = HTMLResponse(P.layout(ctx, title, build(ctx)), status_code=status)
        if fresh:
            _set_cookie(response, request, CSRF_COOKIE, fresh)
        if FLASH_COOKIE in request.cookies and not _refreshing(request):
            response.delete_cookie(FLASH_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    # --- pages -------------------------------------------------------------------------

    def overview(self, request: Request) -> Response:
        stats = self.backend.stats()
        self.sampler.record(self.backend.now(), stats)
        lanes = lane_view(self.backend, [s.queue for s in stats], OVERVIEW_LANES)
        tp = self.throughput.get()
        return self._page(
            request, "Overview", lambda ctx: P.overview(ctx, stats, lanes, tp, self.sampler.points())
        )

    def queue(self, request: Request) -> Response:
        name = request.path_params["queue"]
        stat = next((s for s in self.backend.stats() if s.queue == name), None)
        lanes = lane_view(self.backend, [name], QUEUE_LANES)
        recent = self.backend.list_jobs(queue=name, limit=RECENT_JOBS)
        if stat is None and not recent:
            return self._page(request, "Not found", lambda _: _missing(f"No jobs in queue {name!r}."), 404)
        return self._page(request, f"Queue {name}", lambda ctx: P.queue_page(ctx, name, stat, lanes, recent))

    def jobs(self, request: Request) -> Response:
        return self._job_list(request, dead=False)

    def dead(self, request: Request) -> Response:
        return self._job_list(request, dead=True)

    def _job_list(self, request: Request, *, dead: bool) -> Response:
        q = request.query_params
        try:
            status = Status.DEAD if dead else (Status(q["status"]) if q.get("status") else None)
            offset = min(max(0, int(q.get("offset", "0"))), MAX_OFFSET)
        except ValueError:
            return PlainTextResponse("bad status or offset", status_code=400)
        f = P.JobFilter(
            queue=q.get("queue") or None,
            status=status,
            lane=q.get("lane") or None,
            offset=offset,
            limit=PAGE_SIZE,
        )
        recs = self.backend.list_jobs(
            queue=f.queue, status=f.status, lane=f.lane, limit=f.limit + 1, offset=f.offset
        )
        title = "Dead letters" if dead else "Jobs"
        return self._page(
            request, title, lambda ctx: P.jobs_page(ctx, recs[: f.limit], f, len(recs) > f.limit, dead=dead)
        )

    def job(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        rec = self.backend.get_job(job_id)
        if rec is None:
            return self._page(
                request,
                "Not found",
                lambda _: _missing(f"No job {job_id} (purged, pruned or never enqueued)."),
                404,
            )
        return self._page(request, f"Job {job_id}", lambda ctx: P.job_page(ctx, rec, call_view(rec)))

    def bus(self, request: Request) -> Response:
        subs, raw = subscriptions(self.backend)
        return self._page(request, "Bus", lambda _: P.bus_page(subs, raw))

    def metrics(self, request: Request) -> Response:
        try:
            from prometheus_client import CollectorRegistry, generate_latest
            from prometheus_client.exposition import CONTENT_TYPE_LATEST

            from .._metrics import BackendCollector
        except ImportError:
            return PlainTextResponse("/metrics needs prometheus-client: pip install 'laneway[metrics]'", 501)
        if self._registry is None:
            registry = CollectorRegistry()
            registry.register(BackendCollector(self.backend))
            self._registry = registry
        return Response(generate_latest(self._registry), media_type=CONTENT_TYPE_LATEST)

    # --- actions -----------------------------------------------------------------------

    async def retry_job(self, request: Request, form: dict[str, str]) -> str:
        job_id = request.path_params["job_id"]
        done = await run_in_threadpool(self.backend.retry, job_id)
        return (
            f"Job {job_id} is back at the head of its lane."
            if done
            else f"Job {job_id} cannot be retried now."
        )

    async def cancel_job(self, request: Request, form: dict[str, str]) -> str:
        job_id = request.path_params["job_id"]
        done = await run_in_threadpool(self.backend.cancel, job_id)
        return (
            f"Job {job_id} was cancelled."
            if done
            else f"Job {job_id} cannot be cancelled now (running or finished)."
        )

    async def purge_dead(self, request: Request, form: dict[str, str]) -> str:
        queue = form.get("queue") or None
        n = await run_in_threadpool(lambda: self.backend.purge(status=Status.DEAD, queue=queue))
        return f"Purged {n} dead jobs" + (f" of {queue}." if queue else ".")

    async def retry_dead(self, request: Request, form: dict[str, str]) -> str:
        queue = form.get("queue") or None

        def retry_all() -> int:
            recs = self.backend.list_jobs(status=Status.DEAD, queue=queue, limit=MAX_BULK_RETRY)
            return sum(self.backend.retry(rec.id) for rec in recs)

        n = await run_in_threadpool(retry_all)
        return f"Retried {n} dead jobs" + (f" of {queue}." if queue else ".")

    def action(self, perform: Callable[[Request, dict[str, str]], Awaitable[str]]) -> Handler:
        """Wrap ``perform`` in the POST rules: same origin, CSRF token, not read-only."""

        async def endpoint(request: Request) -> Response:
            form, refusal = await self._checked_form(request)
            if refusal is not None:
                return refusal
            if self.security.read_only:
                return PlainTextResponse("this dashboard is read-only", status_code=403)
            message = await perform(request, form)
            self.throughput.clear()
            return _redirect(request, _local(form.get("next")) or "/", flash=message)

        return endpoint

    async def _checked_form(self, request: Request) -> tuple[dict[str, str], Response | None]:
        if not self.security.origin_ok(request.headers):
            return {}, PlainTextResponse("cross-origin request refused", status_code=403)
        form = await read_form(request)
        if form is None:
            return {}, PlainTextResponse("expected a small urlencoded form", status_code=400)
        if not self.security.csrf_valid(request.cookies.get(CSRF_COOKIE), form.get(CSRF_FIELD)):
            return {}, PlainTextResponse("missing or invalid CSRF token; reload the page", status_code=403)
        return form, None

    # --- sign in -------------------------------------------------------------------------

    def login_page(self, request: Request, *, error: str | None = None, status: int = 401) -> Response:
        """The sign-in form (also the 401 answer browsers get); styled inline with a nonce."""
        cookie = request.cookies.get(CSRF_COOKIE) or new_csrf_cookie()
        nonce = secrets.token_urlsafe(16)
        target = _local(request.query_params.get("next")) or _local(request.url.path) or "/"
        page = fill(
            "login.html",
            nonce=esc(nonce),
            style=Html(static_text("dashboard.css")),
            csrf=esc(self.security.csrf_token(cookie)),
            next=esc(target),
            error=Html(f'<p class="flash err">{esc(error)}</p>') if error else Html(""),
        )
        response = HTMLResponse(page, status_code=status)
        response.headers["content-security-policy"] = (
            f"default-src 'none'; style-src 'nonce-{nonce}'; form-action 'self'; frame-ancestors 'none'"
        )
        response.headers["www-authenticate"] = 'Bearer realm="laneway"'
        if cookie != request.cookies.get(CSRF_COOKIE):
            _set_cookie(response, request, CSRF_COOKIE, cookie)
        return response

    def unauthorized(self, request: Request) -> Response:
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            return self.login_page(request)
        return PlainTextResponse(
            "401: this dashboard needs its token",
            status_code=401,
            headers={"www-authenticate": 'Bearer realm="laneway"'},
        )

    async def login(self, request: Request) -> Response:
        if self.security.token is None:
            return RedirectResponse("/", status_code=303)
        if request.method == "GET":
            return self.login_page(request, status=200)
        form, refusal = await self._checked_form(request)
        if refusal is not None:
            return refusal
        if not self.security.token_matches(form.get("token", "")):
            await asyncio.sleep(0.2)  # slows guessing down a little; the token's length does the rest
            return self.login_page(request, error="That token is not right.")
        response = _redirect(request, _local(form.get("next")) or "/")
        _set_cookie(response, request, SESSION_COOKIE, self.security.session_value)
        return response

    async def logout(self, request: Request) -> Response:
        _form, refusal = await self._checked_form(request)
        if refusal is not None:
            return refusal
        response = _redirect(request, "/login")
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    # --- life cycle ------------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        """Sample the backlog in a daemon thread while the server runs."""
        self.sampler.stop.clear()
        thread = threading.Thread(target=self.sampler.run, name="laneway-dashboard-sampler", daemon=True)
        thread.start()
        try:
            yield
        finally:
            self.sampler.stop.set()
            thread.join(timeout=5)

    def routes(self) -> list[Route | Mount]:
        return [
            Route("/", self.overview),
            Route("/queues/{queue:path}", self.queue),  # a queue name may hold "/"
            Route("/jobs", self.jobs),
            Route("/jobs/{job_id}", self.job),
            Route("/jobs/{job_id}/retry", self.action(self.retry_job), methods=["POST"]),
            Route("/jobs/{job_id}/cancel", self.action(self.cancel_job), methods=["POST"]),
            Route("/dead", self.dead),
            Route("/dead/retry", self.action(self.retry_dead), methods=["POST"]),
            Route("/dead/purge", self.action(self.purge_dead), methods=["POST"]),
            Route("/bus", self.bus),
            Route("/metrics", self.metrics),
            Route("/login", self.login, methods=["GET", "POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Mount("/static", StaticFiles(packages=[("laneway.dashboard", "static")]), name="static"),
        ]


def _missing(text: str) -> Html:
    return Html(f'<p class="empty">{esc(text)}</p>')


def _local(target: str | None) -> str | None:
    """``target`` if it is a path on this site (no scheme, no host, no ``//``), else None."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else None


def _refreshing(request: Request) -> bool:
    """An in-place refresh by the page's script: it must not consume an action's message,
    which belongs to the page the browser is navigating to."""
    return request.headers.get(REFRESH_HEADER) == "1"


def _redirect(request: Request, target: str, flash: str | None = None) -> Response:
    """A 303 to ``target``; ``flash`` rides in a short-lived cookie (never in the URL, so a
    crafted link cannot put words on the page)."""
    response = RedirectResponse(target, status_code=303)
    if flash:
        response.set_cookie(
            FLASH_COOKIE,
            quote(flash[:FLASH_MAX_CHARS]),
            max_age=60,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
    return response


def _set_cookie(response: Response, request: Request, name: str, value: str) -> None:
    response.set_cookie(
        name, value, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )


def create_app(
    target: App | Backend,
    *,
    token: str | None = None,
    read_only: bool = False,
    allowed_hosts: Collection[str] | None = None,
    namespace: str | None = None,
    refresh_s: float = 5.0,
    sample_s: float = 5.0,
    throughput_scan: int = 20_000,
) -> Starlette:
    """The dashboard as an ASGI application (serve it with uvicorn).

    Args:
        target: a ``laneway.App`` or a backend.
        token: shared secret; with it every route but ``/login`` needs it (bearer header
            or the login form's cookie). Without it only loopback hosts are answered.
        read_only: hide and refuse retry, cancel and purge.
        allowed_hosts: ``Host`` names to answer (default: loopback names without a token).
        namespace: shown in the header (default the app's namespace).
        refresh_s: how often open pages refresh their content; 0 turns it off.
        sample_s: how often the in-memory backlog chart samples ``stats()``.
        throughput_scan: stored jobs per final status read for the throughput chart.
    """
    backend = target.backend if isinstance(target, App) else target
    ns = namespace or (target.namespace if isinstance(target, App) else getattr(backend, "namespace", ""))
    security = Security(token, read_only=read_only, allowed_hosts=allowed_hosts)
    dash = Dashboard(
        backend,
        security,
        namespace=str(ns),
        refresh_s=refresh_s,
        sample_s=sample_s,
        throughput_scan=throughput_scan,
    )
    app = Starlette(
        routes=dash.routes(),
        middleware=[Middleware(Guard, security=security, unauthorized=dash.unauthorized)],
        lifespan=dash.lifespan,
    )
    app.state.dashboard = dash
    return app
