"""The history checker must flag every anomaly it claims to detect, and nothing else.

A checker that passes everything proves nothing, so each anomaly class gets a synthetic
history that holds exactly that anomaly. The recorder is exercised across real processes,
including one killed with SIGKILL mid-write.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from laneway._history import (
    Event,
    EventKind,
    HistoryFormatError,
    HistoryRecorder,
    JobRef,
    Report,
    check_history,
    load_history,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

K = EventKind


@dataclass
class Script:
    """Builds a synthetic history with a ticking clock and global fencing tokens."""

    events: list[Event] = field(default_factory=list)
    clock: float = 0.0
    last_token: int = 0

    def add(
        self,
        kind: EventKind,
        job: JobRef,
        worker: str = "w1",
        token: int | None = None,
        *,
        at: float | None = None,
    ) -> Event:
        self.clock += 1.0
        event = Event(kind, job.job_id, job.lane, job.seq, worker, token, self.clock)
        if at is not None:
            event = Event(kind, job.job_id, job.lane, job.seq, worker, token, at)
        self.events.append(event)
        return event

    def enqueue(self, *jobs: JobRef) -> None:
        for job in jobs:
            self.add(K.ENQUEUE, job, worker="producer")

    def claim(self, job: JobRef, worker: str = "w1") -> int:
        self.last_token += 1
        self.add(K.CLAIM, job, worker, self.last_token)
        return self.last_token

    def run(self, job: JobRef, worker: str = "w1", outcome: EventKind = K.ACK) -> int:
        """Claim, start, apply the effect and end with ``outcome`` (ACK: success, NACK: the
        attempt failed after its effect); return the token."""
        token = self.claim(job, worker)
        self.add(K.START, job, worker, token)
        self.add(K.EFFECT, job, worker, token)
        self.add(outcome, job, worker, token)
        return token

    def check(self, **kwargs: object) -> Report:
        return check_history(self.events, **kwargs)  # type: ignore[arg-type]


def job(lane: str | None, seq: int) -> JobRef:
    return JobRef(f"{lane}-{seq}", lane, seq)


A0, A1, A2 = job("a", 0), job("a", 1), job("a", 2)
B0, B1 = job("b", 0), job("b", 1)


def test_clean_history_with_parallel_lanes_is_ok() -> None:
    s = Script()
    s.enqueue(A0, A1, B0, B1)
    token_a = s.claim(A0, "w1")
    token_b = s.claim(B0, "w2")
    s.add(K.START, A0, "w1", token_a)
    s.add(K.START, B0, "w2", token_b)  # Lanes overlap freely.
    s.add(K.ACK, B0, "w2", token_b)
    s.add(K.ACK, A0, "w1", token_a)
    s.run(A1, "w2")
    s.run(B1, "w1")

    report = s.check(expected=[A0, A1, B0, B1])

    assert report.ok, report.details()
    assert report.counts == {
        "jobs": 4,
        "lost": 0,
        "duplicated": 0,
        "disallowed_duplicates": 0,
        "duplicate_acks": 0,
        "unexpected": 0,
        "order_violations": 0,
        "stale_acks": 0,
        "dead": 0,
    }
    assert report.summary() == (
        "4 jobs, 0 lost, 0 duplicated, 0 duplicate acks, 0 unexpected, 0 out of order, 0 stale acks, 0 dead"
    )


def test_enqueued_job_never_acked_is_lost() -> None:
    s = Script()
    s.enqueue(A0, B0)
    s.run(A0)
    token = s.claim(B0, "w2")
    s.add(K.START, B0, "w2", token)  # w2 dies; nobody ever finishes b-0.

    report = s.check()

    assert not report.ok
    assert report.lost == (B0,)


def test_expected_job_never_enqueued_is_lost() -> None:
    s = Script()
    s.enqueue(A0)
    s.run(A0)

    report = s.check(expected=[A0, B0])

    assert report.lost == (B0,)
    assert report.jobs == 2
    assert not report.ok


def test_job_whose_effect_ran_twice_on_one_delivery_is_a_duplicate() -> None:
    s = Script()
    s.enqueue(A0)
    token = s.claim(A0)
    s.add(K.START, A0, "w1", token)
    s.add(K.EFFECT, A0, "w1", token)
    s.add(K.EFFECT, A0, "w1", token)
    s.add(K.ACK, A0, "w1", token)

    report = s.check()

    assert not report.ok
    assert [(d.job, d.executions, d.allowed) for d in report.duplicated] == [(A0, 2, False)]
    assert report.duplicate_acks == ()


def test_redelivery_after_worker_killed_mid_flight_is_an_allowed_duplicate() -> None:
    s = Script()
    s.enqueue(A0, A1)
    old = s.claim(A0, "w1")
    s.add(K.START, A0, "w1", old)
    s.add(K.EFFECT, A0, "w1", old)  # w1 is paused or killed before acking: lease expires.
    new = s.claim(A0, "w2")
    s.add(K.ACK_REFUSED, A0, "w1", old)  # The zombie wakes up; fencing refuses it.
    s.add(K.START, A0, "w2", new)
    s.add(K.EFFECT, A0, "w2", new)
    s.add(K.ACK, A0, "w2", new)
    s.run(A1, "w1")

    report = s.check()

    assert report.ok, report.details()
    (duplicate,) = report.duplicated
    assert duplicate.job == A0
    assert duplicate.allowed
    assert duplicate.workers == ("w1", "w2")
    assert report.stale_acks == ()
    assert "1 duplicated (1 redelivered after a lost lease)" in report.summary()


def test_a_job_whose_run_events_name_another_lane_than_its_later_enqueue_is_unexpected() -> None:
    s = Script()
    wrong = JobRef(A0.job_id, "b", 7)
    s.run(wrong)  # the producer's ENQUEUE line was written after the worker's lines
    s.enqueue(A0)

    report = s.check()  # no expected=: the identity comes from the ENQUEUE event alone

    assert [u.job for u in report.unexpected] == [A0]
    assert "lane 'b' seq 7" in report.unexpected[0].reason


def test_a_retry_after_a_failed_attempt_with_an_effect_is_no_duplicate_even_with_an_allow_list() -> None:
    s = Script()
    s.enqueue(A0)
    s.run(A0, outcome=K.NACK)  # the side effect happened, then the handler raised
    s.run(A0)

    assert s.check(allow_duplicates_for=set()).ok
    assert s.check().duplicated == ()


def test_a_job_running_more_often_than_its_failures_explain_is_still_a_duplicate() -> None:
    s = Script()
    s.enqueue(A0)
    token = s.run(A0, outcome=K.NACK)
    s.run(A0, "w1")
    s.add(K.EFFECT, A0, "w2", token)  # a third run nothing explains

    report = s.check(allow_duplicates_for=set())

    assert not report.ok
    assert [d.job for d in report.disallowed_duplicates] == [A0]


def test_allow_duplicates_for_decides_which_duplicates_are_allowed() -> None:
    s = Script()
    s.enqueue(A0)
    first = s.claim(A0, "w1")
    s.add(K.EFFECT, A0, "w1", first)
    second = s.claim(A0, "w2")
    s.add(K.EFFECT, A0, "w2", second)
    s.add(K.ACK, A0, "w2", second)

    assert not s.check(allow_duplicates_for=set()).ok
    assert s.check(allow_duplicates_for={A0.job_id}).ok


def test_duplicate_detected_from_acks_when_effects_are_not_recorded() -> None:
    s = Script()
    s.enqueue(A0)
    first = s.claim(A0, "w1")
    second = s.claim(A0, "w2")
    s.add(K.ACK_REFUSED, A0, "w1", first)
    s.add(K.ACK, A0, "w2", second)

    (duplicate,) = s.check().duplicated

    assert (duplicate.executions, duplicate.claims, duplicate.allowed) == (2, 2, True)


def test_two_accepted_acks_are_a_duplicate_ack_even_when_duplicates_are_allowed() -> None:
    s = Script()
    s.enqueue(A0)
    token = s.run(A0)
    s.add(K.ACK, A0, "w1", token)

    report = s.check(allow_duplicates_for={A0.job_id})

    assert not report.ok
    assert [(d.job, len(d.acks)) for d in report.duplicate_acks] == [(A0, 2)]


def test_job_that_ran_but_was_never_enqueued_is_unexpected() -> None:
    s = Script()
    s.enqueue(A0)
    s.run(A0)
    s.run(B0)

    report = s.check()

    assert not report.ok
    assert [u.job for u in report.unexpected] == [B0]
    assert report.lost == ()
    assert report.jobs == 1


def test_job_not_in_expected_and_not_enqueued_is_unexpected() -> None:
    s = Script()
    s.run(A0)
    s.run(A1)

    report = s.check(expected=[A0])

    assert [u.job for u in report.unexpected] == [A1]


def test_job_running_under_another_lane_than_it_was_sent_on_is_unexpected() -> None:
    s = Script()
    s.enqueue(A0)
    token = s.claim(A0)
    s.add(K.START, JobRef(A0.job_id, "b", 0), "w1", token)
    s.add(K.ACK, A0, "w1", token)

    report = s.check()

    assert not report.ok
    (unexpected,) = report.unexpected
    assert unexpected.job == A0
    assert "lane 'b'" in unexpected.reason


def test_lane_seq_started_before_previous_finished_is_an_order_violation() -> None:
    s = Script()
    s.enqueue(A0, A1)
    t0 = s.claim(A0, "w1")
    t1 = s.claim(A1, "w2")
    s.add(K.START, A0, "w1", t0)
    started = s.add(K.START, A1, "w2", t1)
    finished = s.add(K.ACK, A0, "w1", t0)
    s.add(K.ACK, A1, "w2", t1)

    report = s.check()

    assert not report.ok
    (violation,) = report.order_violations
    assert violation.job == A1
    assert violation.blocking == A0
    assert violation.started_at == started.time
    assert violation.blocking_finished_at == finished.time
    assert "1 out of order" in report.summary()


def test_next_seq_started_while_previous_awaits_its_retry_is_an_order_violation() -> None:
    s = Script()
    s.enqueue(A0, A1)
    t0 = s.claim(A0)
    s.add(K.START, A0, "w1", t0)
    s.add(K.NACK, A0, "w1", t0)  # A NACK does not finish a job: the lane stays blocked.
    s.run(A1, "w2")
    s.run(A0, "w1")

    assert [v.job for v in s.check().order_violations] == [A1]


def test_retry_of_seq_completing_before_next_seq_starts_is_not_a_violation() -> None:
    s = Script()
    s.enqueue(A0, A1, A2)
    t0 = s.claim(A0, "w1")
    s.add(K.START, A0, "w1", t0)
    s.add(K.NACK, A0, "w1", t0)
    t1 = s.claim(A0, "w2")
    s.add(K.START, A0, "w2", t1)  # w2 is killed before finishing: no effect, no ack.
    s.run(A0, "w3")
    s.run(A1, "w1")
    s.run(A2, "w2")

    report = s.check()

    assert report.ok, report.details()
    assert report.order_violations == ()
    assert report.duplicated == ()


def test_dead_job_lets_its_lane_move_on_without_violation_or_loss() -> None:
    s = Script()
    s.enqueue(A0, A1)
    token = s.claim(A0)
    s.add(K.START, A0, "w1", token)
    s.add(K.NACK, A0, "w1", token)
    s.add(K.DEAD, A0, "backend")  # Retries exhausted; on_dead="skip".
    s.run(A1)

    report = s.check()

    assert report.ok, report.details()
    assert report.dead == (A0,)
    assert report.lost == ()


def test_successor_of_a_job_that_never_finished_is_out_of_order() -> None:
    s = Script()
    s.enqueue(A0, A1)
    token = s.claim(A0)
    s.add(K.START, A0, "w1", token)  # Never acked, never dead.
    s.run(A1, "w2")

    report = s.check()

    assert report.lost == (A0,)
    (violation,) = report.order_violations
    assert (violation.job, violation.blocking, violation.blocking_finished_at) == (A1, A0, None)


def test_violation_is_found_against_any_earlier_seq_not_only_the_previous_one() -> None:
    s = Script()
    s.enqueue(A0, A1, A2)
    t0 = s.claim(A0)
    s.add(K.START, A0, "w1", t0)
    s.run(A2, "w2")  # Jumps over both a-0 (running) and a-1 (not started).
    s.add(K.ACK, A0, "w1", t0)
    s.run(A1, "w3")

    (violation,) = s.check().order_violations

    assert (violation.job, violation.blocking) == (A2, A1)


def test_start_at_the_same_instant_as_the_previous_ack_is_not_a_violation() -> None:
    s = Script()
    s.enqueue(A0, A1)
    t0 = s.claim(A0)
    t1 = s.claim(A1, "w2")
    s.add(K.START, A0, "w1", t0)
    s.add(K.ACK, A0, "w1", t0, at=100.0)
    s.add(K.START, A1, "w2", t1, at=100.0)
    s.add(K.ACK, A1, "w2", t1, at=101.0)

    assert s.check().order_violations == ()


def test_jobs_without_a_lane_are_not_order_checked() -> None:
    s = Script()
    x0, x1 = job(None, 0), job(None, 1)
    s.enqueue(x0, x1)
    t0 = s.claim(x0)
    t1 = s.claim(x1, "w2")
    s.add(K.START, x1, "w2", t1)
    s.add(K.START, x0, "w1", t0)
    s.add(K.ACK, x1, "w2", t1)
    s.add(K.ACK, x0, "w1", t0)

    assert s.check().ok


def test_ack_accepted_with_superseded_token_is_a_stale_ack() -> None:
    s = Script()
    s.enqueue(A0)
    old = s.claim(A0, "w1")
    s.add(K.START, A0, "w1", old)
    new = s.claim(A0, "w2")  # w1's lease expired and w2 got a higher token.
    stale = s.add(K.ACK, A0, "w1", old)  # The backend wrongly accepts w1's ack.
    s.add(K.START, A0, "w2", new)

    report = s.check()

    assert not report.ok
    (stale_ack,) = report.stale_acks
    assert stale_ack.ack == stale
    assert (stale_ack.latest_token, stale_ack.latest_worker) == (new, "w2")
    assert "1 stale acks" in report.summary()


def test_ack_with_token_superseded_by_the_same_worker_is_a_stale_ack() -> None:
    s = Script()
    s.enqueue(A0)
    old = s.claim(A0, "w1")
    new = s.claim(A0, "w1")  # The same worker re-claimed after its lease expired.
    s.add(K.ACK, A0, "w1", old)
    s.add(K.ACK_REFUSED, A0, "w1", new)

    (stale_ack,) = s.check().stale_acks

    assert (stale_ack.ack.token, stale_ack.latest_token) == (old, new)


def test_ack_with_current_token_from_another_worker_is_a_stale_ack() -> None:
    s = Script()
    s.enqueue(A0)
    token = s.claim(A0, "w1")
    s.add(K.ACK, A0, "w2", token)

    (stale_ack,) = s.check().stale_acks

    assert "issued to w1" in stale_ack.reason


def test_ack_accepted_before_any_claim_or_without_token_is_a_stale_ack() -> None:
    s = Script()
    s.enqueue(A0, A1)
    s.add(K.ACK, A0, "w1", 7)
    token = s.claim(A0, "w1")
    s.claim(A1, "w1")
    s.add(K.ACK, A1, "w1", None)
    s.add(K.ACK, A0, "w1", token)

    stale = s.check().stale_acks

    assert [(a.job, a.ack.token) for a in stale] == [(A0, 7), (A1, None)]


def test_refused_stale_ack_is_not_flagged() -> None:
    s = Script()
    s.enqueue(A0)
    old = s.claim(A0, "w1")
    new = s.claim(A0, "w2")
    s.add(K.ACK_REFUSED, A0, "w1", old)
    s.add(K.START, A0, "w2", new)
    s.add(K.ACK, A0, "w2", new)

    report = s.check()

    assert report.stale_acks == ()
    assert report.ok, report.details()


def test_checker_sorts_events_by_time_before_checking() -> None:
    s = Script()
    s.enqueue(A0, A1)
    s.run(A0)
    s.run(A1, "w2")

    shuffled = list(reversed(s.events))

    assert check_history(shuffled).ok


def test_long_single_lane_is_checked_with_one_violation_reported() -> None:
    s = Script()
    jobs = [job("long", seq) for seq in range(20_000)]
    s.enqueue(*jobs)
    for ref in jobs[:-2]:
        s.run(ref)
    s.run(jobs[-1])  # The last job overtakes the one before it.
    s.run(jobs[-2])

    report = s.check()

    assert [(v.job, v.blocking) for v in report.order_violations] == [(jobs[-1], jobs[-2])]
    assert report.jobs == 20_000


def test_details_lists_each_anomaly() -> None:
    s = Script()
    s.enqueue(A0, A1)
    s.run(A1)

    details = s.check().details()

    assert "lost:" in details
    assert "out of order:" in details


# --- recorder -------------------------------------------------------------------------

WRITER = """
import sys
from laneway._history import EventKind, HistoryRecorder

