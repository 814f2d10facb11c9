"""RELIABILITY fault 10: payloads at and over the size limit, and garbage in storage.

- A call whose encoded payload is one byte over ``max_payload_bytes`` (1 MiB) is refused
  with ``PayloadTooLarge`` and nothing is written.
- A call of exactly the limit is stored byte for byte (the payload read back equals the
  one encoded) and its handler receives the very same data (its SHA-256 matches).
- Garbage written straight into a queued job's stored payload (SQL ``UPDATE``, Redis
  ``HSET``, or the memory store) makes that job go dead with ``DecodeError``; the lane
  moves on, and the same worker keeps running the jobs that come after.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import sqlite3
import string
from collections.abc import Callable
from pathlib import Path

import pytest

from laneway import PayloadTooLarge
from laneway._codec import decode_call, loads
from laneway._constants import MAX_PAYLOAD_BYTES
from laneway._history import EventKind
from laneway._records import Status
from laneway.backends import Backend

from ._procs import Fleet, Producer, wait_until
from ._runs import pending, running_workers
from .conftest import ALL_BACKENDS, Chaos, Figures, timeout

GARBAGE = b"\xff\xfe\x00{not json, not msgpack\x9c"


def _write_garbage(target: Chaos, backend: Backend, job_id: str) -> None:
    """Overwrite a stored job's payload with ``GARBAGE``, behind laneway's back."""
    if target.kind == "memory":
        store = backend._jobs[job_id]  # type: ignore[attr-defined]
        store.rec = dataclasses.replace(store.rec, payload=GARBAGE)
    elif target.kind == "sqlite":
        with sqlite3.connect(target.url.removeprefix("sqlite:///")) as conn:
            conn.execute(f'UPDATE "{target.namespace}_jobs" SET payload = ? WHERE id = ?', (GARBAGE, job_id))
    elif target.kind in ("redis", "redis-cluster"):
        found = backend._locate(job_id)  # type: ignore[attr-defined]
        assert found is not None
        backend.link.execute("HSET", found[0].job(job_id), "P", GARBAGE)  # type: ignore[attr-defined]
    else:
        import psycopg
        from psycopg import sql

        with psycopg.connect(target.url, autocommit=True) as conn:
            query = sql.SQL("UPDATE {}.jobs SET payload = %s WHERE id = %s").format(
                sql.Identifier(target.namespace)
            )
            conn.execute(query, [GARBAGE, job_id])
    rec = backend.get_job(job_id)
    assert rec is not None and rec.payload == GARBAGE, "the garbage did not reach the store"


def _data_of_size(producer: Producer, size: int) -> str:
    """A string ``data`` such that ``echo(None, 0, data)`` encodes to exactly ``size`` bytes."""
    rng = random.Random(10)
    alphabet = string.ascii_letters + string.digits + " -_/"
    base = len(producer.app.codec.encode_call([None, 0, ""], {}, {}))
    return "".join(rng.choice(alphabet) for _ in range(size - base))


@pytest.mark.parametrize("kind", ALL_BACKENDS)
@timeout(120, 240)
def test_payloads_at_the_limit_round_trip_over_it_are_refused_and_garbage_goes_dead_not_the_worker(
    kind: str, chaos_factory: Callable[[str], Chaos], tmp_path: Path, figures: Figures
) -> None:
    target = chaos_factory(kind)
    backend = target.open()
    with Fleet(tmp_path, target.url, target.namespace) as fleet:
        producer = Producer(fleet, target.url, target.namespace)
        try:
            exact = _data_of_size(producer, MAX_PAYLOAD_BYTES)
            with pytest.raises(PayloadTooLarge):
                producer.send("echo", None, 1, exact + "x")
            nothing_written = backend.stats() == [] and backend.list_jobs() == []
            exact_id = producer.send("echo", None, 0, exact)
            stored = backend.get_job(exact_id)
            garbage_id = producer.send("step", "g", 0)
            follower_id = producer.send("step", "g", 1)
            _write_garbage(target, backend, garbage_id)
            with running_workers(target, fleet, 1, concurrency=2):
                wait_until(lambda: pending(backend) == 0, 60, "the first jobs to finish", every_s=0.2)
                later_id = producer.send("step", "later", 0)
                wait_until(
                    lambda: _status(backend, later_id) is Status.SUCCEEDED, 30, "a job after the garbage"
                )
                workers_alive = all(p.alive() for p in fleet.procs)
            exact_rec = backend.get_job(exact_id)
            garbage_rec = backend.get_job(garbage_id)
        finally:
            producer.close()
        later_runners = {
            e.worker for e in fleet.events() if e.kind is EventKind.START and e.job_id == later_id
        }
        garbage_runners = {
            e.worker for e in fleet.events() if e.kind is EventKind.CLAIM and e.job_id == garbage_id
        }

    figures(backend=kind, limit_bytes=MAX_PAYLOAD_BYTES, over_limit_refused=True,
            exact_stored_bytes=len(stored.payload) if stored else None,
            garbage_status=garbage_rec.status.value if garbage_rec else None)  # fmt: skip
    assert nothing_written, "a refused payload left something behind"
    assert stored is not None and len(stored.payload) == MAX_PAYLOAD_BYTES
    assert decode_call(stored.payload).args == [None, 0, exact], "the stored payload is not the encoded call"
    assert exact_rec is not None and exact_rec.status is Status.SUCCEEDED
    expected_digest = hashlib.sha256(exact.encode()).hexdigest()
    assert exact_rec.result is not None and loads(exact_rec.result) == expected_digest
    assert garbage_rec is not None and garbage_rec.status is Status.DEAD, garbage_rec
    assert garbage_rec.error is not None and "DecodeError" in garbage_rec.error, garbage_rec.error
    assert _status(backend, follower_id) is Status.SUCCEEDED, "the lane did not move on past the garbage"
    assert workers_alive, "a worker process died of the garbage"
    assert garbage_runners and later_runners <= garbage_runners, (
        "the job after the garbage ran on another worker"
    )


def _status(backend: Backend, job_id: str) -> Status | None:
    rec = backend.get_job(job_id)
    return None if rec is None else rec.status
