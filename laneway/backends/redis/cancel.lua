--[[ cancel: cancel a scheduled, queued, retrying or dead job; its lane moves on.

KEYS  P c, P n, P u, P x, P D, P held, P j:<id>.
ARGV  [1] wake channel prefix, [2] job id.
Returns 1 when cancelled, 0 when the job is missing or in another state.
]]

local id = ARGV[2]
local j = jkey(id)
local v = redis.call('HMGET', j, 's', 'q', 'l', 'u', 'x')
local s, q, lane = v[1], v[2], v[3]
if s ~= 'S' and s ~= 'Q' and s ~= 'Y' and s ~= 'X' then return 0 end
redis.call('HSET', j, 's', 'C', 'f', NOW)
redis.call('ZADD', P .. 'x', NOW + tonumber(v[5]), id)
drop_unique(v[4], id)
count(q, s, 'C')
if s == 'S' or s == 'Y' then redis.call('ZREM', P .. 'd:' .. q, id) end
if s == 'X' then redis.call('ZREM', P .. 'D', id) end
if lane then
  redis.call('ZREM', lkey(q, lane), id)
  reindex(q, lane, id)
else
  redis.call('ZREM', P .. 'r:' .. q, '\0' .. id)
end
flush()
return 1
