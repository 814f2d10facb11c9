"""Which events a subscription wants: exact values, regexes and special matchers, ANDed.

Every matcher is, underneath, a map from attribute name to a condition, and an event
matches when every condition holds (AND over keys). The short forms are sugar:

- ``"user_created"`` means ``{"bus_event_type": "user_created"}``;
- ``re.compile(r"^user_")`` means ``{"bus_event_type": re.compile(r"^user_")}``.

Conditions on one attribute:

- an exact ``str``, ``int``, ``float`` or ``bool``: the attribute equals it, with the same
  JSON type (``1`` does not match ``"1"`` nor ``True``);
- a compiled regex: the attribute is a string and ``regex.search`` finds it (anchor it
  with ``^``/``$`` for a whole-value match);
- a special matcher (ResqueBus's ``bus_special_value_*``): ``key()``, ``value()``,
  ``present()``, ``blank()``, ``empty()``, ``nil()``; see ``Special``.

Matchers are stored in the backend's registry as JSON, so that publishers in other
processes can evaluate them without importing the subscriber.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeAlias

from .._errors import ConfigError
from ._constants import EVENT_TYPE

Scalar: TypeAlias = str | int | float | bool

_FLAG_LETTERS = ((re.IGNORECASE, "i"), (re.MULTILINE, "m"), (re.DOTALL, "s"), (re.VERBOSE, "x"),
                 (re.ASCII, "a"))  # fmt: skip


class SpecialKind(str, Enum):
    """The special matchers. "Blank" means ``""``, whitespace only, ``[]`` or ``{}``."""

    KEY = "key"
    """The attribute is in the event, whatever its value (even null)."""
    VALUE = "value"
    """The attribute is in the event and is not null."""
    PRESENT = "present"
    """The attribute is in the event, is not null and is not blank."""
    BLANK = "blank"
    """The attribute is in the event and is blank."""
    EMPTY = "empty"
    """The attribute is in the event with the value null (``None``)."""
    NIL = "nil"
    """The attribute is not in the event at all."""


def _is_blank(value: Any) -> bool:
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, (list, dict)) and not value


@dataclass(frozen=True, slots=True)
class Special:
    """A special matcher; make one with ``present()``, ``blank()``, ``nil()`` and so on."""

    kind: SpecialKind

    def test(self, found: bool, value: Any) -> bool:
        """Whether an attribute that is ``found`` (or not) with ``value`` satisfies it."""
        k = self.kind
        if k is SpecialKind.NIL:
            return not found
        if not found:
            return False
        if k is SpecialKind.KEY:
            return True
        if k is SpecialKind.EMPTY:
            return value is None
        if k is SpecialKind.VALUE:
            return value is not None
        if k is SpecialKind.BLANK:
            return _is_blank(value)
        return value is not None and not _is_blank(value)

    def to_json(self) -> dict[str, Any]:
        return {"special": self.kind.value}

    @property
    def label(self) -> str:
        return f"<{self.kind.value}>"


def key() -> Special:
    """Matches when the attribute is in the event, whatever its value (``bus_special_value_key``)."""
    return Special(SpecialKind.KEY)


def value() -> Special:
    """Matches when the attribute is in the event and not null (``bus_special_value_value``)."""
    return Special(SpecialKind.VALUE)


def present() -> Special:
    """Matches when the attribute is in the event, not null and not blank (``bus_special_value_present``)."""
    return Special(SpecialKind.PRESENT)


def blank() -> Special:
    """Matches when the attribute is ``""``, whitespace, ``[]`` or ``{}`` (``bus_special_value_blank``)."""
    return Special(SpecialKind.BLANK)


def empty() -> Special:
    """Matches when the attribute is in the event with the value null (``bus_special_value_empty``)."""
    return Special(SpecialKind.EMPTY)


def nil() -> Special:
    """Matches when the attribute is not in the event at all (``bus_special_value_nil``)."""
    return Special(SpecialKind.NIL)


@dataclass(frozen=True, slots=True)
class Exact:
    """The attribute equals ``expected``, with the same JSON type."""

    expected: Scalar

    def test(self, found: bool, value: Any) -> bool:
        if not found:
            return False
        want = self.expected
        if isinstance(want, bool) or isinstance(value, bool):
            return isinstance(value, bool) and isinstance(want, bool) and value is want
        if isinstance(want, str):
            return isinstance(value, str) and value == want
        return isinstance(value, (int, float)) and value == want

    def to_json(self) -> dict[str, Any]:
        return {"eq": self.expected}

    @property
    def label(self) -> str:
        return self.expected if isinstance(self.expected, str) else repr(self.expected)


@dataclass(frozen=True, slots=True)
class Regex:
    """The attribute is a string in which ``pattern`` is found (``re.search``)."""

    pattern: re.Pattern[str]

    def test(self, found: bool, value: Any) -> bool:
        return found and isinstance(value, str) and self.pattern.search(value) is not None

    def to_json(self) -> dict[str, Any]:
        return {"re": self.pattern.pattern, "flags": self.pattern.flags & ~re.UNICODE}

    @property
    def label(self) -> str:
        letters = "".join(ch for flag, ch in _FLAG_LETTERS if self.pattern.flags & flag)
        return f"/{self.pattern.pattern}/{letters}"


Condition: TypeAlias = Exact | Regex | Special


def _condition(name: str, spec: Any) -> Condition:
    if isinstance(spec, Special):
        return spec
    if isinstance(spec, re.Pattern):
        if not isinstance(spec.pattern, str):
            raise ConfigError(f"matcher for {name!r}: regexes must be compiled from str, not bytes")
        return Regex(spec)
    if isinstance(spec, (str, int, float, bool)):
        if isinstance(spec, str) and not spec:
            raise ConfigError(f"matcher for {name!r}: use blank() to match an empty string")
        if isinstance(spec, float) and not math.isfinite(spec):  # no event can carry one
            raise ConfigError(f"matcher for {name!r}: {spec!r} can never match (events are JSON)")
        return Exact(spec)
    if spec is None:
        raise ConfigError(f"matcher for {name!r}: use empty() for null or nil() for a missing key")
    raise ConfigError(
        f"matcher for {name!r} must be a str, int, float, bool, compiled regex or special "
        f"matcher (laneway.bus.present() ...), not {type(spec).__name__}"
    )


def _condition_from_json(data: Any) -> Condition:
    if not isinstance(data, dict):
        raise ValueError(f"stored condition is not a map: {data!r}")
    if "eq" in data:
        return Exact(data["eq"])
    if "re" in data:
        return Regex(re.compile(str(data["re"]), int(data.get("flags", 0))))
    if "special" in data:
        return Special(SpecialKind(data["special"]))
    raise ValueError(f"unknown stored condition {data!r}")


@dataclass(frozen=True, slots=True)
class Matcher:
    """Conditions on attributes, all of which must hold; sorted by attribute name."""

    conditions: tuple[tuple[str, Condition], ...]

    @classmethod
    def build(cls, spec: Matcher | str | re.Pattern[str] | Mapping[str, Any]) -> Matcher:
        """A matcher from what ``subscribe`` accepts; raises ``ConfigError`` if invalid."""
        if isinstance(spec, Matcher):
            return spec
        if isinstance(spec, str):
            if not spec:
                raise ConfigError("an event type to subscribe to must be a non-empty string")
            return cls(((EVENT_TYPE, Exact(spec)),))
        if isinstance(spec, re.Pattern):
            return cls(((EVENT_TYPE, _condition(EVENT_TYPE, spec)),))
        if isinstance(spec, Mapping):
            if not spec:
                raise ConfigError("an attribute matcher needs at least one key (use present() to match all)")
            for name in spec:
                if not isinstance(name, str) or not name:
                    raise ConfigError(f"matcher keys must be non-empty strings, not {name!r}")
            return cls(tuple(sorted((name, _condition(name, c)) for name, c in spec.items())))
        raise ConfigError(
            "subscribe takes an event type (str), a compiled regex on the event type, or a "
            f"dict of attribute conditions, not {type(spec).__name__}"
        )

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether every condition holds for ``event``."""
        for name, cond in self.conditions:
            found = name in event
            if not cond.test(found, event.get(name)):
                return False
        return True

    @property
    def event_type(self) -> str | None:
        """The exact event type this matcher requires, if it requires one."""
        for name, cond in self.conditions:
            if name == EVENT_TYPE and isinstance(cond, Exact) and isinstance(cond.expected, str):
                return cond.expected
        return None

    @property
    def label(self) -> str:
        """Short human form: ``user_created``, ``/^user_/`` or ``plan=pro,bus_event_type~/^u/``."""
        if len(self.conditions) == 1 and self.conditions[0][0] == EVENT_TYPE:
            cond = self.conditions[0][1]
            if not isinstance(cond, Special):
                return cond.label
        parts = []
        for name, cond in self.conditions:
            sep = "~" if isinstance(cond, Regex) else ":" if isinstance(cond, Special) else "="
            parts.append(f"{name}{sep}{cond.label}")
        return ",".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {name: cond.to_json() for name, cond in self.conditions}

    @classmethod
    def from_json(cls, data: Any) -> Matcher:
        """Rebuild a stored matcher; raises ``ValueError`` when it is not one."""
        if not isinstance(data, dict) or not data:
            raise ValueError(f"stored matcher is not a non-empty map: {data!r}")
        return cls(tuple(sorted((str(name), _condition_from_json(c)) for name, c in data.items())))


MatcherSpec: TypeAlias = str | re.Pattern[str] | Mapping[str, Any] | Matcher
"""What ``subscribe`` accepts: an event type, a regex on the event type, or attributes."""
