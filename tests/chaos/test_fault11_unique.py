"""RELIABILITY fault 11: one ``unique`` key enqueued many times by 8 processes at once.

Eight processes (threads of this process for ``memory://``) connect, wait for a
go signal (a file appearing), then all enqueue the same ``unique`` key as fast as they
can. Exactly one job may exist afterwards, and
every one of the calls must have been answered with that job's id.

CI size: 1,000 enqueues (125 per process). Soak size: 8,000 (1,000 per process).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.chaos._unique_child import main as enqueue_many_times

from ._procs import Fleet, wait_until
from .conftest import ALL_BACKENDS, Chaos, Figures, size, timeout

PROCESSES = 8
KEY = "the-one-and-only"


@pytest.mark.parametrize("kind", ALL_BACKENDS)
@timeout(120, 300)
def test_one_unique_key_enqueued_by_8_processes_at_once_makes_exactly_one_job_whose_id_everyone_gets(
    kind: str, chaos_factory: Callable[[str], Chaos], tmp_path: Path, figures: Figures
) -> None:
    target = chaos_factory(kind)
    backend = target.open()
    per_process = size(125, 1000)
    outs = [tmp_path / f"ids-{i}.json" for i in range(PROCESSES)]
    go = tmp_path / "go"
    with Fleet(tmp_path, target.url, target.namespace) as fleet:
        args = [target.url, target.namespace, KEY, str(per_process), str(go)]
        if kind == "memory":
            runners = [threading.Thread(target=enqueue_many_times, args=(*args[:3], per_process, str(go), str(out)))
                       for out in outs]  # fmt: skip
            for t in runners:
                t.start()
        else:
            procs = [fleet.spawn(f"producer-{i}", [sys.executable, "-m", "tests.chaos._unique_child", *args, str(out)])
                     for i, out in enumerate(outs)]  # fmt: skip
        wait_until(
            lambda: all(Path(f"{out}.ready").exists() for out in outs), 90, "every producer to connect"
        )
        started = time.monotonic()
        go.touch()
        if kind == "memory":
            for t in runners:
                t.join(60)
        else:
            wait_until(lambda: all(not p.alive() for p in procs), 90, "every producer to finish")
            codes = [p.popen.returncode for p in procs]
            assert codes == [0] * PROCESSES, f"producers failed: {codes}\n{fleet.logs()}"
        took = time.monotonic() - started
        ids = [job_id for out in outs for job_id in json.loads(out.read_text())]
    jobs = backend.list_jobs(limit=10)
    figures(backend=kind, processes=PROCESSES, enqueues=len(ids), jobs_stored=len(jobs),
            distinct_ids_returned=len(set(ids)), enqueue_phase_s=round(took, 2))  # fmt: skip
    assert len(ids) == PROCESSES * per_process
    assert len(jobs) == 1, f"{len(jobs)} jobs for one unique key"
    assert set(ids) == {jobs[0].id}, f"callers got {len(set(ids))} different ids"
