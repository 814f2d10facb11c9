--[[ claim: promote due jobs, then lease up to `limit` jobs from ready lanes of one shard.

KEYS  P c, P n, P held, P K, then for each queue: P r:<q>, P d:<q>, P w:<q>, P L:<q>.
      Job, lane and lease keys found through the ready index are derived from P.
ARGV  [1] wake channel prefix, [2] worker, [3] limit, [4] batch, [5] max lanes,
      [6] lease_us, [7] most due jobs promoted per queue, [8..] queues in priority order.
Returns {lease number (0 if nothing taken), now_us, earliest due_us (-1 if none), lanes
         taken, {{id, HMGET of FIELDS...} for each job taken, lanes together in seq order}}.

Cost: O(promoted + taken) commands; the ready index gives the next lane in O(log lanes)
whatever the number of lanes, their depth, or the number of delayed/blocked jobs.
]]

local worker, limit, batch = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local max_lanes, lease_us, promote_max = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])

local function promote(q)
  local d = P .. 'd:' .. q
  local due = redis.call('ZRANGEBYSCORE', d, '-inf', NOW, 'LIMIT', 0, promote_max)
  for _, id in ipairs(due) do
    local j = jkey(id)
    local v = redis.call('HMGET', j, 's', 'l', 'r', 'n')
    local lane = v[2]
    if v[1] == 'S' then
      local seq = redis.call('HINCRBY', KEYS[1], 's', 1)
      redis.call('HSET', j, 's', 'Q', 'n', seq)
      count(q, 'S', 'Q')
      join(q, lane, id, seq, true)
    elseif v[1] == 'Y' and tonumber(v[3]) <= NOW then
      redis.call('HSET', j, 's', 'Q')
      count(q, 'Y', 'Q')
      reindex(q, lane, id)
    end
    redis.call('ZREM', d, id)
  end
end

local c = false
local taken, lanes, rows, lease = 0, 0, {}, {}

local function take(q, id, member)
  local j = jkey(id)
  if not c then c = tostring(redis.call('HINCRBY', KEYS[1], 't', 1)) end
  redis.call('HINCRBY', j, 'a', 1)
  redis.call('HSET', j, 's', 'R', 't', c, 'w', worker, 'g', NOW)
  local row = redis.call('HMGET', j, unpack(FIELDS))
  table.insert(row, 1, id)
  rows[#rows + 1] = row
  lease[#lease + 1] = 'j' .. id
  lease[#lease + 1] = member
  count(q, 'Q', 'R')
  taken = taken + 1
end

-- Take up to `want` consecutive queued jobs from the front of a named lane.
local function take_lane(q, lane, want)
  local lk = lkey(q, lane)
  local member = q .. '|' .. lane
  local got = 0
  for _, id in ipairs(redis.call('ZRANGE', lk, 0, want - 1)) do
    if redis.call('HGET', jkey(id), 's') ~= 'Q' then break end
    take(q, id, member)
    got = got + 1
  end
  if got > 0 then
    redis.call('ZREMRANGEBYRANK', lk, 0, got - 1)
    redis.call('HSET', P .. 'held', member, c)
    lanes = lanes + 1
  end
end

for qi = 8, #ARGV do
  local q = ARGV[qi]
  promote(q)
  local r = P .. 'r:' .. q
  while taken < limit and lanes < max_lanes do
    local pop = 1
    if batch == 1 then pop = math.min(limit - taken, max_lanes - lanes) end
    local popped = redis.call('ZPOPMIN', r, pop)
    if #popped == 0 then break end
    for i = 1, #popped, 2 do
      local m = popped[i]
      if string.byte(m, 1) == 0 then
        local id = string.sub(m, 2)
        if redis.call('HGET', jkey(id), 's') == 'Q' then
          take(q, id, '')
          lanes = lanes + 1
        end
      else
        take_lane(q, m, math.min(batch, limit - taken))
      end
    end
  end
  if taken >= limit or lanes >= max_lanes then
    if redis.call('ZCARD', r) > 0 then wake(q) end
    break
  end
end

local next_due = -1
for qi = 8, #ARGV do
  local first = redis.call('ZRANGE', P .. 'd:' .. ARGV[qi], 0, 0, 'WITHSCORES')
  if first[2] then
    local due = tonumber(first[2])
    if next_due < 0 or due < next_due then next_due = due end
  end
end

if c then
  redis.call('HSET', P .. 'k:' .. c, 'w', worker, unpack(lease))
  redis.call('ZADD', P .. 'K', NOW + lease_us, c)
end
flush_counts()
return {c or 0, NOW, next_due, lanes, rows}
