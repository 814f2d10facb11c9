--[[ peek (cluster claims): promote due jobs of one shard and show its best ready lanes, so
the client can take lanes from the shards in priority and age order.

KEYS  P c, P n, P held, then for each queue: P r:<q>, P d:<q>, P L:<q> (a cluster has no
      wake lists).
ARGV  [1] wake channel prefix, [2] entries per queue, [3] most due jobs promoted per
      queue, [4..] queues.
Returns {now_us, earliest due_us (-1 if none), {{member, score, ...} per queue}}.
]]

local span, promote_max = tonumber(ARGV[2]), tonumber(ARGV[3])
local best, next_due = {}, -1
for qi = 4, #ARGV do
  local q = ARGV[qi]
  local due = promote(q, promote_max)
  if due and (next_due < 0 or due < next_due) then next_due = due end
  best[#best + 1] = redis.call('ZRANGE', P .. 'r:' .. q, 0, span - 1, 'WITHSCORES')
end
flush()
return {NOW, next_due, best}
