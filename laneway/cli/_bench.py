"""``laneway bench``: measure enqueue, drain and pickup latency on your own backend."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import click

from .. import _constants as C
from .._errors import LanewayError
from ._common import COUNT, LOG_LEVEL, POSITIVE_SECONDS, console, emit_json, err_console

if TYPE_CHECKING:  # imported when the command runs: every ``laneway`` start-up would pay for them
    from rich.progress import Progress, TaskID
    from rich.table import Table

    from .._bench import BenchResult, PhaseResult

PHASES = ("enqueue", "async", "bulk", "drain", "ordered", "latency")


class _Bars:
    """Draws each phase as a rich progress bar."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.ids: dict[str, TaskID] = {}

    def start(self, phase: str, description: str, total: int) -> None:
        if self.progress is not None:
            self.ids[phase] = self.progress.add_task(description, total=max(1, total))

    def advance(self, phase: str, completed: int) -> None:
        if self.progress is not None and phase in self.ids:
            self.progress.update(self.ids[phase], completed=completed)

    def finish(self, phase: str, result: PhaseResult) -> None:
        if self.progress is not None and phase in self.ids:
            task = self.progress.tasks[self.progress.task_ids.index(self.ids[phase])]
            self.progress.update(self.ids[phase], completed=task.total)


def _num(value: float | None, digits: int = 0) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _table(result: BenchResult) -> Table:
    from rich.table import Table

    lanes = "one per job" if result.lanes is None else str(result.lanes)
    t = Table(
        title=f"laneway bench on {result.url} (namespace {result.namespace}; {result.processes} worker "
        f"process(es) x {result.concurrency} slots, batch {result.batch}, ordered lanes: {lanes})",
        title_justify="left",
    )
    for col, justify in (("phase", "left"), ("what", "left"), ("jobs", "right"), ("seconds", "right"),
                         ("jobs/s", "right"), ("p50 ms", "right"), ("p99 ms", "right"), ("note", "left")):  # fmt: skip
        t.add_column(col, justify=justify)  # type: ignore[arg-type]
    for p in result.phases:
        note = p.note
        if p.startup_s is not None:
            note = f"start-up {p.startup_s:.1f} s" + (f"; {note}" if note else "")
        if p.partial:
            note = "cut by --timeout; " + note
        t.add_row(p.phase, p.description, f"{p.jobs:,}", f"{p.seconds:.2f}", _num(p.rate), _num(p.p50_ms, 2),
                  _num(p.p99_ms, 2), note)  # fmt: skip
    return t


@click.command("bench")
@click.option("--url", "-u", envvar=C.URL_ENV, default=C.DEFAULT_URL, show_default=True,
              help=f"Backend URL to measure (or ${C.URL_ENV}).")  # fmt: skip
@click.option("--namespace", "-n", default="laneway-bench", show_default=True,
              help="Namespace the bench jobs live in (kept apart from your app's).")  # fmt: skip
@click.option("--jobs", "-j", type=COUNT, default=5000, show_default=True, help="Jobs per phase.")
@click.option("--lanes", default="100", show_default=True,
              help="Lanes of the ordered phase: a number, or 'unique' for one lane per job.")  # fmt: skip
@click.option(
    "--processes", "-p", type=COUNT, default=1, show_default=True, help="Worker processes for the drains."
)
@click.option(
    "--concurrency",
    "-c",
    type=COUNT,
    default=C.CONCURRENCY,
    show_default=True,
    help="Slots per worker process.",
)
@click.option(
    "--batch", type=COUNT, default=1, show_default=True, help="Consecutive jobs of one lane per claim."
)
@click.option(
    "--latency-samples", type=COUNT, default=200, show_default=True, help="Jobs timed for pickup latency."
)
@click.option("--phases", default=",".join(PHASES), show_default=True, help="Comma-separated phases to run.")
@click.option(
    "--timeout",
    "timeout_s",
    type=POSITIVE_SECONDS,
    default=300.0,
    show_default=True,
    help="Seconds before a drain is cut.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
@click.option(
    "--log-level",
    type=LOG_LEVEL,
    default="ERROR",
    show_default=True,
    help="Level of laneway's own log lines.",
)
def bench_command(
    url: str, namespace: str, jobs: int, lanes: str, processes: int, concurrency: int, batch: int,
    latency_samples: int, phases: str, timeout_s: float, as_json: bool, log_level: str,
) -> None:  # fmt: skip
    """Measure laneway on your backend: enqueue, bulk and async enqueue rates, drain rates
    (unordered and over lanes) with your worker settings, and pickup latency.

    Uses its own namespace and a no-op task; needs nothing but the backend (a SQLite URL
    needs no server). Run it where your workers would run to size a deployment.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .._bench import BenchConfig, as_dict, run_bench

    logging.getLogger("laneway").setLevel(log_level.upper())
    try:
        n_lanes = None if lanes == "unique" else int(lanes)
    except ValueError:
        raise click.BadParameter("a number of lanes, or 'unique'", param_hint="--lanes") from None
    try:
        cfg = BenchConfig(
            url=url, namespace=namespace, jobs=jobs, lanes=n_lanes, processes=processes,
            concurrency=concurrency, batch=batch, latency_samples=latency_samples,
            phases=[p.strip() for p in phases.split(",") if p.strip()], timeout_s=timeout_s,
        )  # fmt: skip
        if as_json:
            result = run_bench(cfg)
        else:
            columns = (
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=console, transient=False) as progress:
                result = run_bench(cfg, _Bars(progress))
    except LanewayError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise SystemExit(2) from None
    if as_json:
        emit_json(as_dict(result))
    else:
        console.print(_table(result))
