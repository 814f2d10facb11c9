--[[ purge: delete jobs in one final status, scanning part of an index per call.

KEYS  P c, P n, P x, P D, P a, P held.
ARGV  [1] wake channel prefix, [2] status (X dead, C cancelled, D succeeded),
      [3] queue ('' = any), [4] rank to start scanning at, [5] entries to scan.
Dead jobs are found in P D, succeeded and cancelled ones in P x. Lanes blocked by a
purged dead job move on.
Returns {deleted, next rank to scan (-1 when the index is exhausted)}.
]]

local status, queue, start, span = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local index = P .. 'x'
if status == 'X' then index = P .. 'D' end
local ids = redis.call('ZRANGE', index, start, start + span - 1)
local deleted, gone = 0, 0
for _, id in ipairs(ids) do
  local j = jkey(id)
  local v = redis.call('HMGET', j, 's', 'q', 'l')
  if v[1] == status and (queue == '' or v[2] == queue) then
    redis.call('DEL', j)
    redis.call('ZREM', index, id)
    redis.call('ZREM', P .. 'a', id)
    count(v[2], status, nil)
    if v[3] and redis.call('ZREM', lkey(v[2], v[3]), id) == 1 then reindex(v[2], v[3], id) end
    deleted = deleted + 1
    gone = gone + 1
  elseif not v[1] then
    redis.call('ZREM', index, id)
    gone = gone + 1
  end
end
flush()
local next_rank = -1
if #ids >= span then next_rank = start + #ids - gone end
return {deleted, next_rank}