directory, worker, lane = sys.argv[1:4]
with HistoryRecorder(directory, worker=worker) as recorder:
    for seq in range(50):
        job_id = f"{lane}-{seq}"
        recorder.record(EventKind.ENQUEUE, job_id, lane, seq)
        recorder.record(EventKind.CLAIM, job_id, lane, seq, token=seq + 1)
        recorder.record(EventKind.START, job_id, lane, seq, token=seq + 1, attempt=1)
        recorder.record(EventKind.EFFECT, job_id, lane, seq, token=seq + 1)
        recorder.record(EventKind.ACK, job_id, lane, seq, token=seq + 1)
"""

ENDLESS_WRITER = """
import sys
from laneway._history import HistoryRecorder

recorder = HistoryRecorder(sys.argv[1], worker="doomed")
seq = 0
while True:
    recorder.record("START", f"job-{seq}", "lane", seq, token=seq, time=float(seq))
    seq += 1
"""


def _python(script: str, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.Popen([sys.executable, "-c", script, *args], env=env, stderr=subprocess.PIPE)


def test_recorder_round_trip_across_two_processes(tmp_path: Path) -> None:
    writers = [_python(WRITER, str(tmp_path), f"worker-{lane}", lane) for lane in "xy"]
    for writer in writers:
        _, stderr = writer.communicate(timeout=30)
        assert writer.returncode == 0, stderr.decode()

    events = load_history(tmp_path)

    assert len(list(tmp_path.glob("*.jsonl"))) == 2
    assert len(events) == 2 * 50 * 5
    assert [event.time for event in events] == sorted(event.time for event in events)
    assert {event.worker for event in events} == {"worker-x", "worker-y"}
    assert events[0].kind is EventKind.ENQUEUE
    report = check_history(events)
    assert report.ok, report.details()
    assert report.jobs == 100


def test_recorded_event_round_trips_every_field(tmp_path: Path) -> None:
    with HistoryRecorder(tmp_path, worker="w/1 weird:name") as recorder:
        written = recorder.record(
            K.ACK_REFUSED, "job-1", None, 3, token=9, time=12.5, attempt=2, worker="other"
        )
        assert recorder.path is not None
        assert recorder.path.parent == tmp_path

    assert load_history(tmp_path) == [written]
    assert written == Event(K.ACK_REFUSED, "job-1", None, 3, "other", 9, 12.5, 2)


def test_loader_tolerates_a_torn_last_line(tmp_path: Path) -> None:
    with HistoryRecorder(tmp_path, worker="w1") as recorder:
        first = recorder.record(K.ENQUEUE, "a-0", "a", 0, time=1.0)
        second = recorder.record(K.START, "a-0", "a", 0, token=1, time=2.0)
        path = recorder.path
    assert path is not None
    with path.open("ab") as handle:
        handle.write(b'{"kind":"ACK","job_id":"a-0","lane":"a","se')

    assert load_history(tmp_path) == [first, second]


def test_loader_rejects_a_corrupt_line_that_is_not_the_last(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    good = Event(K.ENQUEUE, "a-0", "a", 0, "p", None, 1.0)
    path.write_text('{"kind":"ACK","job_id"\n' + '{"kind":"ENQUEUE"}\n')
    with pytest.raises(HistoryFormatError, match="broken.jsonl:1"):
        load_history(tmp_path)
    path.write_text('{"kind": "BOGUS"}\n')
    with pytest.raises(HistoryFormatError):
        load_history(tmp_path)
    path.write_text(
        '{"kind":"ENQUEUE","job_id":"a-0","lane":"a","seq":0,"worker":"p","token":null,"time":1}\n'
    )
    assert load_history(tmp_path) == [good]


def test_loader_keeps_write_order_for_events_at_the_same_time(tmp_path: Path) -> None:
    with HistoryRecorder(tmp_path, worker="w1") as recorder:
        kinds = [K.CLAIM, K.START, K.EFFECT, K.ACK]
        for kind in kinds:
            recorder.record(kind, "a-0", "a", 0, token=1, time=5.0)

    assert [event.kind for event in load_history(tmp_path)] == kinds


def test_missing_history_directory_loads_as_empty(tmp_path: Path) -> None:
    assert load_history(tmp_path / "nothing-here") == []


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_writer_killed_with_sigkill_loses_at_most_the_event_being_written(
    tmp_path: Path,
) -> None:
    writer = _python(ENDLESS_WRITER, str(tmp_path))
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            files = list(tmp_path.glob("*.jsonl"))
            if files and files[0].stat().st_size > 20_000:
                break
            assert writer.poll() is None, writer.communicate()[1].decode()
            time.sleep(0.01)
    finally:
        writer.kill()
        writer.communicate(timeout=10)

    events = load_history(tmp_path)

    assert len(events) > 100
    assert [event.seq for event in events] == list(range(len(events)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_records_to_a_file_of_its_own(tmp_path: Path) -> None:
    recorder = HistoryRecorder(tmp_path, worker="w1")
    recorder.record(K.ENQUEUE, "a-0", "a", 0, time=1.0)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            recorder.record(K.START, "a-0", "a", 0, token=1, time=2.0)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    recorder.record(K.ACK, "a-0", "a", 0, token=1, time=3.0)
    recorder.close()

    assert os.waitstatus_to_exitcode(status) == 0
    assert len(list(tmp_path.glob("*.jsonl"))) == 2
    assert [event.kind for event in load_history(tmp_path)] == [K.ENQUEUE, K.START, K.ACK]


# --- properties -----------------------------------------------------------------------

FAILURES = st.sampled_from(["nack", "crash_before_effect", "crash_after_effect", "zombie"])
JOB_PLANS = st.tuples(st.lists(FAILURES, max_size=3), st.sampled_from(["ack", "ack", "dead"]))
WORKERS = ("w1", "w2", "w3")

# An abstract step: (kind, job, worker, attempt whose token it uses; -1 = new claim).
Step = tuple[EventKind, JobRef, str, int]


def _job_steps(ref: JobRef, plan: tuple[list[str], str], rng: random.Random) -> list[Step]:
    """One job's attempts, serial: failed attempts, then success or dead-lettering."""
    failures, final = plan
    steps: list[Step] = []
    zombie: tuple[str, int] | None = None
    for attempt, outcome in enumerate([*failures, final]):
        worker = rng.choice(WORKERS)
        steps += [(K.CLAIM, ref, worker, -1), (K.START, ref, worker, attempt)]
        if zombie is not None:  # The previous holder wakes up after losing its lease.
            steps.append((K.ACK_REFUSED, ref, zombie[0], zombie[1]))
            zombie = None
        if outcome in ("crash_after_effect", "zombie", "ack"):
            steps.append((K.EFFECT, ref, worker, attempt))
        if outcome == "zombie":
            zombie = (worker, attempt)
        elif outcome == "ack":
            steps.append((K.ACK, ref, worker, attempt))
        elif outcome in ("nack", "dead"):
            steps.append((K.NACK, ref, worker, attempt))
    if final == "dead":
        steps.append((K.DEAD, ref, "backend", -2))
    return steps


