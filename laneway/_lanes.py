"""Low-level lanes (the WorkerRoulette model): send raw JSON messages on a lane and
claim a lane's messages in batches.

Messages are stored as jobs of the reserved task ``laneway.message``, so they get the
same lanes, leases, fencing and crash recovery as jobs. Use queues of their own for
them: a job worker listening on such a queue would count them as unknown tasks.

Preprocessors transform messages: ``app.preprocessors.send`` run on ``send`` (in order)
and ``app.preprocessors.claim`` on every claimed message; each is ``fn(message, headers)``
returning the (possibly changed) ``(message, headers)``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._checks import count, seconds
from ._codec import decode_call
from ._constants import MESSAGE_TASK
from ._errors import ConfigError, DecodeError, LeaseLost
from ._names import check_lane, check_name
from ._records import JobRecord, Outcome, Verdict

if TYPE_CHECKING:
    from ._app import App

Preprocessor = Callable[[Any, dict[str, str]], tuple[Any, dict[str, str]]]


@dataclass(slots=True)
class Preprocessors:
    """Message transforms applied on send and on claim."""

    send: list[Preprocessor] = field(default_factory=list)
    claim: list[Preprocessor] = field(default_factory=list)


class LaneProducer:
    """Sends messages on one lane of one queue, in order."""

    def __init__(self, app: App, lane: str, queue: str) -> None:
        self.app = app
        if lane is None:  # check_lane allows None (a job without a lane); a lane producer needs one
            raise ConfigError("app.lane() needs a lane id: messages without one would have no order")
        self.lane = check_lane(lane)
        self.queue = check_name(queue, "queue")
        self._task = app.tasks.get(MESSAGE_TASK) or app._register(_message_task, {"name": MESSAGE_TASK})

    def send(self, message: Any, headers: dict[str, str] | None = None) -> str:
        """Append ``message`` (any JSON value) to the lane; returns its id."""
        hdrs = dict(headers or {})
        for fn in self.app.preprocessors.send:
            message, hdrs = fn(message, hdrs)
        opts = self._task.opts.merge(queue=self.queue, lane=self.lane)
        news = self.app._prepare(self._task, [([message], {})], opts, headers=hdrs)
        return self.app.backend.enqueue(news)[0].id


def _message_task(message: Any) -> Any:
    return message


@dataclass(slots=True)
class Batch:
    """Consecutive messages of one lane, held under one lease until ``ack()``."""

    app: App
    queue: str
    lane: str | None
    records: list[JobRecord]
    messages: list[Any]
    headers: list[dict[str, str]]
    token: int
    done: bool = False

    def ack(self) -> None:
        """Mark every message done and free the lane. Raises ``LeaseLost`` if the lease
        ran out first (the messages were handed to another consumer)."""
        self._finish(Verdict.SUCCEEDED)

    def release(self) -> None:
        """Give the messages back, unprocessed and without spending an attempt."""
        self._finish(Verdict.RELEASE)

    def extend(self, lease_s: float | None = None) -> None:
        """Keep the lease for ``lease_s`` more seconds; raises ``LeaseLost`` if it is gone."""
        lease_s = self.app.lease_s if lease_s is None else seconds(lease_s, "lease_s", positive=True)
        if not self.app.backend.extend([self.token], lease_s)[0]:
            raise LeaseLost(f"lease {self.token} on lane {self.lane!r} is gone")

    def _finish(self, verdict: Verdict) -> None:
        if self.done:
            return
        outs = [Outcome(r.id, self.token, verdict) for r in self.records]
        accepted = self.app.backend.finish(outs)
        self.done = True
        if not all(accepted):
            raise LeaseLost(f"lease {self.token} on lane {self.lane!r} ran out before the ack")


def claim_batch(app: App, queue: str, batch: int, lease_s: float) -> Batch | None:
    """Claim the next ready lane of ``queue`` with up to ``batch`` messages."""
    count(batch, "batch")
    lease_s = seconds(lease_s, "lease_s", positive=True)
    recs = app.backend.claim(
        [check_name(queue, "queue")],
        worker=f"claim:{id(app):x}",
        limit=batch,
        batch=batch,
        max_lanes=1,
        lease_s=lease_s,
    )
    if not recs:
        return None
    messages, headers = [], []
    for rec in recs:
        try:
            call = decode_call(rec.payload)
            msg, hdrs = (call.args[0] if call.args else None), call.headers
        except DecodeError:
            msg, hdrs = None, {"laneway-error": "undecodable message"}
        for fn in app.preprocessors.claim:
            msg, hdrs = fn(msg, hdrs)
        messages.append(msg)
        headers.append(hdrs)
    token = recs[0].token
    assert token is not None
    return Batch(app, queue, recs[0].lane, recs, messages, headers, token)


def iter_batches(
    app: App,
    queue: str,
    batch: int,
    on_ready: Callable[[], Any] | None,
    lease_s: float,
    stop: threading.Event | None,
) -> Iterator[Batch]:
    """Yield batches forever (or until ``stop`` is set), waiting on the backend between."""
    ready_called = False
    while stop is None or not stop.is_set():
        got = claim_batch(app, queue, batch, lease_s)
        if got is not None:
            yield got
            continue
        if not ready_called and on_ready is not None:
            on_ready()
            ready_called = True
        app.backend.wait([queue], 1.0)
