"""Operator commands: ``stats``, ``jobs``, ``dead``, ``migrate``. Human tables by default,
``--json`` for scripts. They work on every backend, through the backend contract."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import click
from rich.text import Text

from .._records import JobRecord, Status
from ..backends import shown_url
from ._common import COUNT, backend_options, console, emit_json, json_option, open_app, say, table


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


@click.command("stats")
@backend_options
@json_option
def stats_command(url: str, namespace: str, as_json: bool) -> None:
    """Counts per queue: scheduled, queued, running, retrying, dead, lanes."""
    app = open_app(url, namespace)
    stats = app.backend.stats()
    if as_json:
        emit_json(stats)
        return
    table(
        f"laneway {shown_url(url)} ({namespace})",
        [
            "queue",
            "scheduled",
            "queued",
            "running",
            "retrying",
            "succeeded",
            "dead",
            "cancelled",
            "lanes",
            "oldest",
        ],
        [
            [
                s.queue,
                s.scheduled,
                s.queued,
                s.running,
                s.retrying,
                s.succeeded,
                s.dead,
                s.cancelled,
                s.lanes,
                _age(s.oldest_queued_age_s),
            ]
            for s in stats
        ],
    )
    if not stats:
        console.print("no jobs")


def _list(
    url: str,
    namespace: str,
    status: str | None,
    queue: str | None,
    lane: str | None,
    limit: int,
    as_json: bool,
    title: str,
) -> None:
    app = open_app(url, namespace)
    recs = app.backend.list_jobs(
        status=Status(status) if status else None, queue=queue, lane=lane, limit=limit
    )
    if as_json:
        emit_json([_public(r) for r in recs])
        return
    table(
        title,
        ["id", "task", "queue", "lane", "status", "attempts", "enqueued", "error"],
        [
            [
                r.id,
                r.task,
                r.queue,
                r.lane,
                r.status.value,
                f"{r.attempts}/{r.max_attempts}",
                _when(r.enqueued_at),
                (r.error or "")[:60],
            ]
            for r in recs
        ],
    )


def _public(rec: JobRecord) -> dict[str, object]:
    from ._common import to_jsonable

    data: dict[str, object] = to_jsonable(rec)
    return data


@click.group("jobs")
def jobs_group() -> None:
    """List, show, retry and cancel jobs."""


@jobs_group.command("list")
@backend_options
@json_option
@click.option("--status", type=click.Choice([s.value for s in Status]), default=None)
@click.option("--queue", default=None)
@click.option("--lane", default=None)
@click.option("--limit", type=COUNT, default=50, show_default=True)
def jobs_list(
    url: str,
    namespace: str,
    as_json: bool,
    status: str | None,
    queue: str | None,
    lane: str | None,
    limit: int,
) -> None:
    """Jobs, newest first."""
    _list(url, namespace, status, queue, lane, limit, as_json, "jobs")


@jobs_group.command("show")
@backend_options
@json_option
@click.argument("job_id")
def jobs_show(url: str, namespace: str, as_json: bool, job_id: str) -> None:
    """One job with its arguments, error and traceback."""
    rec = open_app(url, namespace).backend.get_job(job_id)
    if rec is None:
        raise click.ClickException(f"no job {job_id}")
    if as_json:
        emit_json(_public(rec))
        return
    for key, value in _public(rec).items():
        if key != "traceback" and value is not None:
            say(Text(key, style="bold"), f": {value}")
    if rec.traceback:
        console.print("[bold]traceback[/bold]:")
        console.print(rec.traceback, highlight=False, markup=False)


@jobs_group.command("retry")
@backend_options
@click.argument("job_ids", nargs=-1, required=True)
def jobs_retry(url: str, namespace: str, job_ids: tuple[str, ...]) -> None:
    """Put dead or cancelled jobs back at the head of their lanes."""
    _each(url, namespace, job_ids, "retry")


@jobs_group.command("cancel")
@backend_options
@click.argument("job_ids", nargs=-1, required=True)
def jobs_cancel(url: str, namespace: str, job_ids: tuple[str, ...]) -> None:
    """Cancel scheduled, queued, retrying or dead jobs."""
    _each(url, namespace, job_ids, "cancel")


def _each(url: str, namespace: str, job_ids: tuple[str, ...], action: str) -> None:
    backend = open_app(url, namespace).backend
    failed = 0
    for job_id in job_ids:
        ok = backend.retry(job_id) if action == "retry" else backend.cancel(job_id)
        say(f"{job_id}: {'done' if ok else 'not possible in its current state'}")
        failed += not ok
    if failed:
        raise SystemExit(1)


@click.group("dead")
def dead_group() -> None:
    """The dead-letter list: list, retry, purge."""


@dead_group.command("list")
@backend_options
@json_option
@click.option("--queue", default=None)
@click.option("--limit", type=COUNT, default=50, show_default=True)
def dead_list(url: str, namespace: str, as_json: bool, queue: str | None, limit: int) -> None:
    """Dead jobs, newest first."""
    _list(url, namespace, "dead", queue, None, limit, as_json, "dead jobs")


@dead_group.command("retry")
@backend_options
@click.argument("job_ids", nargs=-1)
@click.option("--all", "retry_all", is_flag=True, help="Retry every dead job.")
def dead_retry(url: str, namespace: str, job_ids: tuple[str, ...], retry_all: bool) -> None:
    """Retry dead jobs (by id, or --all)."""
    if retry_all:
        backend = open_app(url, namespace).backend
        job_ids = tuple(r.id for r in backend.list_jobs(status=Status.DEAD, limit=1_000_000))
        if not job_ids:  # nothing to do is not an error: a cron job may run this every hour
            console.print("no dead jobs")
            return
    if not job_ids:
        raise click.UsageError("give job ids or --all")
    _each(url, namespace, job_ids, "retry")


@dead_group.command("purge")
@backend_options
@click.option("--queue", default=None)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def dead_purge(url: str, namespace: str, queue: str | None, yes: bool) -> None:
    """Delete dead jobs (lanes blocked behind them move on)."""
    if not yes:
        click.confirm("Delete every dead job" + (f" of {queue}" if queue else "") + "?", abort=True)
    n = open_app(url, namespace).backend.purge(status=Status.DEAD, queue=queue)
    console.print(f"purged {n} dead jobs")


@click.command("migrate")
@backend_options
def migrate_command(url: str, namespace: str) -> None:
    """Create or upgrade the backend's schema (SQL backends do this on first use too)."""
    backend = open_app(url, namespace, create=True).backend
    migrate = getattr(backend, "migrate", None)
    start = time.perf_counter()
    if callable(migrate):
        migrate()
    say(f"schema of {shown_url(url)} ({namespace}) is current ({(time.perf_counter() - start) * 1e3:.0f} ms)")
