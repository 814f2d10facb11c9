"""``laneway worker``: the supervisor restarts dead children and recovers their work at once;
``laneway demo`` proves lane order end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import laneway

APP = textwrap.dedent(
    """
    import os, time
    import laneway
    app = laneway.App(os.environ["T_URL"], namespace="sup", lease_s=60)

    @app.task(name="work")
    def work(i: int) -> None:
        if i == 0 and not os.path.exists(os.environ["T_FLAG"]):
            open(os.environ["T_FLAG"], "w").close()
            time.sleep(30)          # the child is killed while this runs
        with open(os.environ["T_OUT"], "a") as f:
            f.write(f"{i}\\n")
    """
)


def _children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.mark.timeout(60)
def test_supervisor_restarts_a_killed_child_and_its_job_runs_long_before_the_lease(tmp_path: Path) -> None:
    (tmp_path / "supapp.py").write_text(APP)
    env = {
        **os.environ,
        "T_URL": f"sqlite:///{tmp_path / 'q.db'}",
        "T_FLAG": str(tmp_path / "flag"),
        "T_OUT": str(tmp_path / "out"),
        "PYTHONPATH": str(tmp_path),
    }
    os.environ.update({k: env[k] for k in ("T_URL", "T_FLAG", "T_OUT")})
    sys.path.insert(0, str(tmp_path))
    import supapp  # type: ignore[import-not-found]

    supapp.work.enqueue(0)
    sup = subprocess.Popen(
        [sys.executable, "-m", "laneway", "worker", "supapp:app", "-p", "2", "-c", "2", "--grace", "2"],
        cwd=tmp_path,
        env=env,
    )
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "flag").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp_path / "flag").exists(), "job 0 never started"
        rec = supapp.app.backend.list_jobs(status=laneway.Status.RUNNING)[0]
        first_children = _children_of(sup.pid)
        assert len(first_children) == 2
        for pid in first_children:
            os.kill(pid, signal.SIGKILL)  # kill both children: one of them holds job 0
        killed_at = time.monotonic()
        while time.monotonic() < killed_at + 20:
            if (tmp_path / "out").exists() and "0" in (tmp_path / "out").read_text().split():
                break
            time.sleep(0.05)
        assert "0" in (tmp_path / "out").read_text().split()
        assert time.monotonic() - killed_at < 15, "recovered by the supervisor, not by the 60 s lease"
        while time.monotonic() < killed_at + 10 and len(set(_children_of(sup.pid)) - set(first_children)) < 2:
            time.sleep(0.05)
        assert len(set(_children_of(sup.pid)) - set(first_children)) == 2, "both children were restarted"
        job = supapp.app.get_job(rec.id)
        assert job is not None and job.status is laneway.Status.SUCCEEDED and job.attempts == 2
    finally:
        sup.send_signal(signal.SIGTERM)
        sup.wait(15)
        supapp.app.close()
        sys.path.remove(str(tmp_path))
        sys.modules.pop("supapp", None)
    assert sup.returncode == 0


@pytest.mark.timeout(120)
def test_demo_command_runs_lanes_in_order_with_nothing_lost(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "laneway", "demo", "--jobs", "600", "--lanes", "30", "--workers", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout and "0 lost" in result.stdout and "0 out of" in result.stdout
    assert "jobs/s" in result.stdout


def test_demo_runs_exactly_the_jobs_it_announces(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "laneway", "demo", "--jobs", "7", "--lanes", "3", "--workers", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK  7 jobs" in result.stdout  # it ran 6 (7 // 3 per lane) before


def test_demo_refuses_a_memory_url_its_worker_processes_could_not_share(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "laneway", "demo", "--url", "memory://"],
        cwd=tmp_path, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2 and "memory://" in result.stderr


@pytest.mark.timeout(60)
def test_a_terminated_demo_stops_its_workers_and_removes_its_files(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    demo = subprocess.Popen(
        [sys.executable, "-m", "laneway", "demo", "--jobs", "100000", "--lanes", "10", "--workers", "1", "--work-ms", "50"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not (children := _children_of(demo.pid)):
        assert time.monotonic() < deadline, "the demo started no worker"
        time.sleep(0.1)
    time.sleep(1)
    demo.send_signal(signal.SIGTERM)
    assert demo.wait(20) == 128 + signal.SIGTERM
    time.sleep(1)
    assert [c for c in children if os.path.exists(f"/proc/{c}")] == []
    assert list(tmp_path.glob("laneway-*")) == []  # the database and the history are gone


PID_APP = textwrap.dedent(
    """
    import os, time
    import laneway
    app = laneway.App(os.environ["T_URL"], namespace="pids")

    @app.task(name="pid")
    def pid(i: int) -> int:
        time.sleep(0.05)
        return os.getpid()
    """
)


def _pid_app(tmp_path: Path) -> tuple[dict[str, str], laneway.App]:
    (tmp_path / "pidapp.py").write_text(PID_APP)
    url = f"sqlite:///{tmp_path / 'pids.db'}"
    app = laneway.App(url, namespace="pids")
    return {**os.environ, "T_URL": url, "PYTHONPATH": str(tmp_path)}, app


@pytest.mark.timeout(60)
def test_burst_with_several_processes_runs_them_all_and_exits_when_the_queue_is_empty(tmp_path: Path) -> None:
    env, app = _pid_app(tmp_path)
    for i in range(30):
        app.send_task("pid", (i,))
    done = subprocess.run(
        [sys.executable, "-m", "laneway", "worker", "pidapp:app", "--burst", "-p", "3", "-c", "1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=50,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    recs = app.backend.list_jobs(limit=100)
    assert {r.status for r in recs} == {laneway.Status.SUCCEEDED} and len(recs) == 30
    assert len({r.result for r in recs}) == 3  # three processes ran them, not one
    app.close()


@pytest.mark.timeout(30)
def test_a_child_that_cannot_start_stops_the_supervisor_with_exit_code_2(tmp_path: Path) -> None:
    env, app = _pid_app(tmp_path)
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "laneway", "worker", "pidapp:app", "--metrics-port", str(port)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=20,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]  # it used to restart the child for ever
    assert "--metrics-port" in done.stderr and "Traceback" not in done.stderr
    app.close()


@pytest.mark.timeout(30)
def test_metrics_ports_running_past_65535_are_refused_before_any_process_starts(tmp_path: Path) -> None:
    env, app = _pid_app(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "laneway", "worker", "pidapp:app", "-p", "2", "--metrics-port", "65535"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]  # the second child restarted for ever
    assert "65535..65536" in done.stderr and "Traceback" not in done.stderr
    app.close()


def test_start_metrics_server_refuses_a_range_past_the_last_port() -> None:
    from laneway._metrics import start_metrics_server

    with pytest.raises(OSError, match="65535..65536 run past 65535"):  # was OverflowError
        start_metrics_server(65535, tries=2)


@pytest.mark.timeout(60)
def test_a_burst_child_whose_job_exits_0_gives_its_job_back_and_is_restarted(tmp_path: Path) -> None:
    (tmp_path / "quitapp.py").write_text(
        textwrap.dedent(
            """
            import os
            import laneway
            app = laneway.App(os.environ["T_URL"], namespace="quit", lease_s=60)

            @app.task(name="quits", max_attempts=2)
            def quits(i: int) -> None:
                if i == 0:
                    os._exit(0)  # a library that ends the process "cleanly"
            """
        )
    )
    url = f"sqlite:///{tmp_path / 'quit.db'}"
    app = laneway.App(url, namespace="quit")
    jobs = [
        app.send_task("quits", (i,), max_attempts=2) for i in range(3)
    ]  # the task's own is not known here
    done = subprocess.run(
        [sys.executable, "-m", "laneway", "worker", "quitapp:app", "--burst", "-p", "2", "-c", "1"],
        cwd=tmp_path, env={**os.environ, "T_URL": url, "PYTHONPATH": str(tmp_path)},
        capture_output=True, text=True, timeout=50,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    statuses = [j.refresh().status for j in jobs]
    assert statuses == [
        laneway.Status.DEAD,
        laneway.Status.SUCCEEDED,
        laneway.Status.SUCCEEDED,
    ]  # not left running
    app.close()
