"""Worker and helper processes for the fault tests, always reaped.

``Fleet`` starts real ``python -m laneway worker tests.chaos._apps:app`` processes
(plain workers with ``--child``, or the supervisor with ``-p N``), each with its own log
file and in its own process group, and signals them by PID. Closing the fleet SIGCONTs
and SIGKILLs each of those process groups (a supervisor's children included) and waits,
so no test leaves a process behind.

``skew_s`` starts a worker whose ``time.time``/``time.time_ns`` run ``skew_s`` seconds
off, through ``tests/chaos/skew/sitecustomize.py`` on its ``PYTHONPATH``.

``Producer`` enqueues from the test process and records each ENQUEUE; ``ThreadWorkers``
runs workers in threads of the test process (for ``memory://``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from laneway._history import Event, EventKind, HistoryRecorder, JobRef, load_history
from tests.chaos._apps import QUEUE, clock

REPO = Path(__file__).resolve().parents[2]
SKEW_DIR = Path(__file__).resolve().parent / "skew"
APP_REF = "tests.chaos._apps:app"


@dataclass
class Proc:
    """One child process and its log."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)
    group: bool = False
    """Whether it has children of its own (a supervisor) in its process group."""

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def history_name(self) -> str:
        """The ``worker`` its history events carry (see ``_apps``)."""
        return f"w-{self.pid}"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            self.popen.send_signal(sig)

    def wait(self, timeout_s: float) -> int | None:
        """Exit code, or None if still running after ``timeout_s``."""
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Fleet:
    """Processes of one test against one backend namespace.

    Args:
        tmp: directory for logs and the history.
        url, namespace: the backend every process opens.
        env: more ``LANEWAY_CHAOS_*`` settings (timings) for every process.
    """

    def __init__(self, tmp: Path, url: str, namespace: str, env: Mapping[str, str] | None = None) -> None:
        self.tmp = tmp
        self.history = tmp / "history"
        self.history.mkdir(parents=True, exist_ok=True)
        self.ready_dir = tmp / "ready"
        self.ready_dir.mkdir(exist_ok=True)
        self.env = {
            "LANEWAY_CHAOS_READY_DIR": str(self.ready_dir),
            **os.environ,
            "LANEWAY_CHAOS_URL": url,
            "LANEWAY_CHAOS_NAMESPACE": namespace,
            "LANEWAY_CHAOS_HISTORY": str(self.history),
            "PYTHONPATH": str(REPO),
            **(env or {}),
        }
        self.procs: list[Proc] = []

    def __enter__(self) -> Fleet:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def worker(
        self,
        name: str,
        *,
        queues: str = "chaos",
        concurrency: int = 4,
        lease_s: float = 2.0,
        grace_s: float = 5.0,
        processes: int | None = None,
        skew_s: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Proc:
        """Start a worker: a plain one (``--child``), or with ``processes`` a supervisor."""
        cmd = [sys.executable, "-m", "laneway", "worker", APP_REF, "-q", queues, "-c", str(concurrency),
               "--lease", str(lease_s), "--grace", str(grace_s), "--log-level", "WARNING"]  # fmt: skip
        cmd += ["-p", str(processes)] if processes else ["--child", "--worker-id", name]
        extra = dict(env or {})
        if skew_s is not None:
            extra["PYTHONPATH"] = f"{SKEW_DIR}{os.pathsep}{REPO}"
            extra["LANEWAY_TEST_CLOCK_SKEW_S"] = str(skew_s)
        return self.spawn(name, cmd, extra)

    def spawn(self, name: str, cmd: list[str], env: Mapping[str, str] | None = None) -> Proc:
        """Start any command in the repository with the fleet's environment."""
        log = self.tmp / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                cmd, cwd=REPO, env={**self.env, **(env or {})}, stdout=out, stderr=out, start_new_session=True
            )
        proc = Proc(name, popen, log, group="-p" in cmd)
        self.procs.append(proc)
        return proc

    def ready(self) -> set[str]:
        """History names (``w-<pid>``) of every worker process that has started working."""
        return {f"w-{path.name}" for path in self.ready_dir.iterdir()}

    def wait_ready(self, count: int, timeout_s: float = 90) -> set[str]:
        """Wait until ``count`` worker processes have started; returns their history names."""
        wait_until(lambda: len(self.ready()) >= count, timeout_s, f"{count} worker processes to start")
        return self.ready()

    def events(self) -> list[Event]:
        """The history recorded so far by every process."""
        return load_history(self.history)

    def close(self) -> None:
        """SIGCONT, then SIGKILL, the process group of every process started (a
        supervisor's children too), and reap them all."""
        for proc in self.procs:
            if not (proc.alive() or proc.group):
                continue  # reaped, and alone in its group: nothing left to stop
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
        for proc in self.procs:
            proc.wait(10)

    def logs(self) -> str:
        """Every process's log, for failure messages."""
        return "\n".join(f"--- {p.name} (pid {p.pid}) ---\n{p.log_text()[-3000:]}" for p in self.procs)


