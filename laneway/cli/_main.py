"""``laneway``: the command group. Subcommands live in their own modules."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="laneway")
def cli() -> None:
    """laneway: jobs and messages with order per key."""


def main() -> None:
    cli()
