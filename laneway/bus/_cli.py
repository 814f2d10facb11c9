"""``laneway bus``: the subscription registry as operators see it.

```
laneway bus list [--app NAME] [--json]      apps, keys, queues, tasks, matchers
laneway bus unsubscribe APP [KEY]           remove a stored subscription (or all of APP's)
```
"""

from __future__ import annotations

import time
from typing import Any

import click

from ..cli._common import backend_options, console, emit_json, open_app, table
from . import _registry


@click.group("bus")
def bus_group() -> None:
    """The event bus: who subscribes to what."""


def _age(written_at: float) -> str:
    seconds = max(0.0, time.time() - written_at)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


@bus_group.command("list")
@backend_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
@click.option("--app", "app_name", default=None, help="Only this subscribing app.")
def list_command(url: str, namespace: str, as_json: bool, app_name: str | None) -> None:
    """Show the stored subscriptions: app, key, queue, task and matcher."""
    app = open_app(url, namespace)
    try:
        entries = [e for e in _registry.load_entries(app.backend) if app_name in (None, e.app)]
    finally:
        app.close()
    if as_json:
        emit_json([_entry_json(e) for e in entries])
        return
    if not entries:
        console.print("no subscriptions stored (they are stored when a subscriber's worker starts)")
        return
    rows = [
        (e.app, s.key, s.queue, s.task, s.matcher.label, _age(e.written_at))
        for e in entries
        for s in sorted(e.subscriptions, key=lambda s: s.key)
    ]
    table("bus subscriptions", ["app", "key", "queue", "task", "matcher", "stored"], rows)


def _entry_json(entry: _registry.AppEntry) -> dict[str, Any]:
    return {
        "app": entry.app,
        "written_at": entry.written_at,
        "subscriptions": [
            {**s.to_json(), "label": s.matcher.label}
            for s in sorted(entry.subscriptions, key=lambda s: s.key)
        ],
    }


@bus_group.command("unsubscribe")
@backend_options
@click.argument("app_name", metavar="APP")
@click.argument("key", required=False)
def unsubscribe_command(url: str, namespace: str, app_name: str, key: str | None) -> None:
    """Remove subscription KEY of APP from the registry, or all of APP's without KEY.

    A worker of APP that starts later stores its subscriptions again.
    """
    app = open_app(url, namespace)
    try:
        removed = _registry.remove(app.backend, app_name, key)
    finally:
        app.close()
    if not removed:
        what = f"subscription {key!r}" if key else "subscriptions"
        raise click.ClickException(f"app {app_name!r} has no stored {what}")
    console.print(f"removed {removed} subscription(s) of {app_name!r}", markup=False, highlight=False)
