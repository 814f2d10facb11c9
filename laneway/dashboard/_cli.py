"""``laneway dashboard``: serve the web dashboard with uvicorn."""

from __future__ import annotations

import click

from ..backends import shown_url
from ..cli._common import backend_options
from ._net import is_loopback

TOKEN_ENV = "LANEWAY_DASHBOARD_TOKEN"
SHORT_TOKEN_CHARS = 16


@click.command("dashboard")
@backend_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port to bind.")
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    default=None,
    help=f"Shared secret every request must carry (or ${TOKEN_ENV}; prefer the variable).",
)
@click.option("--read-only", is_flag=True, help="Hide and refuse retry, cancel and purge.")
@click.option(
    "--allow-host",
    "allowed_hosts",
    multiple=True,
    help="Host name the dashboard answers to (repeatable); default loopback names without a token.",
)
@click.option(
    "--refresh", "refresh_s", default=5.0, show_default=True, help="Seconds between page refreshes (0: off)."
)
@click.option("--log-level", default="info", show_default=True)
def dashboard_command(
    url: str,
    namespace: str,
    host: str,
    port: int,
    token: str | None,
    read_only: bool,
    allowed_hosts: tuple[str, ...],
    refresh_s: float,
    log_level: str,
) -> None:
    """Serve the web dashboard: queues, lanes, throughput, jobs, dead letters, bus.

    It binds 127.0.0.1 by default. Any other address needs a token (--token or
    $LANEWAY_DASHBOARD_TOKEN): browsers sign in with it once (an HttpOnly cookie),
    scripts and Prometheus send it as "Authorization: Bearer <token>".
    """
    if token is not None and not token:
        raise click.UsageError("the token must not be empty")
    if not is_loopback(host) and token is None:
        raise click.UsageError(
            f"refusing to bind {host} without a token: anyone who can reach it could retry, cancel and "
            f"purge jobs. Set ${TOKEN_ENV} (or --token), or bind 127.0.0.1."
        )
    if token is not None and len(token) < SHORT_TOKEN_CHARS:
        click.echo(
            f"warning: the token is shorter than {SHORT_TOKEN_CHARS} characters; use a long random one "
            '(python -c "import secrets; print(secrets.token_urlsafe(32))")',
            err=True,
        )
    from ..cli._common import open_app  # here: laneway.cli imports this module

    try:
        import uvicorn

        from ._app import create_app
    except ImportError as exc:
        raise click.ClickException(f"the dashboard needs: pip install 'laneway[dashboard]' ({exc})") from exc
    app = open_app(url, namespace, create=True)  # a service may start before the first worker
    web = create_app(
        app, token=token, read_only=read_only, allowed_hosts=allowed_hosts or None, refresh_s=refresh_s
    )
    shown = f"[{host}]" if ":" in host else host
    click.echo(
        f"laneway dashboard for {shown_url(url)} ({namespace}) on http://{shown}:{port}/"
        + (" (read-only)" if read_only else "")
        + (" (token required)" if token else "")
    )
    try:
        uvicorn.run(web, host=host, port=port, log_level=log_level, server_header=False, proxy_headers=False)
    finally:
        app.close()
