"""Running ``-p N`` worker processes and restarting any that die.

The supervisor starts each child as ``python -m laneway worker ... --child`` with a
worker id it chooses, so when a child dies it can recover that child's leases at
once (``backend.sweep(worker=...)``) instead of waiting for them to expire, then start
a new child. A child that keeps dying young is restarted with a growing delay (no
crash loop). A child that exits with ``EX_CONFIG`` (it cannot run with its options)
ends the supervision with exit code 2 instead; any other exit code, a job's ``os._exit(2)``
included, is a crash and restarted. With ``burst``, a child that exits 0 has found the
queues empty and is not replaced, unless it held jobs (a job that called ``os._exit(0)``):
those go back and it is restarted; the supervisor ends when all are done. SIGTERM/SIGINT
are passed on to the children; those still alive after ``grace_s + 2`` seconds are killed.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from types import FrameType

from ._app import App

log = logging.getLogger("laneway.supervisor")
_YOUNG_S = 2.0
_MAX_RESTART_DELAY_S = 10.0
EX_CONFIG = 78  # sysexits.h: a child that cannot run with its options; restarting cannot help
USAGE_ERROR = 2  # what the supervisor then exits with, as for bad options of its own


@dataclass
class _Child:
    index: int
    generation: int
    proc: subprocess.Popen[bytes]
    worker_id: str
    started: float
    quick_deaths: int = 0
    restart_at: float | None = None
    """Set once the child has died: when its successor starts."""


class Supervisor:
    """Keeps ``processes`` worker children running until told to stop."""

    def __init__(
        self, app: App, child_args: list[str], processes: int, grace_s: float, *, burst: bool = False
    ) -> None:
        self.app = app
        self.child_args = child_args
        self.processes = processes
        self.grace_s = grace_s
        self.burst = burst
        self.prefix = f"{socket.gethostname()}:{os.getpid()}"
        self.children: dict[int, _Child] = {}
        self.stopping = False
        self.restarts = 0
        self.exit_code = 0

    def _spawn(self, index: int, generation: int, quick_deaths: int = 0) -> _Child:
        worker_id = f"{self.prefix}:w{index}.{generation}"
        cmd = [
            sys.executable,
            "-m",
            "laneway",
            "worker",
            *self.child_args,
            "--child",
            "--worker-id",
            worker_id,
        ]
        proc = subprocess.Popen(cmd)
        return _Child(index, generation, proc, worker_id, time.monotonic(), quick_deaths)

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT; returns the process exit code."""
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for i in range(self.processes):
                self.children[i] = self._spawn(i, 0)
            while not self.stopping and self.children:
                self._reap()
                time.sleep(0.1)
            self._shutdown()
            return self.exit_code
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("supervisor: signal %s, stopping %d children", signum, len(self.children))
        self.stopping = True

    def _reap(self) -> None:
        """Recover the work of children that died, and start their successors when due."""
        now = time.monotonic()
        for index, child in list(self.children.items()):
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self.restarts += 1
                    self.children[index] = self._spawn(index, child.generation + 1, child.quick_deaths)
                continue
            code = child.proc.poll()
            if code is None:
                continue
            recovered = self._recover(child, code)
            if code == 0 and self.burst and not recovered:  # found the queues empty: done
                del self.children[index]
                continue
            # Only a first child's EX_CONFIG is fatal: a successor may meet a passing clash.
            if code == EX_CONFIG and child.generation == 0:
                log.error("worker %s cannot run with these options; stopping", child.worker_id)
                del self.children[index]
                self.exit_code, self.stopping = USAGE_ERROR, True
                return
            young = now - child.started < _YOUNG_S
            child.quick_deaths = child.quick_deaths + 1 if young else 0
            delay = min(_MAX_RESTART_DELAY_S, 0.25 * (2**child.quick_deaths)) if child.quick_deaths else 0.0
            if delay:
                log.warning("worker %s keeps dying; restarting in %.1f s", child.worker_id, delay)
            child.restart_at = now + delay

    def _recover(self, child: _Child, code: int) -> int:
        """Give back the leases ``child`` held (a clean exit holds none); returns how many."""
        try:
            recovered = self.app.backend.sweep(worker=child.worker_id)
        except Exception:
            log.exception("could not recover the leases of %s", child.worker_id)
            return 0
        if code or recovered:  # a burst child's clean exit is not news
            log.warning(
                "worker %s exited with %s; %d jobs it held went back", child.worker_id, code, recovered
            )
        return recovered

    def _shutdown(self) -> None:
        alive = [c for c in self.children.values() if c.restart_at is None]
        for child in alive:
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s + 2
        for child in alive:
            try:
                child.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker %s did not stop in time; killing it", child.worker_id)
                child.proc.kill()
                child.proc.wait()
                self._recover(child, -9)
