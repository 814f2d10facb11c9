"""``redis://``, ``rediss://`` and ``redis+cluster://``: lanes, leases and fencing in Lua.

Every state change is one Lua script (``*.lua`` beside this module; the key schema is at
the top of ``lib.lua``) run on one shard, so it is atomic and touches one hash slot. A
plain server is one shard; a cluster has ``shards`` of them (16 by default), each pinned
to a hash tag: claims there peek at every shard and take the best lanes overall (see
``_cluster.py``). See ``docs/backends/redis.md``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from ..._errors import ConfigError
from ..._records import EnqueueResult, JobRecord, NewJob, Outcome
from .._base import Backend
from ._async import AsyncLink
from ._cluster import Placement, Take, in_claim_order, plan
from ._inspect import Inspect
from ._keys import Layout, Shard
from ._link import ClusterLink, Command, Link, Script, SingleLink
from ._rows import FIELD_NAMES, US, Row, job_args, outcome_args, record

log = logging.getLogger("laneway.redis")

SCRIPT_NAMES = (
    "enqueue", "claim", "peek", "lease", "finish", "extend", "sweep", "cancel", "retry", "purge", "stats",
    "lanes", "list",
)  # fmt: skip
PROMOTE_MAX = 200
"""Most due jobs one script call promotes per queue: a claim leaves the rest to the next
claims; a send with a lane calls again until none is left (``_behind``)."""
CLAIM_ROUNDS = 3
"""Most peek-and-claim rounds of one cluster claim: another worker that takes a peeked lane
first makes the claim short, and the shards are peeked again for the rest."""
SWEEP_LEASES_MAX = 100
PRUNE_MAX = 1000
_UNLINK_CHUNK = 500
WARN_EVERY_S = 5.0
"""Least time between two warnings about shards skipped by claims (or by sweeps)."""
_warned: dict[str, float] = {}

_scripts: dict[str, Script] = {}
_scripts_lock = threading.Lock()


def scripts() -> dict[str, Script]:
    """The package's scripts, read once per process."""
    with _scripts_lock:
        if not _scripts:
            _scripts.update({name: Script.load(name) for name in SCRIPT_NAMES})
        return _scripts


def _behind(reply: Any) -> bool:
    """Whether ``enqueue.lua`` stored nothing because more due jobs wait to join their lanes
    than one call promotes (it promoted a batch of them; the next call goes on)."""
    return isinstance(reply, list) and len(reply) == 1 and reply[0] == -1


