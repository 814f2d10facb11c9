"""The namespace's schema: versioned ``.sql`` migrations, applied by laneway itself.

Each file ``sql/NNNN_name.sql`` is migration ``NNNN``. ``migrate`` applies the missing
ones in order, all in one transaction, under an advisory lock keyed by the schema, with
``search_path`` set to the namespace's schema (functions capture it with
``SET search_path FROM CURRENT``), and records each in ``laneway_migrations``. Two
processes starting at once: one migrates, the other waits for the lock and finds the work
done. A database migrated by a newer laneway than this one is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from ..._errors import ConfigError

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
RESERVED_SCHEMAS = frozenset({"public", "information_schema"})
MIGRATIONS_TABLE = "laneway_migrations"


@dataclass(frozen=True, slots=True)
class Migration:
    """One versioned schema change."""

    version: int
    name: str
    text: str


@cache
def migrations() -> tuple[Migration, ...]:
    """Every migration shipped with this laneway, in version order."""
    found = []
    for entry in resources.files(__package__).joinpath("sql").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    return tuple(found)


def latest_version() -> int:
    """The version this laneway's schema is at once fully migrated."""
    return migrations()[-1].version


def check_schema_name(namespace: str) -> str:
    """The schema a namespace lives in: the namespace itself, unless PostgreSQL owns it."""
    if namespace in RESERVED_SCHEMAS or namespace.startswith("pg_"):
        raise ConfigError(f"namespace {namespace!r} names a PostgreSQL system schema; choose another")
    return namespace


def refuse_newer(schema: str, have: int) -> None:
    """Raise ``ConfigError`` when the schema is at a migration this laneway does not know."""
    if have > latest_version():
        raise ConfigError(
            f"schema {schema!r} is at migration {have}, newer than this laneway ({latest_version()}): upgrade laneway"
        )


def installed_version(conn: psycopg.Connection[TupleRow], schema: str) -> int | None:
    """The schema's migration version, or None when laneway has never been installed."""
    found = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", [f"{sql.Identifier(schema).as_string(conn)}.{MIGRATIONS_TABLE}"]
    ).fetchone()
    if not found or not found[0]:
        return None
    query = sql.SQL("SELECT coalesce(max(version), 0) FROM {}.{}").format(
        sql.Identifier(schema), sql.Identifier(MIGRATIONS_TABLE)
    )
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def migrate(conn: psycopg.Connection[TupleRow], schema: str) -> list[int]:
    """Bring ``schema`` up to ``latest_version()``; returns the versions applied.

    ``conn`` must be in autocommit mode (the migration is its own transaction).
    """
    ident = sql.Identifier(schema)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"laneway.migrate.{schema}"])
        _refuse_foreign_schema(conn, schema)
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.{} (version integer PRIMARY KEY, name text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT clock_timestamp())"
            ).format(ident, sql.Identifier(MIGRATIONS_TABLE))
        )
        have = installed_version(conn, schema) or 0
        refuse_newer(schema, have)
        applied = []
        for m in migrations():
            if m.version <= have:
                continue
            conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(ident))
            conn.execute(m.text.encode())
            conn.execute(
                sql.SQL("INSERT INTO {}.{} (version, name) VALUES (%s, %s)").format(
                    ident, sql.Identifier(MIGRATIONS_TABLE)
                ),
                [m.version, m.name],
            )
            applied.append(m.version)
        return applied


def _refuse_foreign_schema(conn: psycopg.Connection[TupleRow], schema: str) -> None:
    """Refuse to install into an existing schema that holds something other than laneway."""
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE c.relname = %s), count(*) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s",
        [MIGRATIONS_TABLE, schema],
    ).fetchone()
    ours, objects = (int(row[0]), int(row[1])) if row else (0, 0)
    if objects and not ours:
        raise ConfigError(
            f"schema {schema!r} already exists and is not a laneway schema; use another namespace"
        )


def drop(conn: psycopg.Connection[TupleRow], schema: str) -> bool:
    """Drop the namespace's schema with everything in it; False if it is not laneway's."""
    with conn.transaction():
        if installed_version(conn, schema) is None:
            return False
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        return True
