"""Two subscriber apps and a publisher in separate processes, with a ``kill -9``.

``shop`` publishes events over many lanes; ``billing`` (regex) and ``mail``
(attributes) each run a supervisor with 2 worker processes; one ``billing`` worker is
killed with SIGKILL while it runs a copy, and its supervisor restarts it. The recorded history of each
subscriber must show exactly its matching events, each lane in order, nothing lost.

Size: ``BUS_SOAK_EVENTS``/``BUS_SOAK_LANES`` (default 1,500 over 100); ``LANEWAY_SOAK=1``
runs the full 10,000 events over 500 lanes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import laneway
from laneway._demo import settle_from_backend
from laneway._history import JobRef, check_history, load_history
from laneway._records import Status
from laneway.bus import copy_id
from tests.conftest import backend_url, fresh_namespace

from . import soak_apps

REPO_ROOT = Path(__file__).resolve().parents[2]
FULL = os.environ.get("LANEWAY_SOAK") == "1"
EVENTS = int(os.environ.get("BUS_SOAK_EVENTS", "10000" if FULL else "1500"))
LANES = int(os.environ.get("BUS_SOAK_LANES", "500" if FULL else "100"))
TIMEOUT_S = 900.0 if FULL else 75.0


@dataclass
class Run:
    url: str
    namespace: str
    history: Path
    env: dict[str, str]


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def run(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Run]:
    url = backend_url(str(request.param), tmp_path)
    namespace = fresh_namespace()
    history = tmp_path / "history"
    env = {
        **os.environ,
        "BUS_SOAK_URL": url,
        "BUS_SOAK_NAMESPACE": namespace,
        "BUS_SOAK_HISTORY": str(history),
    }
    yield Run(url, namespace, history, env)
    app = laneway.App(url, namespace=namespace)
    drop = getattr(app.backend, "drop_namespace", None)
    if callable(drop):
        drop()
    app.close()


def supervisor(run: Run, app: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "laneway", "worker", f"tests.bus.soak_apps:{app}", "-p", "2", "-c", "8",
           "--grace", "5", "--log-level", "ERROR"]  # fmt: skip
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=run.env, start_new_session=True)


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def busy_child(observer: laneway.App, supervisor_pid: int, queue: str) -> int | None:
    """The pid of a worker child that is running a job of ``queue`` right now, if any."""
    running = {r.worker for r in observer.backend.list_jobs(queue=queue, status=Status.RUNNING, limit=1000)}
    for pid in children(supervisor_pid):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if "--worker-id" in args and args[args.index("--worker-id") + 1] in running:
            return pid
    return None


def done(backend: laneway.App, queue: str) -> int:
    return sum(s.succeeded + s.dead for s in backend.backend.stats() if s.queue == queue)


def expected(events: list[dict[str, object]]) -> dict[str, list[JobRef]]:
    """Per subscriber, the copies it must handle: (copy id, lane, seq)."""
    wanted: dict[str, list[JobRef]] = {"billing": [], "mail": []}
    for e in events:
        for app, sub in (("billing", soak_apps.billing), ("mail", soak_apps.mail)):
            if sub.subscriptions[0].matcher.matches(e):
                ref = JobRef(
                    copy_id(str(e["bus_id"]), app, soak_apps.KEYS[app]), str(e["bus_lane"]), int(e["seq"])
                )  # type: ignore[call-overload]
                wanted[app].append(ref)
    return wanted


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def check_subscriber(observer: laneway.App, history: Path, app: str, refs: list[JobRef]) -> None:
    """Exactly the expected copies ran, each lane in order, none lost, one job per copy."""
    # Acks take the backend's finish time (a worker writes its ACK line after the commit,
    # maybe after the lane's next job started elsewhere, or never if it was killed).
    events, repaired = settle_from_backend(load_history(history), refs, observer.backend)
    report = check_history(events, expected=refs)
    print(f"  {app}: {report.summary()}; {repaired} acks read from the backend")
    assert report.ok, report.details(limit=5)
    assert not report.dead and report.jobs == len(refs)
    stats = {s.queue: s for s in observer.backend.stats()}[f"{app}_default"]
    assert stats.succeeded == len(refs) and stats.dead == 0, f"{app}: one job per copy, all done"
    last = observer.get_job(refs[-1].job_id)
    assert last is not None and last.status is Status.SUCCEEDED


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT_S + 180)
def test_two_subscriber_apps_in_processes_get_their_events_in_lane_order_despite_kill_9(run: Run) -> None:
    observer = laneway.App(run.url, namespace=run.namespace)
    procs = {app: supervisor(run, app) for app in ("billing", "mail")}
    started = time.monotonic()
    killed = 0
    try:
        deadline = time.monotonic() + 30
        while {s.app for s in observer.stored_subscriptions()} != {"billing", "mail"}:
            assert time.monotonic() < deadline, "subscriber workers did not register"
            time.sleep(0.1)
        out = run.history.parent / "published.jsonl"
        shop = subprocess.Popen(
            [sys.executable, "-m", "tests.bus.soak_apps", "publish", str(EVENTS), str(LANES), str(out)],
            cwd=REPO_ROOT, env=run.env,
        )  # fmt: skip
        t0 = time.monotonic()
        registered_s = t0 - started
        while killed == 0 and time.monotonic() - t0 < TIMEOUT_S:
            if done(observer, "billing_default") >= EVENTS // 8:
                victim = busy_child(observer, procs["billing"].pid, "billing_default")
                if victim is not None:
                    os.kill(victim, signal.SIGKILL)
                    killed += 1
            time.sleep(0.05)
        assert shop.wait(TIMEOUT_S) == 0
        published_s = time.monotonic() - t0
        events = [json.loads(line) for line in out.read_text().splitlines()]
        want = expected(events)
        while time.monotonic() - t0 < TIMEOUT_S:
            if all(done(observer, f"{a}_default") >= len(want[a]) for a in want):
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - t0
    finally:
        for proc in procs.values():
            stop(proc)
    assert killed == 1 and len(events) == EVENTS
    copies = sum(len(v) for v in want.values())
    print(f"\n{run.url.split(':')[0]}: {EVENTS} events over {LANES} lanes -> {copies} copies "
          f"(billing {len(want['billing'])}, mail {len(want['mail'])}) in {elapsed:.1f} s = "
          f"{EVENTS / elapsed:,.0f} events/s, {(EVENTS + copies) / elapsed:,.0f} jobs/s (fan-outs + copies); "
          f"published in {published_s:.1f} s; workers registered {registered_s:.1f} s after start; "
          "1 billing worker killed")  # fmt: skip
    for app, refs in want.items():
        check_subscriber(observer, run.history / app, app, refs)
    retried = {
        q: sum(1 for r in observer.backend.list_jobs(queue=q, limit=10 * EVENTS) if r.attempts > 1)
        for q in ("laneway.bus", "billing_default", "mail_default")
    }
    print(f"  jobs delivered more than once (the kill): {retried}")
    driver = {s.queue: s for s in observer.backend.stats()}["laneway.bus"]
    assert driver.succeeded == EVENTS and driver.dead == 0
    observer.close()
