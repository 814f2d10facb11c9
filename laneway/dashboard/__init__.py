"""The web dashboard: ``laneway dashboard`` or ``create_app(app_or_backend, token=...)``.

Needs the ``dashboard`` extra (starlette, uvicorn); importing this package does not, so
the ``laneway`` command works without it and says what to install when it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from ._app import create_app

        return create_app
    raise AttributeError(f"module 'laneway.dashboard' has no attribute {name!r}")
