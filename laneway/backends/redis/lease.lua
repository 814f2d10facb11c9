--[[ lease (cluster claims): the next cluster-wide lease number, the fencing token that the
jobs of one cluster claim share.

KEYS  P c of shard 0.
ARGV  [1] wake channel prefix (unused).
Returns the number as a decimal string: the last one + 1, or the server's clock in us when
that is larger. Replication is asynchronous, so a failover of shard 0's primary can lose
the last increments and roll the counter back; the clock (1,000,000 a second) is then
already past every number handed out before, as long as the new primary's clock is not
behind the old one by more than the failover took.
]]

local g = math.max(tonumber(redis.call('HGET', KEYS[1], 'g') or '0') + 1, NOW)
-- tostring (and ..) write numbers past 1e14 in exponent notation; '%.0f' keeps every digit
local lease = string.format('%.0f', g)
redis.call('HSET', KEYS[1], 'g', lease)
return lease
