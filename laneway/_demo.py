"""The demo and the chaos run: producers, worker processes, a progress bar, a verdict.

Producers enqueue ``jobs`` over ``lanes`` (each lane owned by one producer thread, so
its send order is defined); ``workers`` worker processes run them; with ``kills`` > 0
random workers are killed with SIGKILL during the run and restarted. At the end the
recorded history is checked: nothing lost, nothing out of order, no stale ack accepted.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ._app import App
from ._history import EventKind, HistoryRecorder, JobRef, Report, check_history, load_history


@dataclass
class RunConfig:
    """Sizes and timings of one demo or chaos run."""

    url: str
    namespace: str
    jobs: int = 5000
    lanes: int = 100
    workers: int = 3
    concurrency: int = 8
    producers: int = 2
    work_ms: float = 1.0
    kills: int = 0
    kill_every_s: float = 0.5
    lease_s: float = 10.0
    timeout_s: float = 600.0
    history_dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="laneway-history-"))


@dataclass
class RunResult:
    """What a run did and what the checker found."""

    report: Report
    elapsed_s: float
    jobs: int
    kills: int
    restarts: int

    @property
    def throughput(self) -> float:
        return self.jobs / self.elapsed_s if self.elapsed_s else 0.0


class _Workers:
    """Worker processes started and restarted by the run itself (so it can kill them)."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.env = {
            **os.environ,
            "LANEWAY_DEMO_URL": cfg.url,
            "LANEWAY_DEMO_NAMESPACE": cfg.namespace,
            "LANEWAY_DEMO_HISTORY": cfg.history_dir,
            "LANEWAY_DEMO_WORK_MS": str(cfg.work_ms),
            "LANEWAY_DEMO_LEASE_S": str(cfg.lease_s),
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        self.restarts = 0

    def start(self, index: int) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "laneway", "worker", "laneway._demo_app:app", "-q", "demo",
               "-c", str(self.cfg.concurrency), "--child", "--worker-id", f"demo-{index}-{self.restarts}",
               "--log-level", "ERROR", "--grace", "5"]  # fmt: skip
        return subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL)

    def start_all(self) -> None:
        self.procs = [self.start(i) for i in range(self.cfg.workers)]

    def kill_one(self) -> None:
        i = random.randrange(len(self.procs))
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()
        self.restarts += 1
        self.procs[i] = self.start(i)

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _produce(app: App, cfg: RunConfig, lanes: list[int], per_lane: int, refs: list[JobRef], lock: threading.Lock) -> None:
    from ._demo_app import TASK

    task = app.tasks[TASK]
    recorder = HistoryRecorder(cfg.history_dir, worker=f"producer-{threading.get_ident()}")
    bound = {lane: task.options(lane=f"lane-{lane}") for lane in lanes}
    try:
        for seq in range(per_lane):
            for lane in lanes:
                name = f"lane-{lane}"
                job = bound[lane].enqueue(name, seq)
                recorder.record(EventKind.ENQUEUE, job.id, name, seq, time=app.backend.now())
                with lock:
                    refs.append(JobRef(job.id, name, seq))
    finally:
        recorder.close()


def run(cfg: RunConfig, console: Console | None = None) -> RunResult:
    """Run the demo (or chaos run with ``cfg.kills``) and check its history."""
    console = console or Console()
    os.environ.update({"LANEWAY_DEMO_URL": cfg.url, "LANEWAY_DEMO_NAMESPACE": cfg.namespace})
    from . import _demo_app

    app = _demo_app.app
    per_lane = max(1, cfg.jobs // cfg.lanes)
    total = per_lane * cfg.lanes
    refs: list[JobRef] = []
    lock = threading.Lock()
    workers = _Workers(cfg)
    start = time.monotonic()
    workers.start_all()
    owners = [list(range(cfg.lanes))[i :: cfg.producers] for i in range(cfg.producers)]
    producers = [threading.Thread(target=_produce, args=(app, cfg, own, per_lane, refs, lock)) for own in owners]
    for t in producers:
        t.start()
    try:
        _watch(app, cfg, workers, total, console)
    finally:
        workers.stop_all()
        for t in producers:
            t.join()
    elapsed = time.monotonic() - start
    report = check_history(load_history(cfg.history_dir), expected=refs)
    return RunResult(report, elapsed, total, cfg.kills, workers.restarts)


def _finished(app: App) -> int:
    return sum(s.succeeded + s.dead for s in app.backend.stats() if s.queue == "demo")


def _watch(app: App, cfg: RunConfig, workers: _Workers, total: int, console: Console) -> None:
    kills_done = 0
    next_kill = time.monotonic() + cfg.kill_every_s
    deadline = time.monotonic() + cfg.timeout_s
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(f"{total} jobs over {cfg.lanes} lanes, {cfg.workers} workers", total=total)
        while (done := _finished(app)) < total and time.monotonic() < deadline:
            progress.update(bar, completed=done)
            if kills_done < cfg.kills and time.monotonic() >= next_kill:
                workers.kill_one()
                kills_done += 1
                next_kill = time.monotonic() + cfg.kill_every_s
            time.sleep(0.1)
        progress.update(bar, completed=_finished(app))
    cfg.kills = kills_done


def print_result(result: RunResult, console: Console) -> None:
    """The verdict in words and numbers."""
    r = result.report
    ok = r.ok and not r.lost
    mark = "[green]OK[/green]" if ok else "[red]FAILED[/red]"
    console.print(f"{mark}  {r.summary()}")
    console.print(
        f"{result.jobs} jobs in {result.elapsed_s:.1f} s = [bold]{result.throughput:,.0f} jobs/s[/bold]"
        + (f"; {result.kills} workers killed with SIGKILL and restarted" if result.kills else "")
    )
    if not ok:
        console.print(r.details(limit=5), markup=False)
