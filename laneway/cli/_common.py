"""What every subcommand shares: finding the app or backend, and printing results."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._app import App
from .._constants import DEFAULT_NAMESPACE, DEFAULT_URL, URL_ENV
from .._errors import LanewayError
from ..backends import open_backend

F = TypeVar("F", bound=Callable[..., Any])
_WIDTH = None if sys.stdout.isatty() else 200  # piped output: don't fold tables to 80 columns
console = Console(width=_WIDTH)
err_console = Console(stderr=True)


COUNT = click.IntRange(min=1)
"""A count of at least 1 (jobs, slots, processes, batch sizes)."""
SECONDS = click.FloatRange(min=0)
POSITIVE_SECONDS = click.FloatRange(min=0, min_open=True)
LOG_LEVEL = click.Choice(
    ["DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL", "NOTSET"], case_sensitive=False
)
PORT = click.IntRange(0, 65535)


def load_app(ref: str) -> App:
    """Import ``module:attribute`` (attribute defaults to ``app``) from the current directory."""
    module_name, _, attr = ref.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(f"cannot import {module_name!r}: {exc}") from exc
    app = getattr(module, attr or "app", None)
    if not isinstance(app, App):
        raise click.BadParameter(f"{ref!r} is not a laneway.App (give module:attribute)")
    return app


def backend_options(fn: F) -> F:
    """``--url`` and ``--namespace`` for commands that work on stored state."""
    fn = click.option(
        "--namespace", "-n", default=DEFAULT_NAMESPACE, show_default=True, help="Namespace of the app."
    )(fn)
    fn = click.option(
        "--url",
        "-u",
        envvar=URL_ENV,
        default=DEFAULT_URL,
        show_default=True,
        help=f"Backend URL (or ${URL_ENV}).",
    )(fn)
    return fn


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")(fn)


def open_app(url: str, namespace: str, *, create: bool = False) -> App:
    """The app of ``url`` and ``namespace`` with its backend open: a bad URL or namespace
    is a usage error, a backend that cannot be reached a one-line error (no traceback).

    Unless ``create``, the store must exist (``open_backend(create=False)``): a command
    that reads a misspelt SQLite path or PostgreSQL namespace would otherwise create an
    empty one there and report no jobs.
    """
    try:
        return App(url, namespace=namespace, backend=open_backend(url, namespace, create=create))
    except LanewayError as exc:
        raise click.BadParameter(str(exc)) from exc
    except Exception as exc:
        raise click.ClickException(f"cannot open the backend: {type(exc).__name__}: {exc}") from exc


def to_jsonable(value: Any) -> Any:
    """Records, enums and bytes as JSON-friendly values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bytes):
        try:
            return json.loads(value)
        except ValueError:
            return value.hex()
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value


def emit_json(value: Any) -> None:
    click.echo(json.dumps(to_jsonable(value), indent=2, sort_keys=True))


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a table; every title and cell is plain text (stored data such as ``tenant[a]``
    or an error with ``[/]`` in it is not read as rich markup)."""
    t = Table(title=Text(title), title_justify="left")
    for col in columns:
        t.add_column(col, overflow="fold", no_wrap=col in ("queue", "id", "lane", "status"))
    for row in rows:
        t.add_row(*(Text("" if v is None else str(v)) for v in row))
    console.print(t)


def say(*parts: str | Text) -> None:
    """Print a line made of plain strings (not read as markup) and styled ``Text``."""
    console.print(Text.assemble(*parts), highlight=False)
