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
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"lane must be a non-empty string or None, not {value!r}")
    if len(value) > NAME_MAX_LEN or "\x00" in value:
        raise ConfigError(f"lane {value[:40]!r} is not valid: up to {NAME_MAX_LEN} chars, no NUL")
    return check_utf8(value, "lane")


def check_utf8(value: str, what: str) -> str:
    """``value`` if every backend can store it: a lone surrogate (``os.fsdecode`` of a
    non-UTF-8 file name, say) is refused, not stored by one backend and fatal to another."""
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
