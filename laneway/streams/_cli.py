"""``laneway kafka-consume``: run a handler over Kafka topics with per-key order.

The main ``laneway`` CLI registers :data:`kafka_consume`; ``python -m laneway.streams._cli``
runs the same command on its own.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import click

from laneway.streams._types import ErrorPolicy, ProcessorStoppedError


def load_handler(spec: str) -> Callable[[Any], object]:
    """Import ``module:attribute`` (attribute may be dotted) and return the callable.

    The current directory is importable, as with ``python -m``.

    Raises:
        click.BadParameter: The spec is malformed, not importable, not callable, or async.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise click.BadParameter(f"expected module:function, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise click.BadParameter(f"cannot load {spec!r}: {exc}") from exc
    if not callable(target):
        raise click.BadParameter(f"{spec!r} is not callable")
    if inspect.iscoroutinefunction(target):
        raise click.BadParameter(f"{spec!r} is async; the Kafka loop runs plain functions on worker threads")
    handler: Callable[[Any], object] = target
    return handler


def parse_config(pairs: tuple[str, ...]) -> dict[str, str]:
    """Turn ``("key=value", ...)`` into a librdkafka config dict."""
    config: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {pair!r}", param_hint="-X")
        config[key.strip()] = value.strip()
    return config


@contextmanager
def _stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    def handle(signum: int, frame: FrameType | None) -> None:
        stop()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@click.command("kafka-consume")
@click.argument("handler")
@click.option("--topic", "topics", multiple=True, required=True, help="Topic to consume (repeatable).")
@click.option("--group", required=True, help="Consumer group id.")
@click.option("--bootstrap", required=True, envvar="LANEWAY_KAFKA_BOOTSTRAP", help="host:port list.")
@click.option("--workers", type=click.IntRange(1), default=8, show_default=True)
@click.option("--max-in-flight", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--on-error", type=click.Choice(["stop", "skip"]), default="stop", show_default=True)
@click.option("--retries", type=click.IntRange(0), default=3, show_default=True)
@click.option("--backoff", type=click.FloatRange(0), default=0.1, show_default=True)
@click.option("--revoke-timeout", type=click.FloatRange(0), default=30.0, show_default=True)
@click.option("--commit-interval", type=click.FloatRange(0), default=1.0, show_default=True)
@click.option(
    "--offset-reset", type=click.Choice(["earliest", "latest"]), default="earliest", show_default=True
)
@click.option("--idle-exit", type=click.FloatRange(0), default=None, help="Exit after N idle seconds.")
@click.option("-X", "--config", "extra", multiple=True, help="librdkafka property key=value.")
@click.option("-v", "--verbose", is_flag=True, help="Log assignments and commits.")
def kafka_consume(
    handler: str,
    topics: tuple[str, ...],
    group: str,
    bootstrap: str,
    workers: int,
    max_in_flight: int,
    on_error: str,
    retries: int,
    backoff: float,
    revoke_timeout: float,
    commit_interval: float,
    offset_reset: str,
    idle_exit: float | None,
    extra: tuple[str, ...],
    verbose: bool,
) -> None:
    """Run HANDLER (module:function) on every message of the topics.

    Messages with the same key run one at a time in offset order; different keys run in
    parallel on --workers threads. Offsets are committed only below finished messages, so
    a crash re-delivers unfinished work (at least once). SIGTERM/SIGINT drain and exit.
    """
    from laneway.streams._kafka import KafkaStreamConsumer

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": offset_reset,
        **parse_config(extra),
    }
    consumer = KafkaStreamConsumer(
        load_handler(handler),
        topics=topics,
        config=config,
        workers=workers,
        max_in_flight=max_in_flight,
        error_policy=ErrorPolicy.retry(
            retries, backoff=backoff, then="skip" if on_error == "skip" else "stop"
        ),
        revoke_timeout=revoke_timeout,
        commit_interval=commit_interval,
    )
    try:
        with _stop_on_signals(consumer.stop):
            stats = consumer.run(idle_timeout=idle_exit)
    except ProcessorStoppedError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"processed {stats.done} message(s): {stats.failed} failed attempt(s), "
        f"{stats.retried} retried, {stats.skipped} skipped"
    )


if __name__ == "__main__":
    kafka_consume()