def _materialise(lanes: list[list[Step]], rng: random.Random) -> list[Event]:
    """Interleave the lanes at random, then assign times and global fencing tokens."""
    cursors = [0] * len(lanes)
    tokens: dict[str, list[int]] = {}
    events: list[Event] = []
    while any(cursor < len(lane) for cursor, lane in zip(cursors, lanes, strict=True)):
        index = rng.choice([i for i, lane in enumerate(lanes) if cursors[i] < len(lane)])
        kind, ref, worker, attempt = lanes[index][cursors[index]]
        cursors[index] += 1
        issued = tokens.setdefault(ref.job_id, [])
        if attempt == -1:
            issued.append(len(events) + 1)  # Monotonic across the whole run.
        token = issued[-1] if attempt == -1 else issued[attempt] if attempt >= 0 else None
        time_ = float(len(events))
        events.append(Event(kind, ref.job_id, ref.lane, ref.seq, worker, token, time_))
    return events


@st.composite
def serial_histories(draw: st.DrawFn) -> tuple[list[Event], list[JobRef], int]:
    """A valid history: lanes interleave, each lane runs its jobs one at a time."""
    rng = draw(st.randoms(use_true_random=False))
    lane_plans = [draw(st.lists(JOB_PLANS, min_size=2, max_size=5))]
    lane_plans += draw(st.lists(st.lists(JOB_PLANS, min_size=1, max_size=4), max_size=3))
    lanes: list[list[Step]] = []
    refs: list[JobRef] = []
    for number, plans in enumerate(lane_plans):
        lane_refs = [job(f"lane{number}", seq) for seq in range(len(plans))]
        steps: list[Step] = [(K.ENQUEUE, ref, "producer", -2) for ref in lane_refs]
        for ref, plan in zip(lane_refs, plans, strict=True):
            steps += _job_steps(ref, plan, rng)
        lanes.append(steps)
        refs += lane_refs
    dead = sum(plan[1] == "dead" for plans in lane_plans for plan in plans)
    return _materialise(lanes, rng), refs, dead


