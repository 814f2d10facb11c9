--[[ claim: promote due jobs, then lease up to `limit` jobs from ready lanes of one shard
(the work is claim_jobs in lib.lua; finish.lua can do the same after its outcomes).

KEYS  P c, P n, P held, P K, then for each queue: P r:<q>, P d:<q>, P w:<q> (not on a
      cluster), P L:<q>.
      Job, lane and lease keys found through the ready index are derived from P.
ARGV  [1] wake channel prefix, [2] worker, [3] limit, [4] batch, [5] max lanes,
      [6] lease_us, [7] most due jobs promoted per queue, [8] lease number to use ('' =
      the shard's next one; a cluster passes its cluster-wide number), [9..] queues in
      priority order.
Returns {lease number (0 if nothing taken), now_us, earliest due_us (-1 if none), lanes
         taken, {{id, HMGET of FIELDS...} for each job taken, lanes together in seq order}}.
]]

local out = claim_from_argv(2)
flush()
return out
