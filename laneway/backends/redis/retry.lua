--[[ retry: put a dead or cancelled job back at the head of its lane, attempts reset.

KEYS  P c, P n, P u, P x, P D, P held, P j:<id>.
ARGV  [1] wake channel prefix, [2] job id.
Returns 1 when re-queued, 0 when the job is missing, in another state, or its unique key
is held by another pending job.
]]

local id = ARGV[2]
local j = jkey(id)
local v = redis.call('HMGET', j, 's', 'q', 'l', 'u', 'n', 'B')
local s, q, lane, uniq = v[1], v[2], v[3], v[4]
if s ~= 'X' and s ~= 'C' then return 0 end
if uniq and redis.call('HEXISTS', P .. 'u', uniq) == 1 then return 0 end
local in_lane = s == 'X' and lane and v[6] == '1'
redis.call('HSET', j, 's', 'Q', 'a', 0, 'r', NOW)
redis.call('HDEL', j, 'f')
if s == 'X' then redis.call('ZREM', P .. 'D', id) else redis.call('ZREM', P .. 'x', id) end
if uniq then redis.call('HSET', P .. 'u', uniq, id) end
count(q, s, 'Q')
local seq = v[5]
if not seq then
  seq = next_seq()
  redis.call('HSET', j, 'n', seq)
end
if in_lane then reindex(q, lane, id) else join(q, lane, id, seq, false) end
flush()
return 1