@settings(max_examples=150, deadline=None)
@given(serial_histories(), st.randoms(use_true_random=False))
def test_valid_serial_histories_are_clean(
    history: tuple[list[Event], list[JobRef], int], rng: random.Random
) -> None:
    events, refs, dead = history
    shuffled = list(events)
    rng.shuffle(shuffled)

    report = check_history(shuffled, expected=refs)

    assert report.ok, report.details()
    assert report.jobs == len(refs)
    assert len(report.dead) == dead
    assert all(duplicate.allowed for duplicate in report.duplicated)


@settings(max_examples=150, deadline=None)
@given(serial_histories(), st.data())
def test_swapping_two_jobs_of_a_lane_is_an_order_violation(
    history: tuple[list[Event], list[JobRef], int], data: st.DataObject
) -> None:
    events, _, _ = history
    lane_size = len({event.job_id for event in events if event.lane == "lane0"})
    first = data.draw(st.integers(0, lane_size - 2), label="first")
    second = data.draw(st.integers(first + 1, lane_size - 1), label="second")
    swap = {first: second, second: first}
    relabelled = [
        Event(e.kind, e.job_id, e.lane, swap.get(e.seq, e.seq), e.worker, e.token, e.time)
        if e.lane == "lane0"
        else e
        for e in events
    ]

    report = check_history(relabelled)

    assert not report.ok
    overtaking = JobRef(f"lane0-{first}", "lane0", second)
    blocked = JobRef(f"lane0-{second}", "lane0", first)
    assert any(v.job == overtaking and v.blocking == blocked for v in report.order_violations), (
        report.details()
    )
    assert {v.job.lane for v in report.order_violations} == {"lane0"}
    assert not (report.lost or report.unexpected or report.stale_acks)


