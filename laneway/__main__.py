"""``python -m laneway`` is the ``laneway`` command."""

from __future__ import annotations

from .cli import main

main()
