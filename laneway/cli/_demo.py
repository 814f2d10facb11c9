"""``laneway demo`` and ``laneway chaos``: the ordered-lanes promise, shown and checked."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import uuid
from types import FrameType
from urllib.parse import urlsplit

import click
from rich.text import Text

from .._demo import RunConfig, print_result, run
from .._errors import ConfigError
from ..backends import shown_url
from ._common import COUNT, POSITIVE_SECONDS, F, console, say


def _run_options(fn: F) -> F:
    for opt in reversed(
        [
            click.option("--jobs", type=COUNT, default=5000, show_default=True, help="Jobs to enqueue."),
            click.option(
                "--lanes", type=COUNT, default=100, show_default=True, help="Lanes the jobs are spread over."
            ),
            click.option("--workers", type=COUNT, default=3, show_default=True, help="Worker processes."),
            click.option(
                "--concurrency",
                "-c",
                type=COUNT,
                default=8,
                show_default=True,
                help="Slots per worker process.",
            ),
            click.option(
                "--work-ms",
                type=click.FloatRange(0, 60_000),
                default=1.0,
                show_default=True,
                help="Average time one job takes.",
            ),
        ]
    ):
        fn = opt(fn)
    return fn


def _run_and_judge(cfg: RunConfig, scratch_dir: str | None = None) -> None:
    """Run, print the verdict, remove the run's files; exit 1 if the history broke a promise.

    SIGTERM ends the run as Ctrl-C does: its worker processes are stopped and its files
    removed (the default action would leave both behind)."""
    if urlsplit(cfg.url).scheme == "memory":
        raise click.BadParameter(
            "memory:// lives inside one process and the run's workers are processes of their own: "
            "use sqlite:///path.db, redis:// or postgresql://",
            param_hint="'--url'",
        )

    def terminate(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    before = signal.signal(signal.SIGTERM, terminate)
    try:
        try:
            result = run(cfg, console)
        except ConfigError as exc:  # a bad --url: the backend is opened by the run
            raise click.BadParameter(str(exc), param_hint="'--url'") from None
        print_result(result, console)
    finally:
        signal.signal(signal.SIGTERM, before)
        shutil.rmtree(cfg.history_dir, ignore_errors=True)
        if scratch_dir is not None:
            shutil.rmtree(scratch_dir, ignore_errors=True)
    if not result.ok:
        raise SystemExit(1)


@click.command("demo")
@click.option("--url", default=None, help="Backend URL (default: a fresh SQLite file in a temp dir).")
@_run_options
def demo_command(
    url: str | None, jobs: int, lanes: int, workers: int, concurrency: int, work_ms: float
) -> None:
    """Producers send jobs over many lanes, worker processes run them, and the recorded
    history proves every lane ran in order with nothing lost or duplicated."""
    tmp = None
    if url is None:
        tmp = tempfile.mkdtemp(prefix="laneway-demo-")
        url = f"sqlite:///{os.path.join(tmp, 'demo.db')}"
    cfg = RunConfig(
        url=url,
        namespace="demo" + uuid.uuid4().hex[:8],
        jobs=jobs,
        lanes=lanes,
        workers=workers,
        concurrency=concurrency,
        work_ms=work_ms,
    )
    say(
        "laneway demo on ",
        Text(shown_url(url), style="bold"),
        f": {jobs} jobs, {lanes} lanes, {workers} worker processes",
    )
    _run_and_judge(cfg, tmp)


@click.command("chaos")
@click.option("--url", envvar="LANEWAY_URL", required=True, help="Backend URL to test.")
@_run_options
@click.option(
    "--kills",
    type=click.IntRange(min=0),
    default=30,
    show_default=True,
    help="Workers to kill with SIGKILL during the run.",
)
@click.option(
    "--kill-every", type=POSITIVE_SECONDS, default=0.5, show_default=True, help="Seconds between kills."
)
@click.option(
    "--lease",
    "lease_s",
    type=POSITIVE_SECONDS,
    default=2.0,
    show_default=True,
    help="Lease of the workers, seconds.",
)
def chaos_command(
    url: str,
    jobs: int,
    lanes: int,
    workers: int,
    concurrency: int,
    work_ms: float,
    kills: int,
    kill_every: float,
    lease_s: float,
) -> None:
    """Kill -9 worker processes at random while jobs run on your backend, then report
    lost, duplicated and out-of-order jobs (fault 1 of docs/guarantees.md)."""
    cfg = RunConfig(
        url=url,
        namespace="chaos" + uuid.uuid4().hex[:8],
        jobs=jobs,
        lanes=lanes,
        workers=workers,
        concurrency=concurrency,
        work_ms=work_ms,
        kills=kills,
        kill_every_s=kill_every,
        lease_s=lease_s,
    )
    say(
        "laneway chaos on ",
        Text(shown_url(url), style="bold"),
        f": {jobs} jobs, {lanes} lanes, {workers} workers, {kills} kills",
    )
    _run_and_judge(cfg)
