"""The demo and the chaos run: producers, worker processes, a progress bar, a verdict.

Producers enqueue ``jobs`` over ``lanes`` (each lane owned by one producer thread, so
its send order is defined); ``workers`` worker processes run them; with ``kills`` > 0,
a random worker that has claimed work is killed with SIGKILL and restarted at evenly
spaced points of the run's progress, at least ``kill_every_s`` apart. At the end the
recorded history is checked: nothing lost, nothing out of order, no stale ack accepted,
and no job ran twice unless it was in flight on a killed worker.

Before checking, each job's final event is set to the time the backend applied it, and
final events a ``kill -9`` kept out of the record are rebuilt from the backend and
counted (see :func:`settle_from_backend`). Jobs that were claimed by a killed worker
and never finished by it are *orphans*; the time from the kill to the next claim of the
job by anyone is its *re-lease time*, bounded by the lease plus the sweep interval (no
supervisor hands them back early here, so this is the expiry path).
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
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ._app import App
from ._history import Event, EventKind, HistoryRecorder, JobRef, Report, check_history, load_history
from ._records import Status
from .backends import Backend

_OUTCOMES = frozenset({EventKind.ACK, EventKind.ACK_REFUSED, EventKind.NACK, EventKind.DEAD})


@dataclass
class RunConfig:
    """Sizes and timings of one demo or chaos run.

    ``sweep_s`` is how often each worker looks for expired leases; a killed worker's jobs
    are claimed again within about ``lease_s + sweep_s``. ``clock`` is ``"backend"`` or
    ``"local"`` (see ``laneway._demo_app``).
    """

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
    sweep_s: float = 1.0
    timeout_s: float = 600.0
    clock: str = "backend"
    history_dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="laneway-history-"))


@dataclass(frozen=True)
class Orphan:
    """A job a killed worker held: when the worker died, and when the job was claimed again."""

    job_id: str
    worker: str
    claimed_at: float
    killed_at: float
    reclaimed_at: float | None

    @property
    def release_s(self) -> float | None:
        """Seconds from the kill to the next claim (None if it was never claimed again)."""
        return None if self.reclaimed_at is None else self.reclaimed_at - self.killed_at


@dataclass
class RunResult:
    """What a run did and what the checker found."""

    report: Report
    elapsed_s: float
    jobs: int
    kills: int
    restarts: int
    orphans: list[Orphan] = field(default_factory=list)
    repaired: int = 0
    """Final events the history lacked (worker killed right after its ack), rebuilt from the backend."""

    @property
    def throughput(self) -> float:
        return self.jobs / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def max_release_s(self) -> float | None:
        """The longest orphan re-lease time, or None without orphans."""
        times = [o.release_s for o in self.orphans if o.release_s is not None]
        return max(times) if times else None

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing out of order, no stale or double ack, no stray duplicate."""
        return self.report.ok


class _Workers:
    """Worker processes started and restarted by the run itself (so it can kill them)."""

    def __init__(self, cfg: RunConfig, clock: Callable[[], float]) -> None:
        self.cfg = cfg
        self.clock = clock
        self.env = {
            **os.environ,
            "LANEWAY_DEMO_URL": cfg.url,
            "LANEWAY_DEMO_NAMESPACE": cfg.namespace,
            "LANEWAY_DEMO_HISTORY": cfg.history_dir,
            "LANEWAY_DEMO_WORK_MS": str(cfg.work_ms),
            "LANEWAY_DEMO_LEASE_S": str(cfg.lease_s),
            "LANEWAY_DEMO_SWEEP_S": str(cfg.sweep_s),
            "LANEWAY_DEMO_CLOCK": cfg.clock,
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        self.restarts = 0
        self.kills: list[tuple[str, float]] = []
        """(history name of the killed worker, time of the kill on the history's clock)."""

    def start(self, index: int) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "laneway", "worker", "laneway._demo_app:app", "-q", "demo",
               "-c", str(self.cfg.concurrency), "--child", "--worker-id", f"demo-{index}-{self.restarts}",
               "--log-level", "ERROR", "--grace", "5"]  # fmt: skip
        return subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL)

    def start_all(self) -> None:
        self.procs = [self.start(i) for i in range(self.cfg.workers)]

    def working(self) -> list[int]:
        """Workers that have claimed work (their history file exists): a worker still
        starting up holds nothing, and killing it would test nothing."""
        names = {path.name.split(".", 2)[0] for path in Path(self.cfg.history_dir).glob("worker-*")}
        return [i for i, p in enumerate(self.procs) if f"worker-{p.pid}" in names]

    def kill_one(self) -> bool:
        """SIGKILL a random working worker and start another; False when none works yet."""
        candidates = self.working()
        if not candidates:
            return False
        i = random.choice(candidates)
        victim = self.procs[i]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        self.kills.append((f"worker-{victim.pid}", self.clock()))
        self.restarts += 1
        self.procs[i] = self.start(i)
        return True

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