def test_a_job_run_again_after_its_accepted_ack_is_never_an_allowed_duplicate() -> None:
    s = Script()
    s.enqueue(A0, A1)
    s.run(A0, "w1")
    token = s.claim(A1, "w2")
    s.add(K.START, A1, "w2", token)
    again = s.claim(A0, "w3")  # A0 delivered again while A1 runs
    s.add(K.START, A0, "w3", again)
    s.add(K.EFFECT, A0, "w3", again)
    s.add(K.ACK_REFUSED, A0, "w3", again)
    s.add(K.ACK, A1, "w2", token)

    for allowed in (None, {A0.job_id}):  # not even for a worker the caller killed
        report = s.check(allow_duplicates_for=allowed)
        assert not report.ok, report.details()
        assert [d.reason for d in report.duplicated] == ["delivered again after its ack was accepted"]
        assert [v.job for v in report.order_violations] == [A0]  # and it ran inside A1's run


def test_a_dead_job_run_again_while_the_next_job_of_its_lane_runs_is_out_of_order() -> None:
    s = Script()
    s.enqueue(A0, A1)
    token = s.claim(A0)
    s.add(K.START, A0, "w1", token)
    s.add(K.DEAD, A0, "w1", token)
    later = s.claim(A1, "w2")
    s.add(K.START, A1, "w2", later)
    s.run(A0, "w3")  # an operator's retry, run beside A1
    s.add(K.ACK, A1, "w2", later)
    assert [v.job for v in s.check().order_violations] == [A0]
    fine = Script()  # the same retry after A1 finished is in order
    fine.enqueue(A0, A1)
    token = fine.claim(A0)
    fine.add(K.START, A0, "w1", token)
    fine.add(K.DEAD, A0, "w1", token)
    fine.run(A1, "w2")
    fine.run(A0, "w3")
    assert fine.check().order_violations == ()


