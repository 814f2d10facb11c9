"""RELIABILITY fault 5: a worker is frozen (SIGSTOP) past its lease, then thawed (SIGCONT).

Lane ``L`` holds three jobs. The *frozen* worker starts job 0 (a handler that, on its
first delivery, waits for a gate file) and is stopped with SIGSTOP. A *rescuer* worker
starts; once the frozen worker's lease has run out it sweeps it, runs job 0 again (no
gate on a re-delivery) and then jobs 1 and 2. Then the frozen worker gets SIGCONT:

- its next heartbeat's ``extend`` is refused (it logs that the lease was lost);
- when its handler finishes (the gate is opened), its ack is refused (``ACK_REFUSED``);
- job 1 did not start before the re-leased copy of job 0 had finished;
- the backend itself refuses the old token for ``extend`` and ``finish``.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from laneway._demo import settle_from_backend
from laneway._history import EventKind, check_history
from laneway._records import Outcome, Verdict

from ._procs import Fleet, Producer, wait_until
from .conftest import PROCESS_BACKENDS, Chaos, Figures, timeout

LEASE_S = 1.5
LANE = "L"


@pytest.mark.parametrize("kind", PROCESS_BACKENDS)
@timeout(120, 240)
def test_sigstopped_worker_past_its_lease_gets_ack_and_extend_refused_and_its_lane_waits_for_the_re_run(
    kind: str, chaos_factory: Callable[[str], Chaos], tmp_path: Path, figures: Figures
) -> None:
    target = chaos_factory(kind)
    backend = target.open()
    gate = tmp_path / "gate"
    env = {"LANEWAY_CHAOS_SWEEP_S": "0.3", "LANEWAY_CHAOS_IDLE_WAIT_S": "0.2"}
    with Fleet(tmp_path, target.url, target.namespace, env) as fleet:
        producer = Producer(fleet, target.url, target.namespace)
        try:
            first = producer.send("gated", LANE, 0, str(gate))
            second = producer.send("step", LANE, 1)
            producer.send("step", LANE, 2)
        finally:
            producer.close()
        frozen = fleet.worker("frozen", concurrency=2, lease_s=LEASE_S)

        def events_of(kind: EventKind, job_id: str, worker: str | None = None) -> list:  # type: ignore[type-arg]
            return [e for e in fleet.events() if e.kind is kind and e.job_id == job_id
                    and (worker is None or e.worker == worker)]  # fmt: skip

        wait_until(
            lambda: events_of(EventKind.START, first, frozen.history_name),
            90,
            "the frozen worker to start job 0",
        )
        frozen.signal(signal.SIGSTOP)
        stopped = time.monotonic()
        rescuer = fleet.worker("rescuer", concurrency=2, lease_s=LEASE_S)
        wait_until(lambda: len([e for e in fleet.events() if e.kind is EventKind.ACK]) >= 3, 90,
                   "the rescuer to run the whole lane")  # fmt: skip
        # The lease may have been granted well before the SIGSTOP, so the rescuer can be
        # done sooner than LEASE_S after it: stay stopped past a whole lease all the same.
        time.sleep(max(0.0, LEASE_S + 0.2 - (time.monotonic() - stopped)))
        frozen.signal(signal.SIGCONT)
        stopped_s = time.monotonic() - stopped
        token = events_of(EventKind.CLAIM, first, frozen.history_name)[0].token
        assert token is not None
        wait_until(
            lambda: f"lease {token} lost" in frozen.log_text(), 15, "the frozen worker's extend to be refused"
        )
        gate.touch()
        wait_until(lambda: events_of(EventKind.ACK_REFUSED, first, frozen.history_name), 15,
                   "the frozen worker's ack to be refused")  # fmt: skip
        backend_extend = backend.extend([token], 10.0)
        backend_finish = backend.finish([Outcome(first, token, Verdict.SUCCEEDED)])
        for proc in (frozen, rescuer):
            proc.signal(signal.SIGTERM)
        for proc in (frozen, rescuer):
            proc.wait(15)
        history, _ = settle_from_backend(fleet.events(), producer.refs, backend)

    report = check_history(history, expected=producer.refs)
    rescued_ack = next(e for e in history if e.kind is EventKind.ACK and e.job_id == first)
    next_start = min(e.time for e in history if e.kind is EventKind.START and e.job_id == second)
    figures(backend=kind, stopped_s=round(stopped_s, 2), lease_s=LEASE_S, lost=len(report.lost),
            duplicated=len(report.duplicated), order_violations=len(report.order_violations),
            stale_acks=len(report.stale_acks))  # fmt: skip
    assert stopped_s > LEASE_S
    assert rescued_ack.worker == rescuer.history_name, "job 0 must have been finished by the rescuer"
    assert next_start >= rescued_ack.time, "job 1 started before the re-leased copy of job 0 finished"
    assert backend_extend == [False] and backend_finish == [False], "the backend accepted a superseded token"
    assert report.lost == () and report.order_violations == (), report.details()
    assert report.stale_acks == () and report.duplicate_acks == (), report.details()
    assert report.unexpected == () and report.disallowed_duplicates == (), report.details()
