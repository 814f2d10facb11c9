"""``laneway worker``: run workers for an app."""

from __future__ import annotations

import logging

import click

from .. import _constants as C
from .._app import App
from .._errors import ConfigError
from .._supervisor import EX_CONFIG, Supervisor
from .._worker import Worker, queue_names
from ._common import COUNT, LOG_LEVEL, PORT, POSITIVE_SECONDS, SECONDS, load_app


@click.command("worker")
@click.argument("app_ref", metavar="MODULE:APP")
@click.option("-q", "--queues", default="default", show_default=True, help="Queues, highest priority first.")
@click.option(
    "-c",
    "--concurrency",
    type=COUNT,
    default=None,
    help=(
        f"Slots (jobs held at once) per process. [default: {C.CONCURRENCY}, or {C.CONCURRENCY_ASYNC}"
        " when every task is async def]"
    ),
)
@click.option(
    "-p",
    "--processes",
    type=COUNT,
    default=1,
    show_default=True,
    help="Worker processes, restarted if they die.",
)
@click.option(
    "--batch", type=COUNT, default=1, show_default=True, help="Consecutive jobs taken per claimed lane."
)
@click.option(
    "--lease", "lease_s", type=POSITIVE_SECONDS, default=None, help="Lease in seconds (default: the app's)."
)
@click.option(
    "--grace",
    "grace_s",
    type=SECONDS,
    default=C.GRACE_S,
    show_default=True,
    help="Seconds running jobs get after SIGTERM.",
)
@click.option("--burst", is_flag=True, help="Exit once nothing is due and nothing is running.")
@click.option("--log-level", type=LOG_LEVEL, default="INFO", show_default=True)
@click.option(
    "--metrics-port", type=PORT, default=None, help="Serve Prometheus metrics from this port (-p N: N ports)."
)
@click.option("--metrics-addr", default="127.0.0.1", show_default=True, help="Address of the metrics server.")
@click.option(
    "--metrics-backend/--no-metrics-backend",
    default=None,
    help=(
        "Also export the queue gauges (laneway_queue_*), read from the backend on each scrape."
        " [default: with -p N, only the process on --metrics-port itself]"
    ),
)
@click.option("--child", is_flag=True, hidden=True)
@click.option("--worker-id", default=None, hidden=True)
def worker_command(
    app_ref: str,
    queues: str,
    concurrency: int | None,
    processes: int,
    batch: int,
    lease_s: float | None,
    grace_s: float,
    burst: bool,
    log_level: str,
    metrics_port: int | None,
    metrics_addr: str,
    metrics_backend: bool | None,
    child: bool,
    worker_id: str | None,
) -> None:
    """Pull and run jobs of MODULE:APP from QUEUES.

    With -p N, a supervisor runs N worker processes and restarts any that die, handing
    the work a dead one held straight back to the queue (with --burst, it ends once
    every process has found the queues empty). A process that cannot start with these
    options (a metrics port in use, say) is not restarted: the supervisor stops the
    others and exits with 2. SIGTERM or SIGINT stops
    claiming, lets running jobs finish within --grace, and releases the rest.
    """
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = load_app(app_ref)
    try:
        queue_names(queues)  # checked here too: the supervisor's children would die of it
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="'-q' / '--queues'") from None
    if metrics_port and metrics_port + processes - 1 > 65535:  # one port per process
        raise click.BadParameter(
            f"-p {processes} needs ports {metrics_port}..{metrics_port + processes - 1}, past 65535",
            param_hint="'--metrics-port'",
        )
    if child or (burst and processes == 1):
        try:
            w = _start_worker(app, queues, concurrency, batch, lease_s, grace_s, worker_id, metrics_port, metrics_addr, metrics_backend, processes)  # fmt: skip
        except click.UsageError as exc:
            if not child:
                raise
            exc.show()  # a distinct exit code: the supervisor stops rather than restart it for ever
            raise SystemExit(EX_CONFIG) from None
        stats = w.run(burst=burst)
        logging.getLogger("laneway.worker").info("worker %s stopped: %s", w.id, stats)
        return
    args = [
        app_ref,
        "-q",
        queues,
        "--batch",
        str(batch),
        "--grace",
        str(grace_s),
        "--log-level",
        log_level,
    ]
    if concurrency is not None:
        args += ["-c", str(concurrency)]
    if lease_s is not None:
        args += ["--lease", str(lease_s)]
    if metrics_port is not None:
        args += ["--metrics-port", str(metrics_port), "--metrics-addr", metrics_addr, "-p", str(processes)]
        if metrics_backend is not None:
            args.append("--metrics-backend" if metrics_backend else "--no-metrics-backend")
    if burst:
        args.append("--burst")
    raise SystemExit(Supervisor(app, args, processes, grace_s, burst=burst).run())


def _start_worker(
    app: App,
    queues: str,
    concurrency: int | None,
    batch: int,
    lease_s: float | None,
    grace_s: float,
    worker_id: str | None,
    metrics_port: int | None,
    metrics_addr: str,
    metrics_backend: bool | None,
    processes: int,
) -> Worker:
    """This process's worker, and its metrics server if asked for; ``click.UsageError``
    when either cannot be made with these options.

    The queue gauges are the same whichever process reads them, so by default (``-p N``)
    only the process serving the first port does: sums stay right and a scrape of all N
    ports reads the backend once.
    """
    if metrics_port is not None:
        from .._metrics import instrument, start_metrics_server

        try:
            server = start_metrics_server(metrics_port, metrics_addr, tries=processes)
        except OSError as exc:
            raise click.BadParameter(str(exc), param_hint="'--metrics-port'") from None
        if metrics_backend is None:
            metrics_backend = processes == 1 or server.port == metrics_port
        try:
            instrument(app, collect_backend=metrics_backend)
        except ConfigError as exc:  # the app module registered other gauges already
            raise click.UsageError(str(exc)) from None
    try:
        return Worker(
            app,
            queues,
            concurrency=concurrency,
            batch=batch,
            lease_s=lease_s,
            grace_s=grace_s,
            worker_id=worker_id,
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
