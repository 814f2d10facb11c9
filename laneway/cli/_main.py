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


def main() -> None:
    """Entry point of the ``laneway`` script."""
    cli()