def wait_until(predicate: object, timeout_s: float, what: str, every_s: float = 0.05) -> float:
    """Poll ``predicate()`` until true; returns seconds waited; fails after ``timeout_s``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if callable(predicate) and predicate():
            return time.monotonic() - start
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class Producer:
    """Enqueues chaos jobs from the test process and records each ENQUEUE.

    ``refs`` lists every job sent as ``(job_id, lane, seq)``: the ``expected`` of the
    history checker.
    """

    def __init__(self, fleet: Fleet, url: str, namespace: str) -> None:
        from tests.chaos import _apps

        self.app = _apps.build(url, namespace)
        self.recorder = HistoryRecorder(fleet.history, worker="producer")
        self.refs: list[JobRef] = []

    def send(self, task: str, lane: str | None, seq: int, *args: object, **options: object) -> str:
        """Enqueue ``task(lane, seq, *args)`` with ``options``; returns the job id."""
        bound = self.app.tasks[task].options(lane=lane, **options)
        job = bound.enqueue(lane, seq, *args)
        self.recorder.record(EventKind.ENQUEUE, job.id, lane, seq, time=clock())
        self.refs.append(JobRef(job.id, lane, seq))
        return job.id

    def send_many(
        self, task: str, lane: str | None, seqs: range, *args: object, **options: object
    ) -> list[str]:
        """Enqueue ``task(lane, seq, *args)`` for every seq in one round trip; returns the ids."""
        bound = self.app.tasks[task].options(lane=lane, **options)
        jobs = bound.enqueue_many([((lane, seq, *args), {}) for seq in seqs])
        at = clock()
        for job, seq in zip(jobs, seqs, strict=True):
            self.recorder.record(EventKind.ENQUEUE, job.id, lane, seq, time=at)
            self.refs.append(JobRef(job.id, lane, seq))
        return [job.id for job in jobs]

    def close(self) -> None:
        self.recorder.close()
        self.app.close()


class ThreadWorkers:
    """Workers of the chaos app in threads of this process (for ``memory://``).

    They share the process-wide memory store of ``url``/``namespace`` with a
    ``Producer`` of the same process, and record into the fleet's history.
    """

    def __init__(self, fleet: Fleet, url: str, namespace: str) -> None:
        from tests.chaos import _apps

        self.app = _apps.build(url, namespace, str(fleet.history))
        self.workers: list[Any] = []
        self.threads: list[threading.Thread] = []

    def start(self, count: int, **settings: Any) -> None:
        """Start ``count`` workers with ``settings`` (``concurrency``, ``lease_s``, ...)."""
        for _ in range(count):
            worker = self.app.worker(QUEUE, **settings)
            thread = threading.Thread(target=worker.run, daemon=True)
            thread.start()
            self.workers.append(worker)
            self.threads.append(thread)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        for thread in self.threads:
            thread.join(30)
        self.workers.clear()
        self.threads.clear()
