"""The ``laneway`` command.

``_main`` (which imports every subcommand, some from other packages) is loaded on first
use, so extensions can import the shared helpers in ``laneway.cli._common`` without a cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._main import cli

__all__ = ["cli", "main"]


def main() -> None:
    """Entry point of the ``laneway`` script."""
    from ._main import main as run

    run()


def __getattr__(name: str) -> Any:
    if name == "cli":
        from ._main import cli

        return cli
    raise AttributeError(name)
