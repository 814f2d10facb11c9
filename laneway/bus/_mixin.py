"""``App``'s event-bus methods (``subscribe``, ``publish``, ...)."""

from __future__ import annotations


class BusMixin:
    """Event-bus methods of ``laneway.App``."""
