"""Key names of one namespace: shard prefixes with hash tags, and where each job lives.

The key schema itself is documented at the top of ``lib.lua``. Here:

- shard ``k`` of ``n`` has the prefix ``<ns>:{<k>.<salt>}:``; the salt is the smallest
  integer that puts the tag's hash slot in the k-th n-th of the 16384 slots, so the
  shards spread evenly over the masters of a cluster (and every process computes the
  same tags without asking anyone);
- a named lane lives in shard ``crc32("<queue>|<lane>") % n``; an unlaned job in the
  shard of its unique key when it has one (so duplicates meet in one place), else in
  that of its periodic schedule, else in that of its id;
- a fencing token is a lease number: from the shard's counter on one server, from one
  cluster-wide counter on a cluster (a claim there may take lanes of several shards under
  one lease; ``lease.lua`` keeps it above the server clock in microseconds, so a failover
  that loses its last increments does not hand a number out twice). Either way a job's
  tokens only grow.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from redis.crc import key_slot

from ..._errors import ConfigError
from ..._names import check_namespace
from ..._records import NewJob

MAX_SHARDS = 1024
SLOTS = 16384


def shard_tag(k: int, n: int) -> str:
    """The hash tag of shard ``k`` of ``n``: its slot falls in the k-th n-th of all slots."""
    lo, hi = k * SLOTS // n, (k + 1) * SLOTS // n
    salt = 0
    while not lo <= key_slot(f"{k}.{salt}".encode()) < hi:
        salt += 1
    return f"{k}.{salt}"


def _crc(text: str) -> int:
    return zlib.crc32(text.encode())


@dataclass(frozen=True, slots=True)
class Shard:
    """The keys of one shard that scripts take as KEYS."""

    index: int
    prefix: str

    def key(self, suffix: str) -> str:
        return self.prefix + suffix

    @property
    def c(self) -> str:
        """Counters hash; KEYS[1] of every script (the scripts take the prefix from it)."""
        return self.prefix + "c"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}j:{job_id}"

    def lane(self, queue: str, lane: str) -> str:
        return f"{self.prefix}l:{queue}|{lane}"

    def queue_keys(self, queue: str) -> tuple[str, str, str, str]:
        """Ready index, schedule, wake list and lane set of ``queue``."""
        p = self.prefix
        return (f"{p}r:{queue}", f"{p}d:{queue}", f"{p}w:{queue}", f"{p}L:{queue}")

    def declared_queue_keys(self, queue: str, wake_list: bool) -> tuple[str, ...]:
        """The keys of ``queue`` a script declares: ``queue_keys``, without the wake list
        when wake-ups are published instead (a cluster). A declared key that does not
        exist while others do makes Redis refuse the script with TRYAGAIN as long as the
        shard's slot is migrating, and the wake list never exists there."""
        keys = self.queue_keys(queue)
        return keys if wake_list else (keys[0], keys[1], keys[3])


class Layout:
    """Where the keys of ``namespace`` are, spread over ``shards`` shards."""

    def __init__(self, namespace: str, shards: int) -> None:
        if not 1 <= shards <= MAX_SHARDS:
            raise ConfigError(f"shards must be from 1 to {MAX_SHARDS}, not {shards}")
        # checked here too, not only by App: the SCAN pattern of "x*" would match (and
        # drop_namespace delete) the keys of every namespace starting with "x"
        self.namespace = check_namespace(namespace)
        self.n = shards
        self.shards = [Shard(k, f"{namespace}:{{{shard_tag(k, shards)}}}:") for k in range(shards)]
        self.config_key = f"{namespace}:config"
        self.pattern = f"{namespace}:*"
        """SCAN pattern of every key of the namespace."""

    def wake_channel(self) -> str:
        return f"{self.namespace}:wake:"

    def lane_shard(self, queue: str, lane: str) -> Shard:
        return self.shards[_crc(f"{queue}|{lane}") % self.n] if self.n > 1 else self.shards[0]

    def job_shard(self, job: NewJob, tick_name: str | None = None) -> Shard:
        """The shard a new job is stored in (see the module docstring)."""
        if self.n == 1:
            return self.shards[0]
        if job.lane is not None:
            return self.lane_shard(job.queue, job.lane)
        if job.unique is not None:
            return self.shards[_crc("u|" + job.unique) % self.n]
        if tick_name is not None:
            return self.shards[_crc("t|" + tick_name) % self.n]
        return self.shards[_crc(job.id) % self.n]
