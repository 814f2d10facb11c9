"""Matchers: exact types, regexes, attribute dicts ANDed, and the special matchers."""

from __future__ import annotations

import json
import re

import pytest

import laneway
from laneway.bus import Matcher, blank, empty, key, nil, present, value


def ev(event_type: str = "user_created", **attrs: object) -> dict[str, object]:
    return {"bus_event_type": event_type, **attrs}


def test_exact_event_type_matches_only_that_type() -> None:
    m = Matcher.build("user_created")
    assert m.matches(ev("user_created"))
    assert not m.matches(ev("user_created_later"))
    assert not m.matches({"id": 1})


def test_regex_matches_the_event_type_with_search_semantics() -> None:
    m = Matcher.build(re.compile(r"^user_"))
    assert m.matches(ev("user_created")) and m.matches(ev("user_paid"))
    assert not m.matches(ev("order_user_x"))
    assert Matcher.build(re.compile("paid")).matches(ev("user_paid_late"))


def test_attribute_dict_requires_every_condition() -> None:
    m = Matcher.build({"bus_event_type": "user_paid", "plan": "pro", "region": re.compile("^eu-")})
    assert m.matches(ev("user_paid", plan="pro", region="eu-west"))
    assert not m.matches(ev("user_paid", plan="free", region="eu-west"))
    assert not m.matches(ev("user_paid", plan="pro", region="us-east"))
    assert not m.matches(ev("user_created", plan="pro", region="eu-west"))
    assert not m.matches(ev("user_paid", plan="pro"))


def test_exact_values_compare_with_their_json_type() -> None:
    assert Matcher.build({"n": 1}).matches({"n": 1})
    assert Matcher.build({"n": 1}).matches({"n": 1.0})
    assert not Matcher.build({"n": 1}).matches({"n": "1"})
    assert not Matcher.build({"n": 1}).matches({"n": True})
    assert Matcher.build({"ok": True}).matches({"ok": True})
    assert not Matcher.build({"ok": True}).matches({"ok": 1})
    assert not Matcher.build({"s": "1"}).matches({"s": 1})


def test_regex_never_matches_non_strings() -> None:
    m = Matcher.build({"n": re.compile("1")})
    assert not m.matches({"n": 1})
    assert m.matches({"n": "x1"})


@pytest.mark.parametrize(
    ("special", "matching", "not_matching"),
    [
        (key, [{"k": "x"}, {"k": ""}, {"k": None}], [{}]),
        (value, [{"k": "x"}, {"k": ""}, {"k": 0}], [{"k": None}, {}]),
        (
            present,
            [{"k": "x"}, {"k": 0}, {"k": False}, {"k": [1]}],
            [{"k": ""}, {"k": "  "}, {"k": None}, {"k": []}, {}],
        ),
        (blank, [{"k": ""}, {"k": " \t"}, {"k": []}, {"k": {}}], [{"k": "x"}, {"k": None}, {"k": 0}, {}]),
        (empty, [{"k": None}], [{"k": ""}, {"k": "x"}, {}]),
        (nil, [{}, {"other": 1}], [{"k": None}, {"k": ""}, {"k": "x"}]),
    ],
)
def test_special_matchers_follow_their_documented_rules(
    special: object, matching: list[dict[str, object]], not_matching: list[dict[str, object]]
) -> None:
    m = Matcher.build({"k": special()})  # type: ignore[operator]
    for event in matching:
        assert m.matches(event), event
    for event in not_matching:
        assert not m.matches(event), event


def test_matchers_survive_the_json_round_trip_of_the_registry() -> None:
    original = Matcher.build(
        {
            "bus_event_type": re.compile(r"^user_", re.IGNORECASE),
            "plan": "pro",
            "n": 3,
            "gone": nil(),
            "x": present(),
        }
    )
    restored = Matcher.from_json(json.loads(json.dumps(original.to_json())))
    assert restored == original
    assert restored.matches({"bus_event_type": "USER_x", "plan": "pro", "n": 3, "x": "y"})


def test_labels_are_short_and_readable() -> None:
    assert Matcher.build("user_created").label == "user_created"
    assert Matcher.build(re.compile("^user_", re.I)).label == "/^user_/i"
    label = Matcher.build({"bus_event_type": "user_paid", "plan": present(), "r": re.compile("eu")}).label
    assert label == "bus_event_type=user_paid,plan:<present>,r~/eu/"


@pytest.mark.parametrize(
    "bad",
    ["", {}, {"k": None}, {"k": ""}, {"k": [1]}, {1: "x"}, re.compile(b"bytes"), 42, ["user_created"]]
    + [{"k": float("nan")}, {"k": float("inf")}],
)
def test_invalid_matchers_are_refused_with_a_config_error(bad: object) -> None:
    with pytest.raises(laneway.ConfigError):
        Matcher.build(bad)  # type: ignore[arg-type]


def test_exact_event_type_is_known_for_heartbeat_detection() -> None:
    assert Matcher.build("bus.heartbeat").event_type == "bus.heartbeat"
    assert Matcher.build({"bus_event_type": "bus.heartbeat", "minute": 0}).event_type == "bus.heartbeat"
    assert Matcher.build(re.compile("heartbeat")).event_type is None
