"""Recording what workers do into a history the checker can judge.

``HistoryListener`` is a ``WorkerListener``: add it to ``app.listeners`` and every
worker of that app records each claim (with its fencing token) and each outcome, and
whether the backend accepted it, with the backend's clock. Handlers record START and
EFFECT themselves with ``record_start``/``record_effect`` inside the job.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from ._execute import current_job
from ._history import EventKind, HistoryRecorder
from ._records import JobRecord, Outcome, Verdict

LaneSeq = Callable[[JobRecord], tuple[str | None, int]]

_FINAL = {
    Verdict.SUCCEEDED: EventKind.ACK,
    Verdict.RETRY: EventKind.NACK,
    Verdict.RELEASE: EventKind.NACK,
    Verdict.DEAD: EventKind.DEAD,
}


class HistoryListener:
    """Records CLAIM and ACK/ACK_REFUSED/NACK/DEAD events of one worker process.

    Deliveries are told apart by (job id, fencing token): a worker that claims the same
    job twice (its first lease ran out while it was slow, then it won the job again)
    records each outcome against its own claim.

    Args:
        recorder: where events go (one file per process).
        lane_seq: gives a job's (lane, producer sequence number) from its record.
        clock: the backend's clock (``backend.now``), so every process agrees on time.
    """

    def __init__(self, recorder: HistoryRecorder, lane_seq: LaneSeq, clock: Callable[[], float]) -> None:
        self.recorder = recorder
        self.lane_seq = lane_seq
        self.clock = clock
        self._known: dict[tuple[str, int | None], tuple[str | None, int, int]] = {}
        self._sent_at: dict[tuple[str, int | None], float] = {}
        self._lock = threading.Lock()

    def on_claim(self, records: Sequence[JobRecord]) -> None:
        now = self.clock()
        for rec in records:
            lane, seq = self.lane_seq(rec)
            with self._lock:
                self._known[(rec.id, rec.token)] = (lane, seq, rec.attempts)
            self.recorder.record(
                EventKind.CLAIM, rec.id, lane, seq, token=rec.token, time=now, attempt=rec.attempts
            )

    def on_finishing(self, outcomes: Sequence[Outcome]) -> None:
        """Note the time before the backend sees the outcomes: the lane is released at some
        moment after it, so a next job's START is never earlier than this ACK time in a
        correct run, while a START that overlaps the previous job is still earlier."""
        now = self.clock()
        with self._lock:
            for out in outcomes:
                self._sent_at[(out.job_id, out.token)] = now

    def on_finish(self, outcome: Outcome, accepted: bool) -> None:
        with self._lock:
            key = (outcome.job_id, outcome.token)
            lane, seq, attempt = self._known.pop(key, (None, -1, 0))
            sent_at = self._sent_at.pop(key, None)
        kind = _FINAL[outcome.verdict] if accepted else EventKind.ACK_REFUSED
        if not accepted and outcome.verdict is not Verdict.SUCCEEDED:
            kind = EventKind.NACK
        when = sent_at if sent_at is not None else self.clock()
        self.recorder.record(kind, outcome.job_id, lane, seq, token=outcome.token, time=when, attempt=attempt)


def record_in_job(
    recorder: HistoryRecorder, kind: EventKind, lane: str | None, seq: int, clock: Callable[[], float]
) -> None:
    """Record START or EFFECT for the job this handler is running."""
    job = current_job()
    if job is None:
        raise RuntimeError("record_in_job must be called from inside a handler")
    rec = job.record
    recorder.record(
        kind,
        job.id,
        lane,
        seq,
        token=rec.token if rec else None,
        time=clock(),
        attempt=rec.attempts if rec else None,
    )
