"""``laneway``: the command group. Each subcommand lives in its own module."""

from __future__ import annotations

import click

from ..bus._cli import bus_group
from ..dashboard._cli import dashboard_command
from ._bench import bench_command
from ._demo import chaos_command, demo_command
from ._ops import dead_group, jobs_group, migrate_command, stats_command
from ._worker import worker_command


@click.group()
@click.version_option(package_name="laneway")
def cli() -> None:
    """laneway: jobs and messages with order per key."""


cli.add_command(worker_command)
cli.add_command(stats_command)
cli.add_command(jobs_group)
cli.add_command(dead_group)
cli.add_command(migrate_command)
cli.add_command(demo_command)
cli.add_command(chaos_command)
cli.add_command(dashboard_command)


def main() -> None:
    """Entry point of the ``laneway`` script."""
    cli()


cli.add_command(bench_command)
cli.add_command(bus_group)