def test_two_jobs_sent_as_one_lane_and_seq_are_unexpected() -> None:
    twin = JobRef("twin", "a", 0)
    s = Script()
    s.enqueue(A0, twin)
    s.run(A0)
    s.run(twin)
    assert [u.job for u in s.check().unexpected] == [twin]


def test_a_claim_and_an_accepted_ack_at_the_same_instant_are_caught_whatever_the_file_order() -> None:
    for first, second in (("w-a", "w-b"), ("w-b", "w-a")):
        s = Script()
        s.enqueue(A0)
        s.add(K.CLAIM, A0, first, 1, at=1.0)
        s.add(K.START, A0, first, 1, at=2.0)
        ack = Event(K.ACK, A0.job_id, "a", 0, first, 1, 5.0)
        claim = Event(K.CLAIM, A0.job_id, "a", 0, second, 2, 5.0)
        events = [*s.events, ack, claim] if first == "w-a" else [*s.events, claim, ack]
        assert not check_history(events).ok, (first, second)


def test_a_job_whose_start_line_is_missing_is_still_checked_for_order() -> None:
    s = Script()
    s.enqueue(A0, A1)
    token = s.claim(A0)
    s.add(K.START, A0, "w1", token)
    inside = s.claim(A1, "w2")
    s.add(K.EFFECT, A1, "w2", inside)  # no START recorded for A1
    s.add(K.ACK, A1, "w2", inside)
    s.add(K.ACK, A0, "w1", token)
    assert [v.job for v in s.check().order_violations] == [A1]


def test_a_history_line_with_a_time_that_is_not_finite_is_refused(tmp_path: Path) -> None:
    line = '{"kind": "START", "job_id": "x", "lane": "a", "seq": 0, "worker": "w", "token": 1, "time": %s}\n'
    (tmp_path / "w.jsonl").write_text(line % "NaN" + line % "2.0")  # not the last line: not a torn write
    with pytest.raises(HistoryFormatError, match="time"):
        load_history(tmp_path)