def _produce(
    app: App,
    cfg: RunConfig,
    clock: Callable[[], float],
    lanes: list[int],
    per_lane: list[int],
    refs: list[JobRef],
    lock: threading.Lock,
    stop: threading.Event,
) -> None:
    from ._demo_app import TASK

    task = app.tasks[TASK]
    recorder = HistoryRecorder(cfg.history_dir, worker=f"producer-{threading.get_ident()}")
    bound = {lane: task.options(lane=f"lane-{lane}") for lane in lanes}
    try:
        for seq in range(max((per_lane[lane] for lane in lanes), default=0)):
            if stop.is_set():  # the run was interrupted (Ctrl-C, SIGTERM)
                return
            for lane in lanes:
                if seq >= per_lane[lane]:
                    continue
                name = f"lane-{lane}"
                job = bound[lane].enqueue(name, seq)
                recorder.record(EventKind.ENQUEUE, job.id, name, seq, time=clock())
                with lock:
                    refs.append(JobRef(job.id, name, seq))
    finally:
        recorder.close()


def run(cfg: RunConfig, console: Console | None = None) -> RunResult:
    """Run the demo (or chaos run with ``cfg.kills``) and check its history."""
    from ._demo_app import build_app, local_clock

    console = console or Console()
    app = build_app(cfg.url, cfg.namespace, lease_s=cfg.lease_s)
    clock: Callable[[], float] = local_clock if cfg.clock == "local" else app.backend.now
    # exactly cfg.jobs jobs: the first jobs % lanes lanes take one more
    per_lane = [cfg.jobs // cfg.lanes + (lane < cfg.jobs % cfg.lanes) for lane in range(cfg.lanes)]
    total = cfg.jobs
    refs: list[JobRef] = []
    lock = threading.Lock()
    stop = threading.Event()
    workers = _Workers(cfg, clock)
    start = time.monotonic()
    try:
        workers.start_all()
        owners = [list(range(cfg.lanes))[i :: cfg.producers] for i in range(cfg.producers)]
        producers = [
            threading.Thread(target=_produce, args=(app, cfg, clock, own, per_lane, refs, lock, stop))
            for own in owners
        ]
        for t in producers:
            t.start()
        try:
            _watch(app, cfg, workers, total, console)
        finally:
            stop.set()
            workers.stop_all()
            for t in producers:
                t.join()
        elapsed = time.monotonic() - start
        events, repaired = settle_from_backend(load_history(cfg.history_dir), refs, app.backend)
    finally:
        app.close()
    orphans = find_orphans(events, workers.kills)
    report = check_history(events, expected=refs, allow_duplicates_for={o.job_id for o in orphans})
    return RunResult(report, elapsed, total, len(workers.kills), workers.restarts, orphans, repaired)


FINISHED_AT_RESOLUTION_S = 0.001
"""The coarsest clock of a backend: SQLite's, in whole milliseconds."""


def settle_from_backend(
    events: Sequence[Event], refs: Iterable[JobRef], backend: Backend
) -> tuple[list[Event], int]:
    """The history with each job's final event at the time the backend applied it.

    A worker writes its ACK line after ``finish`` returns, which can be later than the
    next job of the lane starting in another process; so the one accepted ACK (or DEAD)
    of a job takes the backend's ``finished_at``. A final event the history lacks is
    rebuilt when the backend's record is final, at ``finished_at``:

    - a success whose ack the worker recorded as refused because ``finish`` raised (the
      connection died after the backend committed) becomes that ACK, when it carries the
      token of the job's last claim before ``finished_at`` (fencing accepts no other);
    - otherwise (the worker was killed between the commit and its line, or a sweep sent
      the job dead) the event is added with the token and worker of that last claim,
      provided, for a success, that the handler recorded its EFFECT: a job the backend
      calls succeeded that never ran stays lost.

    Backend times can be coarser than the history's (SQLite keeps whole milliseconds), so
    a final event is never put before the claim it answers: its time is the later of
    ``finished_at`` and that claim's time, and claims up to ``FINISHED_AT_RESOLUTION_S``
    after ``finished_at`` count as before it.

    Returns the events and how many final events were rebuilt.
    """
    finals: dict[str, list[int]] = defaultdict(list)
    refused: dict[str, list[int]] = defaultdict(list)
    effects: set[str] = set()
    claims: dict[str, list[Event]] = defaultdict(list)
    for i, e in enumerate(events):
        if e.kind in (EventKind.ACK, EventKind.DEAD):
            finals[e.job_id].append(i)
        elif e.kind is EventKind.ACK_REFUSED:
            refused[e.job_id].append(i)
        elif e.kind is EventKind.EFFECT:
            effects.add(e.job_id)
        elif e.kind is EventKind.CLAIM:
            claims[e.job_id].append(e)
    settled = list(events)
    added: list[Event] = []
    rebuilt = 0
    for ref in refs:
        rec = backend.get_job(ref.job_id)
        if rec is None or rec.finished_at is None or rec.status not in (Status.SUCCEEDED, Status.DEAD):
            continue
        at = finals[ref.job_id]
        if len(at) == 1:
            final = settled[at[0]]
            answered = [
                c.time for c in claims[ref.job_id] if c.token == final.token and c.worker == final.worker
            ]
            settled[at[0]] = replace(final, time=max([rec.finished_at, *answered]))
            continue
        if at or (rec.status is Status.SUCCEEDED and ref.job_id not in effects):
            continue
        before = [c for c in claims[ref.job_id] if c.time < rec.finished_at + FINISHED_AT_RESOLUTION_S]
        last = max(before, key=lambda c: c.time) if before else None
        when = max(rec.finished_at, last.time) if last else rec.finished_at
        rebuilt += 1
        if rec.status is Status.SUCCEEDED and last is not None:
            mine = [i for i in refused[ref.job_id] if settled[i].token == last.token]
            if mine:
                settled[mine[0]] = replace(settled[mine[0]], kind=EventKind.ACK, time=when)
                continue
        kind = EventKind.ACK if rec.status is Status.SUCCEEDED else EventKind.DEAD
        added.append(Event(kind, ref.job_id, ref.lane, ref.seq, last.worker if last else "unrecorded",
                           last.token if last else None, when, rec.attempts))  # fmt: skip
    return settled + added, rebuilt


def find_orphans(events: Sequence[Event], kills: Sequence[tuple[str, float]]) -> list[Orphan]:
    """Jobs each killed worker had claimed and not finished, with their next claim time."""
    ordered = sorted(events, key=lambda e: e.time)
    finished = {(e.worker, e.job_id, e.token) for e in ordered if e.kind in _OUTCOMES}
    claims: dict[str, list[Event]] = defaultdict(list)
    for e in ordered:
        if e.kind is EventKind.CLAIM:
            claims[e.job_id].append(e)
    killed = dict(kills)
    orphans: list[Orphan] = []
    for job_id, job_claims in claims.items():
        for i, claim in enumerate(job_claims):
            killed_at = killed.get(claim.worker)
            if killed_at is None or (claim.worker, job_id, claim.token) in finished:
                continue
            later = [c.time for c in job_claims[i + 1 :] if c.time >= killed_at]
            orphans.append(Orphan(job_id, claim.worker, claim.time, killed_at, later[0] if later else None))
    return orphans


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
            due = (
                total * (kills_done + 1) / (cfg.kills + 2)
            )  # spread over the run, the last well before its end
            if (
                kills_done < cfg.kills
                and done >= due
                and time.monotonic() >= next_kill
                and workers.kill_one()
            ):
                kills_done += 1
                next_kill = time.monotonic() + cfg.kill_every_s
            time.sleep(0.1)
        progress.update(bar, completed=_finished(app))


def print_result(result: RunResult, console: Console) -> None:
    """The verdict in words and numbers."""
    r = result.report
    mark = "[green]OK[/green]" if result.ok else "[red]FAILED[/red]"
    console.print(f"{mark}  {r.summary()}")
    console.print(
        f"{result.jobs} jobs in {result.elapsed_s:.1f} s = [bold]{result.throughput:,.0f} jobs/s[/bold]"
        + (f"; {result.kills} workers killed with SIGKILL and restarted" if result.kills else "")
    )
    if result.orphans:
        longest = result.max_release_s
        waited = "never claimed again" if longest is None else f"the longest waited {longest:.2f} s"
        console.print(
            f"{len(result.orphans)} jobs were held by killed workers; {waited} to be claimed again "
            f"(bound: lease + 2 x sweep interval)"
        )
    if result.repaired:
        console.print(
            f"{result.repaired} acks lost with a killed worker's history line were read from the backend"
        )
    if not result.ok:
        console.print(r.details(limit=5), markup=False)
