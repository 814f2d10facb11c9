"""Operator-side reads and bulk changes of the Redis backend: listing, stats, lanes, purge.

These scan indexes in bounded slices (one script call per slice), so a namespace with
millions of jobs never blocks the server for long, and results from the shards of a
cluster are merged here.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from typing import Any

from ..._errors import ConfigError
from ..._records import JobRecord, LaneInfo, QueueStats, Status
from .._base import page_args, page_limit
from ._keys import Layout, Shard
from ._link import Command, Link, Script
from ._rows import CODE_OF, STATUS_OF, US, record

LIST_SPAN = 500
"""Index entries one ``list.lua`` call scans."""
LANES_SPAN = 500
PURGE_SPAN = 1000


class Inspect:
    """Listing, stats, lanes and purge over the shards of ``layout`` (mixed into the backend)."""

    link: Link
    layout: Layout
    scripts: dict[str, Script]
    _chan: str

    def _run(self, name: str, shard: Shard, keys: Sequence[str], args: Sequence[Any]) -> Command:
        """The command running script ``name`` on ``shard`` (KEYS[1] is its counters hash)."""
        return self.scripts[name].command([shard.c, *keys], [self._chan, *args])

    def list_jobs(
        self,
        *,
        queue: str | None = None,
        status: Status | None = None,
        lane: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[JobRecord]:
        """Jobs matching every filter, newest first (merged by enqueue time across shards).

        Every shard is read in the same pipeline, so on a cluster the result is close to a
        snapshot; shards that need more slices are read again, again all together.
        """
        limit, offset, status = page_args(limit, offset, status)
        if limit <= 0:
            return []
        want = offset + limit
        filters = [CODE_OF[status] if status else "", queue or "", lane or ""]
        found: dict[int, list[JobRecord]] = {s.index: [] for s in self.layout.shards}
        start = dict.fromkeys(found, 0)
        while start:
            shards = [self.layout.shards[k] for k in start]
            cmds = [
                self._run(
                    "list",
                    s,
                    [s.key("D" if status is Status.DEAD else "a")],
                    [start[s.index], LIST_SPAN, *filters],
                )
                for s in shards
            ]
            replies = self.link.pipeline(cmds)
            for shard, reply in zip(shards, replies, strict=True):
                if isinstance(reply, Exception):
                    raise reply
                next_rank, rows = reply
                found[shard.index] += [record(row) for row in rows]
                if next_rank < 0 or len(found[shard.index]) >= want:
                    del start[shard.index]
                else:
                    start[shard.index] = next_rank
        merged = heapq.merge(*(recs[:want] for recs in found.values()), key=lambda r: -r.enqueued_at)
        return list(itertools.islice(merged, offset, want))

    def stats(self) -> list[QueueStats]:
        shards = self.layout.shards
        replies = self.link.pipeline([self._run("stats", s, [s.key("n"), s.key("held")], []) for s in shards])
        counts: dict[str, dict[Status, int]] = {}
        lanes: dict[str, int] = {}
        ages: dict[str, float] = {}
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
            now_us, flat, per_queue = reply
            for field, n in zip(flat[::2], flat[1::2], strict=True):
                queue, _, code = field.decode().rpartition("|")
                per = counts.setdefault(queue, dict.fromkeys(Status, 0))
                per[STATUS_OF[code.encode()]] += int(n)
            for q, n_lanes, oldest in zip(per_queue[::3], per_queue[1::3], per_queue[2::3], strict=True):
                queue = q.decode()
                lanes[queue] = lanes.get(queue, 0) + int(n_lanes)
                if oldest >= 0:
                    ages[queue] = max(ages.get(queue, 0.0), (now_us - oldest) / US)
        return [
            _queue_stats(q, c, lanes.get(q, 0), ages.get(q))
            for q, c in sorted(counts.items())
            if any(c.values())
        ]

    def _lanes_shard(self, shard: Shard, queue: str) -> list[LaneInfo]:
        lane_set = shard.queue_keys(queue)[3]
        infos: dict[str, LaneInfo] = {}
        cursor: int | bytes = 0
        while True:
            cursor, names = self.link.execute("SSCAN", lane_set, cursor, "COUNT", LANES_SPAN)
            names = [n for n in names if n.decode() not in infos]
            if names:
                keys = [shard.key("held"), lane_set, *(shard.lane(queue, n.decode()) for n in names)]
                now_us, rows = self.link.execute(*self._run("lanes", shard, keys, [queue, *names]))
                for lane, depth, head, status, attempts, enqueued, held in rows:
                    head_status = STATUS_OF[status]
                    infos[lane.decode()] = LaneInfo(
                        queue=queue, lane=lane.decode(), depth=int(depth), head_id=head.decode(),
                        head_status=head_status, head_attempts=int(attempts or 0),
                        head_age_s=(now_us - int(enqueued or 0)) / US, held=held == 1,
                        blocked=head_status is Status.DEAD,
                    )  # fmt: skip
            if int(cursor) == 0:
                return list(infos.values())

    def lanes(self, queue: str, *, limit: int = 100) -> list[LaneInfo]:
        """Named lanes of ``queue`` with pending or running work, oldest head first."""
        limit = page_limit(limit)
        infos = [info for s in self.layout.shards for info in self._lanes_shard(s, queue)]
        infos.sort(key=lambda i: -i.head_age_s)
        return infos[:limit]

    def purge(self, *, status: Status = Status.DEAD, queue: str | None = None) -> int:
        """Delete every job in final ``status`` (of ``queue``), a slice per script call."""
        if status.pending:
            raise ConfigError(f"purge takes a final status, not {status.value!r}")
        total = 0
        for shard in self.layout.shards:
            keys = [shard.key(k) for k in ("n", "x", "D", "a", "held")]
            start = 0
            while start >= 0:
                deleted, start = self.link.execute(
                    *self._run("purge", shard, keys, [CODE_OF[status], queue or "", start, PURGE_SPAN])
                )
                total += int(deleted)
        return total


def _queue_stats(queue: str, c: dict[Status, int], lanes: int, age_s: float | None) -> QueueStats:
    return QueueStats(
        queue=queue, scheduled=c[Status.SCHEDULED], queued=c[Status.QUEUED], running=c[Status.RUNNING],
        retrying=c[Status.RETRYING], succeeded=c[Status.SUCCEEDED], dead=c[Status.DEAD],
        cancelled=c[Status.CANCELLED], lanes=lanes, oldest_queued_age_s=age_s,
    )  # fmt: skip
