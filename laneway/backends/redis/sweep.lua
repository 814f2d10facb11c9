--[[ sweep: recover the jobs of expired leases (or of one worker's leases) in one shard,
and prune succeeded/cancelled jobs whose result_ttl has passed.

KEYS  P c, P n, P u, P x, P D, P K, P held, P a.
ARGV  [1] wake channel prefix, [2] worker whose leases are recovered now ('' = none),
      [3] most leases recovered per call, [4] most jobs pruned per call.
Returns {jobs recovered, jobs pruned, 1 if more work is left for another call}.
]]

local worker, max_leases, max_prune = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])

local function doomed_leases()
  if worker == '' then
    return redis.call('ZRANGEBYSCORE', P .. 'K', '-inf', NOW, 'LIMIT', 0, max_leases)
  end
  local found = {}
  local all = redis.call('ZRANGE', P .. 'K', 0, -1, 'WITHSCORES')
  for i = 1, #all, 2 do
    if #found >= max_leases then break end
    if tonumber(all[i + 1]) <= NOW or redis.call('HGET', P .. 'k:' .. all[i], 'w') == worker then
      found[#found + 1] = all[i]
    end
  end
  return found
end

-- A running job of a lost lease goes back to the head of its lane (or dead when it has
-- used all its attempts). Only a lane's first job of the lease (lowest seq) can have been
-- running: the rest of a batch behind it never started and gets back the attempt its claim
-- counted (`attempted` false).
local function recover(id, c, v, attempted)
  local j = jkey(id)
  if v[1] ~= 'R' or v[7] ~= c then return 0 end
  local q, lane = v[2], v[3]
  if attempted and tonumber(v[8]) >= tonumber(v[9]) then
    local err = 'lease expired: worker lost while running attempt ' .. v[8] .. ' of ' .. v[9]
    go_dead(id, v, err, false)
  else
    if attempted then
      redis.call('HSET', j, 's', 'Q', 'E', 'lease expired: worker lost; re-queued')
    else
      redis.call('HSET', j, 's', 'Q', 'a', tonumber(v[8]) - 1)
    end
    count(q, 'R', 'Q')
    if lane then redis.call('ZADD', lkey(q, lane), v[5], id) end
  end
  if not lane then reindex(q, false, id) end
  return 1
end

local recovered = 0
local leases = doomed_leases()
for _, c in ipairs(leases) do
  local k = P .. 'k:' .. c
  local fields = redis.call('HGETALL', k)
  local lanes, members = {}, {}
  for i = 1, #fields, 2 do
    if string.sub(fields[i], 1, 1) == 'j' then
      local id = string.sub(fields[i], 2)
      local v = redis.call('HMGET', jkey(id), 's', 'q', 'l', 'u', 'n', 'B', 't', 'a', 'm')
      local member = fields[i + 1]
      if member == '' then
        recovered = recovered + recover(id, c, v, true)  -- no lane: its own first job
      else
        if not lanes[member] then lanes[member] = {}; members[#members + 1] = member end
        table.insert(lanes[member], {id, v})
      end
    end
  end
  for _, member in ipairs(members) do
    local jobs = lanes[member]
    table.sort(jobs, function(x, y) return (tonumber(x[2][5]) or 0) < (tonumber(y[2][5]) or 0) end)
    for n, job in ipairs(jobs) do recovered = recovered + recover(job[1], c, job[2], n == 1) end
  end
  redis.call('DEL', k)
  redis.call('ZREM', P .. 'K', c)
  for member in pairs(lanes) do
    if redis.call('HGET', P .. 'held', member) == c then redis.call('HDEL', P .. 'held', member) end
    local bar = string.find(member, '|', 1, true)
    reindex(string.sub(member, 1, bar - 1), string.sub(member, bar + 1), nil)
  end
end

local pruned = redis.call('ZRANGEBYSCORE', P .. 'x', '-inf', NOW, 'LIMIT', 0, max_prune)
for _, id in ipairs(pruned) do
  local v = redis.call('HMGET', jkey(id), 's', 'q')
  if v[1] == 'D' or v[1] == 'C' then
    redis.call('DEL', jkey(id))
    redis.call('ZREM', P .. 'a', id)
    count(v[2], v[1], nil)
  end
  redis.call('ZREM', P .. 'x', id)
end
flush()
local more = 0
if #leases >= max_leases or #pruned >= max_prune then more = 1 end
return {recovered, #pruned, more}