def _raise_errors(replies: Sequence[Any]) -> None:
    """Raise the first error reply (a script's error, or redis-py's ``ClusterError`` when a
    cluster node kept answering TRYAGAIN or could not be reached)."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply


def _answered(replies: Sequence[Any], what: str) -> list[bool]:
    """Which shards' replies can be used. A shard whose reply is an error (its slot is
    migrating, its node is failing over) is left out with a warning (at most one every
    ``WARN_EVERY_S`` per kind of call), so that the work of the other shards goes on; when
    every shard failed, the first error is raised."""
    ok = [not isinstance(r, Exception) for r in replies]
    if all(ok):
        return ok
    if not any(ok):
        _raise_errors(replies)
    now = time.monotonic()
    if now >= _warned.get(what, 0.0):
        _warned[what] = now + WARN_EVERY_S
        err = next(r for r in replies if isinstance(r, Exception))
        log.warning("%s failed on %d of %d shards, which are skipped: %s: %s",
                    what, ok.count(False), len(ok), type(err).__name__, err)  # fmt: skip
    return ok


def _lanes(taken: Sequence[tuple[int, JobRecord]]) -> int:
    """How many lanes the claimed jobs are of (a job without a lane is a lane of its own)."""
    return len({(r.queue, r.lane) if r.lane is not None else r.id for _, r in taken})


class RedisCore(Inspect, Backend):
    """The backend over any ``Link``; ``RedisBackend`` and ``RedisClusterBackend`` pick one."""

    def __init__(
        self, link: Link, *, namespace: str, shards: int, wake_channel: bool, create: bool = True
    ) -> None:
        self.link = link
        try:
            self.layout = Layout(namespace, shards)
        except ConfigError:
            link.close()
            raise
        self.scripts = scripts()
        for script in self.scripts.values():
            link.register(script)
        self._chan = self.layout.wake_channel() if wake_channel else ""
        self.placement = Placement()
        self._due: dict[tuple[str, ...], float] = {}
        try:
            self._check_config(create)
        except BaseException:
            link.close()
            raise

    def _check_config(self, create: bool) -> None:
        """Record the namespace's shard count on first use and check it on every later one;
        without ``create``, only check, and refuse a namespace nobody ever used."""
        key = self.layout.config_key
        if create:
            _, stored = self.link.pipeline(
                [("HSETNX", key, "shards", self.layout.n), ("HGET", key, "shards")]
            )
        else:
            stored = self.link.execute("HGET", key, "shards")
        _raise_errors([stored])
        if stored is None and not create:
            raise ConfigError(
                f"no laneway namespace {self.layout.namespace!r} on this Redis (check --namespace;"
                " it is made when an app first uses it)"
            )
        if stored is not None and int(stored) != self.layout.n:
            raise ConfigError(
                f"namespace {self.layout.namespace!r} was created with {int(stored)} shards; "
                f"open it with shards={int(stored)}, not {self.layout.n}"
            )

    # --- enqueue -----------------------------------------------------------------------

    def _enqueue_cmd(self, shard: Shard, jobs: Sequence[NewJob], tick: tuple[str, float] | None) -> Command:
        s = shard
        keys = [s.key("n"), s.key("u"), s.key("a"), s.key("t"), s.key("held")]
        args: list[Any] = [*((tick[0], repr(float(tick[1]))) if tick else ("", "")), PROMOTE_MAX]
        for job in jobs:
            job_key = s.job(job.id)
            lane_key = s.lane(job.queue, job.lane) if job.lane else job_key
            keys += [job_key, *s.declared_queue_keys(job.queue, not self._chan), lane_key]
            args += job_args(job)
        return self._run("enqueue", shard, keys, args)

    def _send(self, cmd: Command) -> Any:
        """Run one ``enqueue.lua`` call until it stores the jobs (see ``_behind``)."""
        reply = self.link.execute(*cmd)
        while _behind(reply):
            reply = self.link.execute(*cmd)
        return reply

    @staticmethod
    def _results(jobs: Sequence[NewJob], reply: Sequence[Any]) -> list[EnqueueResult]:
        return [
            EnqueueResult(job.id, True) if r == 1 else EnqueueResult(r.decode(), False)
            for job, r in zip(jobs, reply, strict=True)
        ]

    def enqueue(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[EnqueueResult]:
        """Store ``jobs``: one script call per shard, all in one round trip.

        Atomic for the whole call on one server; on a cluster, atomic per shard.
        """
        if connection is not None:
            raise ConfigError("Redis has no SQL transactions: connection= is for SQL backends")
        if not jobs:
            return []
        layout = self.layout
        if layout.n == 1 or len(jobs) == 1:
            shard = layout.job_shard(jobs[0])
            return self._results(jobs, self._send(self._enqueue_cmd(shard, jobs, None)))
        groups: dict[int, list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault(layout.job_shard(job).index, []).append(i)
        cmds = [
            self._enqueue_cmd(layout.shards[k], [jobs[i] for i in idx], None) for k, idx in groups.items()
        ]
        replies = self.link.pipeline(cmds)
        _raise_errors(replies)
        for i, reply in enumerate(replies):
            if _behind(reply):
                replies[i] = self._send(cmds[i])
        out: list[EnqueueResult | None] = [None] * len(jobs)
        for idx, reply in zip(groups.values(), replies, strict=True):
            for i, res in zip(idx, self._results([jobs[i] for i in idx], reply), strict=True):
                out[i] = res
        return [r for r in out if r is not None]

    def claim_tick(self, name: str, tick: float, job: NewJob) -> bool:
        shard = self.layout.job_shard(job, tick_name=name)
        reply = self._send(self._enqueue_cmd(shard, [job], (name, tick)))
        return bool(reply[0] == 1)

    # --- claim and lease ---------------------------------------------------------------

    def _claim_parts(
        self,
        shard: Shard,
        queues: Sequence[str],
        worker: str,
        take: Take,
        batch: int,
        lease_s: float,
        lease: str,
    ) -> tuple[list[str], list[Any]]:
        """The keys (after ``P c``) and arguments (after the channel) of ``claim.lua``."""
        keys = [shard.key("n"), shard.key("held"), shard.key("K")]
        for q in queues:
            keys += shard.declared_queue_keys(q, not self._chan)
        args = [worker, take.limit, batch, take.lanes, round(lease_s * US), PROMOTE_MAX, lease, *queues]
        return keys, args

    def _note_due(self, queues: Sequence[str], due_in_us: float) -> None:
        """Remember when the earliest delayed job of ``queues`` is due (for ``wait``)."""
        self._due[tuple(queues)] = time.monotonic() + due_in_us / US if due_in_us >= 0 else float("inf")

    def claim(
        self,
        queues: Sequence[str],
        *,
        worker: str,
        limit: int,
        batch: int = 1,
        max_lanes: int | None = None,
        lease_s: float,
    ) -> list[JobRecord]:
        """Lease the best ready lanes: one script call on one server; on a cluster, a peek
        at every shard and then the claim on the shards holding the best lanes."""
        lanes = limit if max_lanes is None else max_lanes
        if limit < 1 or lanes < 1 or not queues:
            return []
        want, batch = Take(limit, lanes), max(1, batch)
        if self.layout.n > 1:
            peeks = self.link.pipeline(self._peek_cmds(queues, lanes))
            return self._claim_peeked(peeks, queues, worker, want, batch, lease_s)
        return self._claimed(
            queues, self.link.execute(*self._claim_here(queues, worker, want, batch, lease_s))
        )

    def _claim_here(
        self, queues: Sequence[str], worker: str, want: Take, batch: int, lease_s: float
    ) -> Command:
        """``claim.lua`` on the only shard (a single server)."""
        shard = self.layout.shards[0]
        return self._run("claim", shard, *self._claim_parts(shard, queues, worker, want, batch, lease_s, ""))

    def _wake_keys(self, queues: Sequence[str]) -> list[str]:
        """The wake lists of ``queues`` on the only shard (a single server)."""
        return [self.layout.shards[0].queue_keys(q)[2] for q in queues]

    def _claimed(self, queues: Sequence[str], reply: Any) -> list[JobRecord]:
        """The jobs of one ``claim.lua`` reply (an empty one notes the next due time)."""
        if isinstance(reply, Exception):
            raise reply
        _, now_us, due, _, rows = reply
        if rows:
            return [record(row) for row in rows]
        self._note_due(queues, due - now_us if due >= 0 else -1)
        return []

    def _peek_cmds(self, queues: Sequence[str], lanes: int) -> list[Command]:
        """A cluster-wide lease number (``lease.lua``), then ``peek.lua`` on every shard."""
        return [self._run("lease", self.layout.shards[0], [], []), *self._peeks(queues, lanes)]

    def _peeks(self, queues: Sequence[str], lanes: int) -> list[Command]:
        """``peek.lua`` on every shard."""
        cmds: list[Command] = []
        for s in self.layout.shards:
            keys = [s.key("n"), s.key("held"), *(k for q in queues for k in s.declared_queue_keys(q, False))]
            cmds.append(self._run("peek", s, keys, [lanes, PROMOTE_MAX, *queues]))
        return cmds

    def _claim_peeked(
        self,
        replies: Sequence[Any],
        queues: Sequence[str],
        worker: str,
        want: Take,
        batch: int,
        lease_s: float,
    ) -> list[JobRecord]:
        """Claim the best lanes the peeks found, under the lease number they came with.

        A shard whose peek or claim failed is left out (see ``_answered``). When a shard
        took fewer lanes than planned (another worker took a peeked lane first), every
        shard is peeked again and the rest is claimed under the same lease, up to
        ``CLAIM_ROUNDS`` rounds in all: the loser of a race takes the ready lanes of the
        other shards now, not after its next idle wait. A claim still short after the last
        round publishes a wake-up on ``queues``, so that the idle workers (this one too)
        claim again at once: many workers that peek together all plan the same best lane.
        """
        _raise_errors(replies[:1])
        lease, peeks = int(replies[0]), replies[1:]
        taken: list[tuple[int, JobRecord]] = []
        for rounds in range(1, CLAIM_ROUNDS + 1):
            try:
                if rounds > 1:
                    peeks = self.link.pipeline(self._peeks(queues, want.lanes - _lanes(taken)))
                short = self._claim_round(peeks, queues, worker, want, batch, lease_s, lease, taken)
                if short and rounds == CLAIM_ROUNDS:
                    self.link.pipeline([("PUBLISH", self._chan + q, "1") for q in queues])
            except Exception:
                if not taken:
                    raise
                # the jobs taken are leased: hand them out rather than leave them to the sweep
                log.warning("claiming more after a lost race failed; keeping the jobs taken", exc_info=True)
                break
            if not short:
                break
        if not taken:
            return []
        self.placement.remember(lease, taken)
        groups: dict[int, list[JobRecord]] = {}
        for k, rec in taken:
            groups.setdefault(k, []).append(rec)
        return in_claim_order(list(groups.values()), queues)

    def _claim_round(
        self,
        peeks: Sequence[Any],
        queues: Sequence[str],
        worker: str,
        want: Take,
        batch: int,
        lease_s: float,
        lease: int,
        taken: list[tuple[int, JobRecord]],
    ) -> bool:
        """Claim what ``want`` leaves after ``taken`` from the best lanes of ``peeks``, adding
        the jobs to ``taken``; True when a shard took fewer lanes than planned and more may
        be wanted (the caller peeks again)."""
        lanes = _lanes(taken)
        ok = _answered(peeks, "peek")
        best = [p[2] if good else [] for p, good in zip(peeks, ok, strict=True)]
        takes = plan(best, want.limit - len(taken), want.lanes - lanes, batch)
        if not takes:
            dues = (due - now for (now, due, _), good in zip(peeks, ok, strict=True) if good and due >= 0)
            self._note_due(queues, min(dues, default=-1))
            return False
        shards, order = self.layout.shards, list(takes)
        replies = self.link.pipeline(
            [
                self._run(
                    "claim",
                    shards[k],
                    *self._claim_parts(shards[k], queues, worker, takes[k], batch, lease_s, str(lease)),
                )
                for k in order
            ]
        )
        short = False
        for k, reply, good in zip(order, replies, _answered(replies, "claim"), strict=True):
            if good:
                taken += [(k, record(row)) for row in reply[4]]
                lanes += reply[3]
                short = short or reply[3] < takes[k].lanes
        return short and len(taken) < want.limit and lanes < want.lanes

    def finish_and_claim(
        self,
        outcomes: Sequence[Outcome],
        queues: Sequence[str],
        *,
        worker: str,
        limit: int,
        batch: int = 1,
        lease_s: float,
    ) -> tuple[list[bool], list[JobRecord]]:
        """Finish and claim in one round trip: the finish scripts and then the claim
        script (a cluster's peeks) in one pipeline; a cluster's claim is a second one."""
        claiming = limit > 0 and bool(queues)
        want, batch = Take(limit, limit), max(1, batch)
        if self.layout.n == 1 and claiming and outcomes:
            return self._finish_and_claim_here(outcomes, queues, worker, want, batch, lease_s)
        if self.layout.n == 1:  # only one of the two to do: the plain calls
            return super().finish_and_claim(
                outcomes, queues, worker=worker, limit=limit, batch=batch, lease_s=lease_s
            )
        groups, cmds = self._finish_cmds(outcomes)
        if claiming:
            cmds += self._peek_cmds(queues, limit)
        if not cmds:
            return [], []
        replies = self.link.pipeline(cmds)
        accepted = self._finished(outcomes, groups, replies[: len(groups)])
        if not claiming:
            return accepted, []
        try:
            return accepted, self._claim_peeked(replies[len(groups) :], queues, worker, want, batch, lease_s)
        except Exception:  # the outcomes are applied; the next claim will retry
            log.warning("claim after finish failed; claiming again later", exc_info=True)
            return accepted, []

    def _finish_and_claim_here(
        self,
        outcomes: Sequence[Outcome],
        queues: Sequence[str],
        worker: str,
        want: Take,
        batch: int,
        lease_s: float,
    ) -> tuple[list[bool], list[JobRecord]]:
        """One server: ``finish.lua`` applies the outcomes and then claims, in one call."""
        shard = self.layout.shards[0]
        keys, args = self._finish_parts(shard, outcomes)
        claim_keys, claim_args = self._claim_parts(shard, queues, worker, want, batch, lease_s, "")
        accepted, claimed = self.link.execute(
            *self._run("finish", shard, keys + claim_keys, args + claim_args)
        )
        return [ok == 1 for ok in accepted], self._claimed(queues, claimed)

    def _job_shards(self, job_ids: Sequence[str]) -> list[int | None]:
        """The shard of each job (None: not found): remembered, else looked up."""
        if self.layout.n == 1:
            return [0] * len(job_ids)
        known = [self.placement.jobs.get(i) for i in job_ids]
        missing = sorted({i for i, k in zip(job_ids, known, strict=True) if k is None})
        if missing:
            shards = self.layout.shards
            replies = self.link.pipeline([("EXISTS", s.job(i)) for i in missing for s in shards])
            found = {
                i: k
                for n, i in enumerate(missing)
                for k in range(len(shards))
                if replies[n * len(shards) + k] == 1
            }
            known = [found.get(i) if k is None else k for i, k in zip(job_ids, known, strict=True)]
        return known

    def extend(self, tokens: Sequence[int], lease_s: float) -> list[bool]:
        """Extend leases; on a cluster a lease lives on in every shard it has jobs in."""
        everywhere = tuple(range(self.layout.n))
        per_shard: dict[int, list[int]] = {}
        for i, token in enumerate(tokens):
            for k in self.placement.leases.get(int(token), everywhere):
                per_shard.setdefault(k, []).append(i)
        cmds = [
            self._run("extend", self.layout.shards[k], [self.layout.shards[k].key("K")],
                      [round(lease_s * US), *(int(tokens[i]) for i in idx)])
            for k, idx in per_shard.items()
        ]  # fmt: skip
        replies = self.link.pipeline(cmds)
        _raise_errors(replies)
        out = [False] * len(tokens)
        for idx, reply in zip(per_shard.values(), replies, strict=True):
            for i, ok in zip(idx, reply, strict=True):
                out[i] = out[i] or ok == 1
        return out

    def _finish_cmds(self, outcomes: Sequence[Outcome]) -> tuple[list[list[int]], list[Command]]:
        """One ``finish.lua`` call per shard, and the positions of its outcomes."""
        per_shard: dict[int, list[int]] = {}
        for i, k in enumerate(self._job_shards([o.job_id for o in outcomes]) if outcomes else []):
            if k is not None:
                per_shard.setdefault(k, []).append(i)
        cmds = []
        for k, idx in per_shard.items():
            keys, args = self._finish_parts(self.layout.shards[k], [outcomes[i] for i in idx])
            cmds.append(self._run("finish", self.layout.shards[k], keys, args))
        return list(per_shard.values()), cmds

    @staticmethod
    def _finish_parts(shard: Shard, outcomes: Sequence[Outcome]) -> tuple[list[str], list[Any]]:
        """The keys (after ``P c``) and arguments (after the channel) of ``finish.lua``."""
        keys = [shard.key(s) for s in ("n", "u", "x", "D", "K", "held")]
        args: list[Any] = [8 * len(outcomes)]
        for out in outcomes:
            keys.append(shard.job(out.job_id))
            args += outcome_args(out)
        return keys, args

    def _finished(
        self, outcomes: Sequence[Outcome], groups: list[list[int]], replies: Sequence[Any]
    ) -> list[bool]:
        _raise_errors(replies)
        out = [False] * len(outcomes)
        for idx, reply in zip(groups, replies, strict=True):
            for i, ok in zip(idx, reply, strict=True):
                out[i] = ok == 1
        if self.layout.n > 1:
            for o in outcomes:
                self.placement.jobs.pop(o.job_id, None)
        return out

    def finish(self, outcomes: Sequence[Outcome], *, connection: Any = None) -> list[bool]:
        """Apply outcomes: one script call per shard, all in one round trip."""
        if connection is not None:
            raise ConfigError("Redis has no SQL transactions: connection= is for SQL backends")
        groups, cmds = self._finish_cmds(outcomes)
        replies = [self.link.execute(*cmds[0])] if len(cmds) == 1 else self.link.pipeline(cmds)
        return self._finished(outcomes, groups, replies)

    def sweep(self, *, worker: str | None = None) -> int:
        """Recover lost leases and prune expired jobs on every shard (bounded per call)."""
        pending = list(self.layout.shards)
        recovered = 0
        while pending:
            cmds = [
                self._run("sweep", s, [s.key(k) for k in ("n", "u", "x", "D", "K", "held", "a")],
                          [worker or "", SWEEP_LEASES_MAX, PRUNE_MAX])
                for s in pending
            ]  # fmt: skip
            replies = self.link.pipeline(cmds)
            ok = _answered(replies, "sweep")
            recovered += sum(int(r[0]) for r, good in zip(replies, ok, strict=True) if good)
            pending = [s for s, r, good in zip(pending, replies, ok, strict=True) if good and r[2] == 1]
        return recovered

    def _wait_timeout(self, queues: Sequence[str], timeout_s: float) -> float:
        """``timeout_s``, cut to when the earliest due job seen by the last empty claim
        on ``queues`` comes due."""
        due = self._due.get(tuple(queues), float("inf"))
        return min(timeout_s, due - time.monotonic())

    def wait(self, queues: Sequence[str], timeout_s: float) -> None:
        """Block on the queues' wake-up tokens, no longer than until the earliest due job
        seen by this process's last empty claim on the same queues."""
        timeout_s = self._wait_timeout(queues, timeout_s)
        if timeout_s <= 0 or not queues:
            return
        if self._chan:
            self.link.wait([], [self._chan + q for q in queues], timeout_s)
        else:
            self.link.wait(self._wake_keys(queues), [], timeout_s)

    # --- inspect and operate -----------------------------------------------------------

    def now(self) -> float:
        sec, usec = self.link.execute("TIME")
        return int(sec) + int(usec) / US

    def _locate(self, job_id: str) -> tuple[Shard, Row] | None:
        """The shard holding ``job_id`` and its fields, or None."""
        shards = self.layout.shards
        cmds = [("HMGET", s.job(job_id), *FIELD_NAMES) for s in shards]
        replies = [self.link.execute(*cmds[0])] if len(shards) == 1 else self.link.pipeline(cmds)
        _raise_errors(replies)
        for shard, fields in zip(shards, replies, strict=True):
            if fields[0] is not None:
                return shard, [job_id.encode(), *fields]
        return None

    def get_job(self, job_id: str) -> JobRecord | None:
        found = self._locate(job_id)
        return None if found is None else record(found[1])

    def _job_script(self, name: str, job_id: str) -> bool:
        found = self._locate(job_id)
        if found is None:
            return False
        s = found[0]
        keys = [s.key(k) for k in ("n", "u", "x", "D", "held")] + [s.job(job_id)]
        return bool(self.link.execute(*self._run(name, s, keys, [job_id])) == 1)

    def cancel(self, job_id: str) -> bool:
        return self._job_script("cancel", job_id)

    def retry(self, job_id: str) -> bool:
        return self._job_script("retry", job_id)

    def put_meta(self, key: str, value: bytes | None) -> None:
        meta = self.layout.shards[0].key("meta")
        if value is None:
            self.link.execute("HDEL", meta, key)
        else:
            self.link.execute("HSET", meta, key, value)

    def get_meta(self, prefix: str) -> dict[str, bytes]:
        reply = self.link.execute("HGETALL", self.layout.shards[0].key("meta"))
        pairs = dict(zip(reply[::2], reply[1::2], strict=True)) if isinstance(reply, list) else dict(reply)
        out = {k.decode(): v for k, v in pairs.items()}
        return {k: v for k, v in out.items() if k.startswith(prefix)}

    def drop_namespace(self) -> None:
        """Delete every key of this namespace (SCAN + UNLINK; for tests and teardown)."""
        batch: list[Command] = []
        for key in self.link.scan(self.layout.pattern):
            batch.append(("UNLINK", key))
            if len(batch) >= _UNLINK_CHUNK:
                self.link.pipeline(batch)
                batch = []
        self.link.pipeline(batch)

    def close(self) -> None:
        self.link.close()


class RedisBackend(RedisCore):
    """One Redis server: ``redis://[user:pass@]host:port/db``, ``rediss://`` (TLS; the
    ``ssl_*`` query options such as ``ssl_cert_reqs`` and ``ssl_ca_certs`` go to redis-py)
    or ``unix://``. The whole namespace is one shard, so every call is atomic.

    A query option redis-py's connections do not take raises ``ConfigError`` here."""

    def __init__(self, url: str, *, namespace: str, create: bool = True) -> None:
        self.single = SingleLink(url)
        self._async = AsyncLink(url, self.single)
        super().__init__(self.single, namespace=namespace, shards=1, wake_channel=False, create=create)

    async def enqueue_async(self, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        """``enqueue`` on a native asyncio connection of the running loop (no thread hop)."""
        if not jobs:
            return []
        cmd = self._enqueue_cmd(self.layout.job_shard(jobs[0]), jobs, None)

        async def send() -> Any:  # _send on the asyncio link
            reply = (await self._async.pipeline([cmd]))[0]
            _raise_errors([reply])
            return reply

        reply = await send()
        while _behind(reply):
            reply = await send()
        return self._results(jobs, reply)

    def close(self) -> None:
        self._async.close()
        super().close()

    def wait_and_claim(
        self,
        queues: Sequence[str],
        timeout_s: float,
        *,
        worker: str,
        limit: int,
        batch: int = 1,
        lease_s: float,
    ) -> list[JobRecord]:
        """The wake-up ``BLPOP`` and ``claim.lua`` in one write: the claim runs on the
        server as soon as the wait ends, and a pickup costs one round trip, not two."""
        timeout_s = self._wait_timeout(queues, timeout_s)
        if timeout_s <= 0 or limit < 1 or not queues:
            return self.claim(queues, worker=worker, limit=limit, batch=batch, lease_s=lease_s)
        cmd = self._claim_here(queues, worker, Take(limit, limit), max(1, batch), lease_s)
        reply = self.single.wait_then(self._wake_keys(queues), timeout_s, cmd)
        if reply is None:  # the reply was late: a spurious wake-up, nothing claimed
            return []
        return self._claimed(queues, reply)


class RedisClusterBackend(RedisCore):
    """A Redis Cluster: ``redis+cluster://[user:pass@]host:port[,host:port...]``.

    The namespace is split over ``shards`` hash-tagged shards (at most 1024; every client
    of a namespace must use the same number, which is checked). Lanes, leases, sweeps
    and delays work per shard; idle workers are woken through Pub/Sub.
    """

    def __init__(self, url: str, *, namespace: str, shards: int = 16, create: bool = True) -> None:
        super().__init__(
            ClusterLink(url), namespace=namespace, shards=shards, wake_channel=True, create=create
        )
