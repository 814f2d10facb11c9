"""RELIABILITY fault 2: SIGTERM to every worker while long jobs run, with a grace period.

Two workers get SIGTERM at the same moment, each with all its slots busy:

- the *patient* one (grace 5 s) runs 1 s jobs: they finish within the grace period and
  are acked; it claims nothing after the signal;
- the *hurried* one (grace 1 s) runs 12 s jobs: they are still running when the grace
  period ends, so it releases them: back to the head of their lanes, attempt not spent.
  (12 s is longer than the worker's whole shutdown may take, so its abandoned handlers
  die with the process instead of finishing their side effect a second time.)

Both must exit within their grace + 2 s. A third worker then finishes everything; the
whole history must show 0 lost, 0 duplicates (none allowed), lanes in order.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from laneway._demo import settle_from_backend
from laneway._history import EventKind, check_history
from laneway._records import Status

from ._procs import Fleet, Producer, wait_until
from .conftest import PROCESS_BACKENDS, Chaos, Figures, timeout

LANES = 4
PER_LANE = 3
PATIENT_GRACE_S = 5.0
HURRIED_GRACE_S = 1.0
SHORT_JOB_S = 1.0
LONG_JOB_S = 12.0
CLAIM_IN_FLIGHT_S = 1.0
"""A claim sent just before the signal may be recorded just after it; later ones may not."""


@pytest.mark.parametrize("kind", PROCESS_BACKENDS)
@timeout(150, 300)
def test_sigterm_finishes_or_releases_running_jobs_within_grace_and_loses_or_repeats_nothing(
    kind: str, chaos_factory: Callable[[str], Chaos], tmp_path: Path, figures: Figures
) -> None:
    target = chaos_factory(kind)
    backend = target.open()
    with Fleet(tmp_path, target.url, target.namespace, {"LANEWAY_CHAOS_SWEEP_S": "0.5"}) as fleet:
        producer = Producer(fleet, target.url, target.namespace)
        try:
            for seq in range(PER_LANE):
                for lane in range(LANES):
                    producer.send("hold", f"short-{lane}", seq, SHORT_JOB_S, queue="patient")
                    producer.send("hold", f"long-{lane}", seq, LONG_JOB_S, queue="hurried")
        finally:
            producer.close()
        patient = fleet.worker(
            "patient", queues="patient", concurrency=LANES, lease_s=10, grace_s=PATIENT_GRACE_S
        )
        hurried = fleet.worker(
            "hurried", queues="hurried", concurrency=LANES, lease_s=10, grace_s=HURRIED_GRACE_S
        )

        def started(proc_name: str) -> int:
            return sum(1 for e in fleet.events() if e.kind is EventKind.START and e.worker == proc_name)

        wait_until(lambda: started(patient.history_name) >= LANES and started(hurried.history_name) >= LANES,
                   90, "both workers to run a job in every slot")  # fmt: skip
        signalled = time.monotonic()
        signalled_at = time.clock_gettime(time.CLOCK_REALTIME)
        patient.signal(signal.SIGTERM)
        hurried.signal(signal.SIGTERM)
        patient_code = patient.wait(PATIENT_GRACE_S + 10)
        patient_s = time.monotonic() - signalled
        hurried_code = hurried.wait(max(0.0, HURRIED_GRACE_S + 10 - patient_s))
        hurried_s = time.monotonic() - signalled if hurried_code is not None else float("inf")

        events = fleet.events()
        running_long = [
            e.job_id for e in events if e.kind is EventKind.START and e.worker == hurried.history_name
        ]
        released = [backend.get_job(job_id) for job_id in running_long]
        late_claims = [
            e for e in events if e.kind is EventKind.CLAIM and e.time > signalled_at + CLAIM_IN_FLIGHT_S
        ]
        patient_acks = [e for e in events if e.kind is EventKind.ACK and e.worker == patient.history_name]

        finisher = fleet.worker(
            "finisher", queues="patient,hurried", concurrency=4, env={"LANEWAY_CHAOS_HOLD_MAX_S": "0.05"}
        )
        total = LANES * PER_LANE * 2
        wait_until(
            lambda: sum(1 for e in fleet.events() if e.kind is EventKind.ACK) >= total,
            90,
            "every job to finish",
        )
        finisher.signal(signal.SIGTERM)
        assert finisher.wait(10) is not None
        history, _ = settle_from_backend(fleet.events(), producer.refs, backend)
        report = check_history(history, expected=producer.refs, allow_duplicates_for=set())
        logs = fleet.logs()

    figures(backend=kind, patient_exit_s=round(patient_s, 2), hurried_exit_s=round(hurried_s, 2),
            released=len(running_long), lost=len(report.lost), duplicated=len(report.duplicated),
            order_violations=len(report.order_violations))  # fmt: skip
    assert patient_code == 0 and patient_s <= PATIENT_GRACE_S + 2, (
        f"patient worker: {patient_code} after {patient_s:.1f} s\n{logs}"
    )
    assert len(patient_acks) >= LANES, (
        "the patient worker's running jobs did not finish within the grace period"
    )
    assert not late_claims, f"claims after SIGTERM: {late_claims}"
    assert hurried_code == 0, f"hurried worker exit code {hurried_code}\n{logs}"
    assert len(running_long) == LANES
    assert all(r is not None and r.status is Status.QUEUED and r.attempts == 0 for r in released), (
        f"released jobs must be queued with their attempt given back: {[(r.status, r.attempts) for r in released if r]}"
    )
    assert report.lost == () and report.duplicated == () and report.order_violations == (), report.details()
    assert report.stale_acks == () and report.unexpected == (), report.details()
    assert hurried_s <= HURRIED_GRACE_S + 2, (
        f"the hurried worker took {hurried_s:.2f} s to stop with {LANES} handlers still running, over "
        f"grace {HURRIED_GRACE_S} s + 2 s (laneway/_worker.py Worker._shutdown joins each thread with "
        f"its own 1 s timeout, so N stuck handlers add N seconds)"
    )
