"""The ``kafka-consume`` command: argument handling and a run against the mock cluster."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from laneway.streams._cli import kafka_consume, load_handler, parse_config
from tests.streams.streams_crash_handler import read_log
from tests.streams.streams_support import MockCluster, missing, order_violations, unique


async def async_handler(message: object) -> None:
    """An async handler, which the thread-based Kafka loop refuses."""


def test_load_handler_resolves_module_and_dotted_attribute() -> None:
    assert load_handler("tests.streams.streams_crash_handler:handle").__name__ == "handle"
    assert load_handler("os.path:join") is __import__("os").path.join


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon", "expected module:function"),
        ("tests.streams.no_such_module:handle", "cannot load"),
        ("tests.streams.streams_crash_handler:nope", "cannot load"),
        ("tests.streams.streams_support:PARTITIONS", "not callable"),
        ("tests.streams.test_streams_cli:async_handler", "is async"),
    ],
)
def test_load_handler_rejects_unusable_specs_with_a_clear_message(spec: str, message: str) -> None:
    with pytest.raises(click.BadParameter, match=message):
        load_handler(spec)


def test_config_pairs_become_librdkafka_properties() -> None:
    assert parse_config(("a.b=1", " c = x=y ")) == {"a.b": "1", "c": "x=y"}
    with pytest.raises(click.BadParameter):
        parse_config(("missing-equals",))


def test_help_lists_the_consumer_options() -> None:
    result = CliRunner().invoke(kafka_consume, ["--help"])
    assert result.exit_code == 0
    for option in ("--topic", "--group", "--bootstrap", "--workers", "--max-in-flight"):
        assert option in result.output


@pytest.mark.timeout(60)
def test_command_processes_a_topic_in_key_order_and_exits_when_idle(
    cluster: MockCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic, group = unique("cli"), unique("g")
    produced = cluster.produce(topic, keys=10, per_key=10)
    log = str(tmp_path / "done.log")
    monkeypatch.setenv("STREAMS_TEST_LOG", log)
    args = [
        "tests.streams.streams_crash_handler:handle",
        *("--topic", topic, "--group", group, "--bootstrap", cluster.bootstrap),
        *("--workers", "4", "--max-in-flight", "20", "--idle-exit", "1.5"),
        *("-X", "log_level=3"),
    ]
    result = CliRunner().invoke(kafka_consume, args)
    assert result.exit_code == 0, result.output
    assert f"processed {len(produced)} message(s)" in result.output
    completed = [(key, partition, offset) for _, key, partition, offset in read_log(log)]
    assert missing(produced, completed) == []
    assert order_violations(produced, completed) == []
    assert sum(cluster.committed(topic, group).values()) == len(produced)
