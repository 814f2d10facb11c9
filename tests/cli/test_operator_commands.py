"""``laneway stats``, ``jobs``, ``dead`` and ``migrate`` on a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import laneway
from laneway.cli import cli


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ops.db'}"


def _app_with_jobs(url: str) -> tuple[laneway.App, list[laneway.Job]]:
    app = laneway.App(url, namespace="ops")

    @app.task(name="boom", max_attempts=1)
    def boom(i: int) -> None:
        raise RuntimeError(f"boom {i}")

    @app.task(name="fine")
    def fine() -> None: ...

    jobs = [boom.options(lane="acct-1").enqueue(i) for i in range(2)] + [fine.enqueue()]
    app.worker(idle_wait_s=0.01).run(burst=True)
    return app, jobs


def _run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_stats_shows_counts_per_queue_and_as_json(url: str) -> None:
    app, _ = _app_with_jobs(url)
    assert "default" in _run("stats", "--url", url, "-n", "ops")
    data = json.loads(_run("stats", "--url", url, "-n", "ops", "--json"))
    assert data[0]["queue"] == "default" and data[0]["dead"] == 2 and data[0]["succeeded"] == 1
    app.close()


def test_jobs_list_and_show_give_arguments_error_and_traceback(url: str) -> None:
    app, jobs = _app_with_jobs(url)
    listed = json.loads(_run("jobs", "list", "--url", url, "-n", "ops", "--status", "dead", "--json"))
    assert {j["id"] for j in listed} == {jobs[0].id, jobs[1].id}
    shown = json.loads(_run("jobs", "show", jobs[0].id, "--url", url, "-n", "ops", "--json"))
    assert (
        shown["payload"]["a"] == [0] and "boom 0" in shown["error"] and "RuntimeError" in shown["traceback"]
    )
    assert "traceback" in _run("jobs", "show", jobs[0].id, "--url", url, "-n", "ops")
    app.close()


def test_dead_retry_and_purge_act_on_the_dead_letter_list(url: str) -> None:
    app, jobs = _app_with_jobs(url)
    assert jobs[0].id in _run("dead", "list", "--url", url, "-n", "ops")
    _run("dead", "retry", jobs[0].id, "--url", url, "-n", "ops")
    assert jobs[0].refresh().status is laneway.Status.QUEUED
    assert "purged 1" in _run("dead", "purge", "--yes", "--url", url, "-n", "ops")
    assert app.get_job(jobs[1].id) is None
    app.close()


def test_dead_retry_all_with_no_dead_jobs_says_so_and_succeeds(url: str) -> None:
    app, _ = _app_with_jobs(url)
    _run("dead", "retry", "--all", "--url", url, "-n", "ops")
    assert "no dead jobs" in _run("dead", "retry", "--all", "--url", url, "-n", "ops")  # was exit 2
    missing = CliRunner().invoke(cli, ["dead", "retry", "--url", url, "-n", "ops"])
    assert missing.exit_code == 2 and "give job ids or --all" in missing.output
    app.close()


def test_jobs_cancel_reports_what_was_not_possible(url: str) -> None:
    app, jobs = _app_with_jobs(url)
    result = CliRunner().invoke(cli, ["jobs", "cancel", jobs[2].id, "--url", url, "-n", "ops"])
    assert result.exit_code == 1 and "not possible" in result.output
    app.close()


def test_migrate_reports_a_current_schema(url: str) -> None:
    assert "is current" in _run("migrate", "--url", url, "-n", "ops")


def test_stored_text_that_looks_like_markup_is_printed_as_it_is(url: str) -> None:
    app = laneway.App(url, namespace="ops")

    @app.task(name="odd", max_attempts=1)
    def odd() -> None:
        raise ValueError("bad [/] in [red]input[/red]")

    job = odd.options(lane="tenant[acme]").enqueue()
    app.worker(idle_wait_s=0.01).run(burst=True)
    listed = _run("jobs", "list", "--url", url, "-n", "ops")  # rich used to raise MarkupError
    assert "tenant[acme]" in listed and "[red]input[/red]" in listed
    assert "tenant[acme]" in _run("jobs", "show", job.id, "--url", url, "-n", "ops")
    assert "[/]" in _run("dead", "list", "--url", url, "-n", "ops")
    app.close()


def test_a_password_in_the_url_is_never_printed(url: str) -> None:
    shown = _run("stats", "--url", "memory://admin:hunter2@localhost", "-n", "ops")
    assert "hunter2" not in shown and "admin:***@localhost" in shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        (
            "postgresql://u@h/db?password=pw&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
        ("redis://h/0?password=pw", "redis://h/0?password=***"),
        ("sqlite:///jobs.db", "sqlite:///jobs.db"),
    ],
)
def test_shown_urls_hide_passwords_and_keep_the_rest(url: str, shown: str) -> None:
    from laneway.backends import shown_url

    assert shown_url(url) == shown
