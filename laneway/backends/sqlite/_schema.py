"""Creating, versioning, migrating and dropping the tables of one namespace.

``schema.sql`` (beside this module) is the current layout; a fresh namespace gets it in
one transaction. Every later change is a numbered script in ``migrations/`` that moves
a namespace from version ``n - 1`` to ``n``; opening an older file runs the missing
scripts in order, in one ``BEGIN IMMEDIATE`` transaction, so concurrent openers of one
file migrate it exactly once and a crash mid-migration leaves the old version intact.
A file written by a newer laneway is refused rather than misread.

History:
    1: jobs, lanes, leases, counters, ticks, meta.
    2: ``jobs.expires_at`` and its index, for pruning finished jobs past ``result_ttl``.
"""

from __future__ import annotations

import sqlite3
from functools import cache
from importlib import resources

from ..._errors import ConfigError
from ._db import Database

SCHEMA_VERSION = 3
"""The version ``schema.sql`` creates and every migration leads to."""

MIGRATIONS: dict[int, str] = {2: "migrations/v2.sql", 3: "migrations/v3.sql"}
"""Version -> the script (relative to this package) that upgrades ``version - 1`` to it."""

TABLES = ("jobs", "lanes", "leases", "counters", "ticks", "meta", "schema")


@cache
def _script(name: str) -> str:
    """A ``.sql`` file of this package, read once per process."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def statements(script: str, namespace: str) -> list[str]:
    """Split ``script`` into statements, with ``{ns}`` replaced by ``namespace``.

    ``namespace`` must already be validated (it lands inside quoted identifiers).
    """
    out: list[str] = []
    buf: list[str] = []
    for line in script.replace("{ns}", namespace).splitlines():
        buf.append(line)
        text = "\n".join(buf)
        if sqlite3.complete_statement(text):
            out.append(text)
            buf = []
    rest = "\n".join(line for line in buf if not line.strip().startswith("--")).strip()
    if rest:
        raise ValueError(f"incomplete SQL statement at the end of a script: {rest[:80]!r}")
    return out


def current_version(conn: sqlite3.Connection, namespace: str) -> int | None:
    """The namespace's schema version, or None when it has no tables yet."""
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (f"{namespace}_schema",)
    ).fetchone()
    if found is None:
        return None
    row = conn.execute(f'SELECT max(version) FROM "{namespace}_schema"').fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _upgrade(conn: sqlite3.Connection, namespace: str, now: float) -> int:
    version = current_version(conn, namespace)
    if version is None:
        for stmt in statements(_script("schema.sql"), namespace):
            conn.execute(stmt)
        version = SCHEMA_VERSION
        conn.execute(f'INSERT INTO "{namespace}_schema" (version, applied_at) VALUES (?, ?)', (version, now))
        return version
    _refuse_newer(version, namespace)
    while version < SCHEMA_VERSION:
        version += 1
        for stmt in statements(_script(MIGRATIONS[version]), namespace):
            conn.execute(stmt)
        conn.execute(f'INSERT INTO "{namespace}_schema" (version, applied_at) VALUES (?, ?)', (version, now))
    return version


def _refuse_newer(version: int, namespace: str) -> None:
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"namespace {namespace!r} has SQLite schema version {version}, newer than this "
            f"laneway's {SCHEMA_VERSION}: upgrade laneway to use it"
        )


def ensure_schema(db: Database, namespace: str) -> int:
    """Create or migrate the namespace's tables; returns the schema version (current).

    Puts the file in WAL mode first (a setting stored in the file).
    """

    def wal(conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ConfigError(f"SQLite refused WAL mode for {db.settings.path!r} (got {mode!r})")

    db.read(wal, "PRAGMA journal_mode = WAL")
    version = db.read(lambda conn: current_version(conn, namespace), "reading the schema version")
    if version == SCHEMA_VERSION:
        return version
    if version is not None:
        _refuse_newer(version, namespace)
    return db.write(lambda conn, now: _upgrade(conn, namespace, now), "creating or migrating the schema")


def require_schema(db: Database, namespace: str) -> int:
    """The namespace's schema version when it is this laneway's; ``ConfigError`` when the
    namespace has no tables in the file (a misspelt ``--namespace``, say) or needs a
    migration. Creates and changes nothing: for commands that only read or operate."""
    version = db.read(lambda conn: current_version(conn, namespace), "reading the schema version")
    if version is None:
        raise ConfigError(
            f"no laneway namespace {namespace!r} in {db.settings.path!r} (check --namespace; "
            "`laneway migrate` creates one)"
        )
    _refuse_newer(version, namespace)
    if version < SCHEMA_VERSION:
        raise ConfigError(
            f"namespace {namespace!r} has SQLite schema version {version}, older than this "
            f"laneway's {SCHEMA_VERSION}: run `laneway migrate` first"
        )
    return version


def drop_namespace(db: Database, namespace: str) -> None:
    """Drop every table (and with them every index) of the namespace, atomically."""

    def drop(conn: sqlite3.Connection, _now: float) -> None:
        for table in TABLES:
            conn.execute(f'DROP TABLE IF EXISTS "{namespace}_{table}"')

    db.write(drop, "dropping the namespace")
