"""Validation of names that come from users: queues, lanes, namespaces, tasks."""

from __future__ import annotations

import re

from ._constants import NAME_MAX_LEN
from ._errors import ConfigError

_SAFE = re.compile(r"^[A-Za-z0-9_.:@/+=-]+$")
_NAMESPACE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


def check_name(value: object, what: str) -> str:
    """Return ``value`` if it is a usable queue or task name, else raise ``ConfigError``.

    Queue and task names are printable ASCII without spaces or braces (they appear in
    Redis keys with hash tags, SQL rows and URLs).
    """
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} must be a non-empty string, not {value!r}")
    if len(value) > NAME_MAX_LEN or not _SAFE.match(value):
        raise ConfigError(
            f"{what} {value!r} is not valid: use up to {NAME_MAX_LEN} characters from "
            "letters, digits and _ . : @ / + = -"
        )
    return value


def check_lane(value: object) -> str | None:
    """Return a lane id (any non-empty string without NUL, up to the length limit) or None."""
    return None if value is None else check_key(value, "lane", NAME_MAX_LEN)


def check_key(value: object, what: str, most: int) -> str:
    """``value`` if it is a key every backend can store (a lane, a ``unique`` key): a
    non-empty string of at most ``most`` chars without NUL or a lone surrogate
    (``os.fsdecode`` of a non-UTF-8 file name, say), which one backend would store and
    another refuse; else ``ConfigError`` naming ``what``."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} must be a non-empty string, not {value!r}")
    if len(value) > most or "\x00" in value:
        raise ConfigError(f"{what} {value[:40]!r} is not valid: up to {most} chars, no NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(
            f"{what} {value[:40]!r} is not valid UTF-8 text (it holds a lone surrogate)"
        ) from None
    return value


def check_namespace(value: object) -> str:
    """Namespaces prefix keys, tables and schemas, so they are plain identifiers."""
    if not isinstance(value, str) or not _NAMESPACE.match(value):
        raise ConfigError(
            f"namespace {value!r} is not valid: a lowercase letter, then up to 39 of "
            "lowercase letters, digits, _ and -"
        )
    return value
