"""``laneway bus list`` and ``laneway bus unsubscribe`` on a SQLite file."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import laneway
from laneway.bus import present
from laneway.bus._cli import bus_group


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'bus.db'}"
    billing = laneway.App(url, name="billing")
    billing.subscribe(re.compile("^order_"), key="orders", name="billing.orders")(lambda e: None)
    billing.subscribe({"plan": present()}, key="plans", queue="billing_plans", name="billing.plans")(
        lambda e: None
    )
    billing.register_subscriptions()
    mail = laneway.App(url, name="mail")
    mail.subscribe("user_created", key="welcome", name="mail.welcome")(lambda e: None)
    mail.register_subscriptions()
    billing.close()
    mail.close()
    yield url


def run(*args: str) -> str:
    result = CliRunner().invoke(bus_group, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_bus_list_shows_apps_keys_queues_and_matchers(url: str) -> None:
    out = run("list", "--url", url)
    for text in ("billing", "orders", "/^order_/", "billing_plans", "plan:<present>", "mail", "welcome"):
        assert text in out


def test_bus_list_json_is_machine_readable_and_filterable(url: str) -> None:
    data = json.loads(run("list", "--url", url, "--json", "--app", "billing"))
    assert [e["app"] for e in data] == ["billing"]
    subs = {s["key"]: s for s in data[0]["subscriptions"]}
    assert subs["orders"]["label"] == "/^order_/" and subs["orders"]["queue"] == "billing_default"
    assert subs["plans"]["matcher"] == {"plan": {"special": "present"}}


def test_bus_unsubscribe_removes_one_key_or_a_whole_app(url: str) -> None:
    assert "removed 1" in run("unsubscribe", "--url", url, "billing", "plans")
    assert [s["key"] for s in json.loads(run("list", "--url", url, "--json"))[0]["subscriptions"]] == [
        "orders"
    ]
    assert "removed 1" in run("unsubscribe", "--url", url, "mail")
    assert [e["app"] for e in json.loads(run("list", "--url", url, "--json"))] == ["billing"]


def test_bus_unsubscribe_of_an_unknown_key_fails_clearly(url: str) -> None:
    result = CliRunner().invoke(bus_group, ["unsubscribe", "--url", url, "billing", "nope"])
    assert result.exit_code != 0 and "no stored subscription 'nope'" in result.output


def test_bus_list_on_an_empty_registry_says_how_it_fills(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    laneway.App(url).backend.close()  # an app's database with no subscriber yet
    out = run("list", "--url", url)
    assert "stored when a subscriber's worker starts" in out


def test_bus_commands_are_part_of_the_laneway_command(url: str) -> None:
    from laneway.cli import cli

    result = CliRunner().invoke(cli, ["bus", "list", "--url", url, "--json"], catch_exceptions=False)
    assert result.exit_code == 0 and {e["app"] for e in json.loads(result.output)} == {"billing", "mail"}
