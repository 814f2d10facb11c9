"""The event bus: publish events between apps; each subscriber gets its own laned copy."""

from __future__ import annotations

from ._mixin import BusMixin

__all__ = ["BusMixin"]
