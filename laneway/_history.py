"""Record what a laneway run did, then check the record against laneway's promises.

Every fault run (``laneway demo``, ``laneway chaos``, the fault tests) writes one
:class:`Event` per enqueue, claim, start, side effect, ack, refused ack, nack and
dead-lettering (``laneway._events``: :class:`HistoryRecorder`, :func:`load_history`);
:func:`check_history` then classifies the merged history into a :class:`Report`
(``laneway._checker``, whose docstring gives the classification rules).
"""

from __future__ import annotations

from ._checker import (
    Duplicate,
    DuplicateAck,
    JobRef,
    OrderViolation,
    Report,
    StaleAck,
    Unexpected,
    check_history,
)
from ._events import Event, EventKind, HistoryFormatError, HistoryRecorder, load_history

__all__ = [
    "Duplicate",
    "DuplicateAck",
    "Event",
    "EventKind",
    "HistoryFormatError",
    "HistoryRecorder",
    "JobRef",
    "OrderViolation",
    "Report",
    "StaleAck",
    "Unexpected",
    "check_history",
    "load_history",
]
