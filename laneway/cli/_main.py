"""``laneway``: the command group. Each subcommand lives in its own module."""

from __future__ import annotations

import click

from ..bus._cli import bus_group
from ..dashboard._cli import dashboard_command
from ..streams._cli import kafka_consume
from ._bench import bench_command
from ._demo import chaos_command, demo_command
from ._ops import dead_group, jobs_group, migrate_command, stats_command
from ._worker import worker_command


@click.group()
@click.version_option(package_name="laneway")
def cli() -> None:
    """laneway: jobs and messages with order per key."""


for _command in (
    worker_command,
    demo_command,
    stats_command,
    jobs_group,
    dead_group,
    bus_group,
    dashboard_command,
    bench_command,
    chaos_command,
    migrate_command,
    kafka_consume,
):
    cli.add_command(_command)


_OPERATIONAL = frozenset(
    {
        "psycopg.OperationalError",  # the server went away, refused, timed out
        "psycopg.errors.InsufficientPrivilege",
        "redis.exceptions.ConnectionError",
        "redis.exceptions.TimeoutError",
        "redis.exceptions.AuthenticationError",
        "redis.exceptions.NoPermissionError",
        "sqlite3.OperationalError",
    }
)
"""Errors of the backends' own libraries that are about the deployment, not a bug: shown as
one line. Anything else keeps its traceback."""


def _operational(exc: BaseException) -> bool:
    return any(f"{c.__module__}.{c.__qualname__}" in _OPERATIONAL for c in type(exc).__mro__)


def main() -> None:
    """Entry point of the ``laneway`` script: a backend that cannot be reached or refuses
    this role an operation is reported in one line (exit 1), not as a traceback."""
    try:
        cli()
    except Exception as exc:
        if not _operational(exc):
            raise
        click.echo(f"Error: {type(exc).__name__}: {exc}".rstrip(), err=True)
        raise SystemExit(1) from None
