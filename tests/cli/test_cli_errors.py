"""Bad command-line input ends the command at once with a one-line error and exit code 2
(a backend that cannot be reached: exit code 1), never a traceback or a supervisor that
restarts children which cannot start."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest

import laneway
from tests.conftest import POSTGRES_URL, fresh_namespace, require_server

APP = textwrap.dedent(
    """
    import laneway
    app = laneway.App("memory://cli-errors")

    @app.task(name="t")
    def t() -> None: ...
    """
)


def _laneway(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "cliapp.py").write_text(APP)
    return subprocess.run(
        [sys.executable, "-m", "laneway", *args], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["worker", "cliapp:app", "-c", "0"], "--concurrency"),
        (["worker", "cliapp:app", "-p", "0"], "--processes"),
        (["worker", "cliapp:app", "--batch", "0", "--burst"], "--batch"),
        (["worker", "cliapp:app", "-q", "bad queue", "-p", "2"], "--queues"),
        (["worker", "cliapp:app", "--log-level", "LOUD"], "--log-level"),
        (["worker", "cliapp:app", "--metrics-port", "99999"], "--metrics-port"),
        (["worker", "cliapp:app", "--lease", "0"], "--lease"),
        (["stats", "--url", "bogus://x"], "unknown backend URL scheme"),
        (["jobs", "list", "--url", "memory://x", "--limit", "-1"], "--limit"),
        (["demo", "--jobs", "0"], "--jobs"),
        (["demo", "--url", "bogus://x"], "--url"),
        (["bench", "--url", "memory://x", "--latency-samples", "0"], "--latency-samples"),
    ],
)
def test_bad_input_is_a_one_line_usage_error(tmp_path: Path, args: list[str], named: str) -> None:
    res = _laneway(tmp_path, *args)
    assert res.returncode == 2, res.stderr
    assert named in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("args", [["-q", "default,"], ["--log-level", "warn"], ["--log-level", "notset"]])
def test_input_logging_and_the_worker_accept_is_accepted(tmp_path: Path, args: list[str]) -> None:
    res = _laneway(tmp_path, "worker", "cliapp:app", "--burst", *args)
    assert res.returncode == 0, res.stderr


def test_a_backend_that_cannot_be_reached_is_a_one_line_error(tmp_path: Path) -> None:
    res = _laneway(tmp_path, "jobs", "list", "--url", "redis://127.0.0.1:1/0")  # nothing listens on port 1
    assert res.returncode == 1, res.stderr
    assert "cannot open the backend" in res.stderr
    assert "Traceback" not in res.stderr


def test_reading_a_misspelt_sqlite_path_is_refused_and_creates_nothing(tmp_path: Path) -> None:
    res = _laneway(tmp_path, "stats", "--url", "sqlite:///typo.db")
    assert res.returncode == 2 and "no SQLite database" in res.stderr
    assert not (tmp_path / "typo.db").exists()
    res = _laneway(tmp_path, "migrate", "--url", "sqlite:///new.db")  # migrate creates one
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "new.db").exists()
    assert _laneway(tmp_path, "stats", "--url", "sqlite:///new.db").returncode == 0


def test_reading_a_postgres_namespace_never_migrated_is_refused_and_creates_nothing(tmp_path: Path) -> None:
    require_server(POSTGRES_URL, "PostgreSQL")
    ns = fresh_namespace()
    res = _laneway(tmp_path, "jobs", "list", "--url", POSTGRES_URL, "--namespace", ns)
    assert res.returncode == 2 and f"no laneway namespace '{ns}'" in res.stderr, res.stderr
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        exists = "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s"
        assert conn.execute(exists, [ns]).fetchone() == (0,)
        try:
            assert _laneway(tmp_path, "migrate", "--url", POSTGRES_URL, "--namespace", ns).returncode == 0
            assert _laneway(tmp_path, "stats", "--url", POSTGRES_URL, "--namespace", ns).returncode == 0
            conn.execute(
                f'DELETE FROM "{ns}".laneway_migrations WHERE version = (SELECT max(version) FROM "{ns}".laneway_migrations)'
            )
            res = _laneway(tmp_path, "stats", "--url", POSTGRES_URL, "--namespace", ns)
            assert res.returncode == 2 and "run `laneway migrate`" in res.stderr, res.stderr
            conn.execute(f"INSERT INTO \"{ns}\".laneway_migrations (version, name) VALUES (9999, 'future')")
            res = _laneway(tmp_path, "stats", "--url", POSTGRES_URL, "--namespace", ns)
            assert res.returncode == 2 and "upgrade laneway" in res.stderr, res.stderr
        finally:
            conn.execute(f'DROP SCHEMA IF EXISTS "{ns}" CASCADE')


def test_a_read_only_postgres_role_can_run_the_read_commands(tmp_path: Path) -> None:
    require_server(POSTGRES_URL, "PostgreSQL")
    ns, role = fresh_namespace(), "ro_" + fresh_namespace()
    ro_url = POSTGRES_URL.replace("postgres@", f"{role}@", 1)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        try:
            assert _laneway(tmp_path, "migrate", "--url", POSTGRES_URL, "--namespace", ns).returncode == 0
            conn.execute(f'CREATE ROLE "{role}" LOGIN')
            conn.execute(f'GRANT USAGE ON SCHEMA "{ns}" TO "{role}"')
            conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{ns}" TO "{role}"')
            app = laneway.App(POSTGRES_URL, namespace=ns)
            app.send_task("t", lane="a", delay=0.1)  # due, not promoted yet: stats used to promote it
            app.close()
            time.sleep(0.3)
            for command in (["stats"], ["jobs", "list"], ["dead", "list"]):
                res = _laneway(tmp_path, *command, "--url", ro_url, "--namespace", ns)
                assert res.returncode == 0, (command, res.stderr)
        finally:
            conn.execute(f'DROP SCHEMA IF EXISTS "{ns}" CASCADE')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_a_role_the_backend_refuses_gets_one_line_not_a_traceback(tmp_path: Path) -> None:
    require_server(POSTGRES_URL, "PostgreSQL")
    ns, role = fresh_namespace(), "np_" + fresh_namespace()
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        try:
            assert _laneway(tmp_path, "migrate", "--url", POSTGRES_URL, "--namespace", ns).returncode == 0
            conn.execute(f'CREATE ROLE "{role}" LOGIN')
            conn.execute(f'GRANT USAGE ON SCHEMA "{ns}" TO "{role}"')  # and no SELECT
            url = POSTGRES_URL.replace("postgres@", f"{role}@", 1)
            res = _laneway(tmp_path, "jobs", "list", "--url", url, "--namespace", ns)
            assert res.returncode == 1, res.stderr
            assert "InsufficientPrivilege: permission denied" in res.stderr and "Traceback" not in res.stderr
        finally:
            conn.execute(f'DROP SCHEMA IF EXISTS "{ns}" CASCADE')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')
