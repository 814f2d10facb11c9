"""Claims that span the shards of a cluster, and where this process saw jobs and leases.

A cluster claim is two round trips, each one pipeline over the nodes in parallel:

1. ``peek.lua`` on every shard promotes due jobs and returns the shard's best ready lanes
   (their ready scores: priority band, then seq, which is a time and so compares across
   shards), together with one increment of the cluster-wide lease counter;
2. ``claim.lua`` on the shards holding the best lanes overall, all under that one lease
   number, so the jobs share one fencing token as the contract asks.

Between the two another worker may take a peeked lane; the shard then gives its next
best lane or nothing, so priority and age are strict when nobody races and loose when
many workers do.

``finish`` and ``extend`` need the shards of a job and of a lease. This process remembers
them for what it claimed; anything else is looked up on every shard in one pipeline.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..._records import JobRecord
from ._rows import BAND

_MAX_REMEMBERED = 100_000


@dataclass
class Placement:
    """Shards of the jobs and leases this process claimed (bounded; misses fall back to a
    lookup on every shard)."""

    jobs: dict[str, int] = field(default_factory=dict)
    leases: dict[int, tuple[int, ...]] = field(default_factory=dict)

    def remember(self, token: int, recs: Sequence[tuple[int, JobRecord]]) -> None:
        if len(self.jobs) > _MAX_REMEMBERED:
            self.jobs.clear()
        if len(self.leases) > _MAX_REMEMBERED:
            self.leases.clear()
        for shard, rec in recs:
            self.jobs[rec.id] = shard
        self.leases[token] = tuple(sorted({shard for shard, _ in recs}))


@dataclass(frozen=True, slots=True)
class Take:
    """How much one shard's ``claim.lua`` may take."""

    limit: int
    lanes: int


def plan(peeks: Sequence[Sequence[Sequence[bytes]]], limit: int, lanes: int, batch: int) -> dict[int, Take]:
    """Choose the best ``lanes`` ready lanes over all shards (queues in order, then score).

    ``peeks[k][q]`` is shard k's flat ``member, score, ...`` list for queue position q.
    Each chosen lane counts for one job; with ``batch > 1`` the shard of the best lane may
    take the rest of ``limit`` from its lanes.
    """
    entries = sorted(
        (q, float(scores[i]), k)
        for k, per_queue in enumerate(peeks)
        for q, scores in enumerate(per_queue)
        for i in range(1, len(scores), 2)
    )
    chosen = entries[: min(lanes, limit)]
    if not chosen:
        return {}
    counts = Counter(k for _, _, k in chosen)
    spare = limit - len(chosen) if batch > 1 else 0
    best = chosen[0][2]
    return {k: Take(n + (spare if k == best else 0), n) for k, n in counts.items()}


def in_claim_order(groups: Sequence[list[JobRecord]], queues: Sequence[str]) -> list[JobRecord]:
    """Jobs of several shards in the order one server would return them: queue by queue,
    lane by lane (head priority, then seq), each lane's jobs together in seq order."""
    position = {q: i for i, q in enumerate(queues)}
    units: list[list[JobRecord]] = []
    for recs in groups:
        for rec in recs:
            last = units[-1][-1] if units else None
            if last is not None and rec.lane is not None and (rec.queue, rec.lane) == (last.queue, last.lane):
                units[-1].append(rec)
            else:
                units.append([rec])

    def key(unit: list[JobRecord]) -> tuple[int, float]:
        head = unit[0]
        return position.get(head.queue, len(position)), (255 - head.priority) * BAND + (head.seq or 0)

    units.sort(key=key)
    return [rec for unit in units for rec in unit]
