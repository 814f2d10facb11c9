"""``laneway bench``: every phase runs on SQLite (no server) and on memory://, and reports numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from laneway._bench import BenchConfig, _pending, build_app, run_bench
from laneway._errors import ConfigError
from laneway.cli import cli


def test_bench_on_sqlite_runs_every_phase(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    res = CliRunner().invoke(
        cli,
        ["bench", "--url", url, "--jobs", "100", "--lanes", "10", "--latency-samples", "5",
         "--timeout", "60", "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    phases = {p["phase"]: p for p in out["phases"]}
    assert list(phases) == ["enqueue", "async", "bulk", "drain", "ordered", "latency"]
    for name in ("enqueue", "async", "bulk", "drain", "ordered"):
        assert phases[name]["rate"] > 0, name
        assert not phases[name]["partial"], name
    assert phases["drain"]["jobs"] == 300  # what the three enqueue phases queued
    assert phases["ordered"]["jobs"] == 100
    assert 0 < phases["latency"]["p50_ms"] <= phases["latency"]["p99_ms"]


def test_bench_table_on_memory_runs_workers_in_process() -> None:
    res = CliRunner().invoke(
        cli,
        ["bench", "--url", "memory://bench-cli", "--jobs", "100", "--lanes", "unique", "--latency-samples", "5",
         "--phases", "bulk,drain,ordered,latency"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    for word in ("enqueue_many", "drain", "ordered", "pickup latency", "jobs/s"):
        assert word in res.output


def test_bench_refuses_unknown_phase_and_pending_work(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["bench", "--url", "memory://x", "--phases", "enqueue,warp"])
    assert res.exit_code == 2
    with pytest.raises(ConfigError):
        BenchConfig(url="memory://x", jobs=0)
    url = f"sqlite:///{tmp_path / 'pending.db'}"
    app, task = build_app(url, "laneway-bench")  # as an interrupted run leaves them
    task.enqueue_many([((), {})] * 20)
    with pytest.raises(ConfigError, match="pending"):
        run_bench(BenchConfig(url=url, jobs=20, phases=["enqueue"]))
    res = run_bench(BenchConfig(url=url, jobs=20, phases=["drain"]))  # a drain runs them
    drain = res.get("drain")
    assert drain is not None and drain.jobs == 20
    assert _pending(app) == 0


def test_a_run_of_enqueue_phases_leaves_no_job_behind(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'leftovers.db'}"
    run_bench(BenchConfig(url=url, jobs=20, phases=["enqueue", "bulk"]))
    app, _ = build_app(url, "laneway-bench")
    assert _pending(app) == 0
    assert app.backend.list_jobs() == []


def test_latency_after_enqueue_phases_without_a_drain_times_only_its_own_jobs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'latency.db'}"
    res = run_bench(BenchConfig(url=url, jobs=50, phases=["enqueue", "latency"], latency_samples=5))
    latency = res.get("latency")
    assert latency is not None
    assert latency.p50_ms is not None and latency.p50_ms > 0  # was -441 ms: the backlog's starts


def test_a_timeout_too_short_for_the_workers_is_a_clear_error_and_the_jobs_can_be_finished(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'short.db'}"
    res = CliRunner().invoke(cli, ["bench", "--url", url, "--jobs", "50", "--phases", "enqueue,drain",
                                   "--timeout", "0.01"])  # fmt: skip
    assert res.exit_code == 2 and "no job finished within 0.01 s" in res.output, res.output
    assert not isinstance(res.exception, RuntimeError)
    res = run_bench(BenchConfig(url=url, jobs=50, phases=["drain"]))  # as the refusal says
    drain = res.get("drain")
    assert drain is not None and drain.jobs == 50


def test_cli_lists_the_same_phases_as_the_bench() -> None:
    from laneway import _bench
    from laneway.cli import _bench as cli_bench

    assert cli_bench.PHASES == tuple(_bench.PHASES)


def test_a_phase_finished_between_two_polls_is_timed_from_worker_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from laneway import _bench

    monkeypatch.setattr(_bench, "_POLL_S", 1.0)  # the first look sees every job done
    res = run_bench(BenchConfig(url="memory://bench-one-poll", jobs=20, phases=["bulk", "drain"]))
    drain = res.get("drain")
    assert drain is not None and drain.jobs == 20
    assert drain.rate is not None and drain.rate > 0
    assert "start-up" in drain.note


def test_an_ordered_drain_timed_with_start_up_is_not_given_as_a_share_of_the_unordered_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from laneway import _bench

    monkeypatch.setattr(_bench, "_POLL_S", 1.0)  # both drains finish before the first look
    res = run_bench(BenchConfig(url="memory://bench-share", jobs=20, phases=["bulk", "drain", "ordered"]))
    ordered = res.get("ordered")
    assert ordered is not None and "start-up" in ordered.note
    assert "% of the unordered drain" not in ordered.note
    assert "not compared" in ordered.note
