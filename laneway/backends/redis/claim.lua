--[[ claim: promote due jobs, then lease up to `limit` jobs from ready lanes of one shard.

KEYS  P c, P n, P held, P K, then for each queue: P r:<q>, P d:<q>, P w:<q>, P L:<q>.
      Job, lane and lease keys found through the ready index are derived from P.
ARGV  [1] wake channel prefix, [2] worker, [3] limit, [4] batch, [5] max lanes,
      [6] lease_us, [7] most due jobs promoted per queue, [8] lease number to use ('' =
      the shard's next one; a cluster passes its cluster-wide number), [9..] queues in
      priority order.
Returns {lease number (0 if nothing taken), now_us, earliest due_us (-1 if none), lanes
         taken, {{id, HMGET of FIELDS...} for each job taken, lanes together in seq order}}.

Cost: O(promoted + taken) commands; the ready index gives the next lane in O(log lanes)
whatever the number of lanes, their depth, or the number of delayed/blocked jobs.
]]

local worker, limit, batch = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local max_lanes, lease_us, promote_max = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])

local c = ARGV[8] ~= '' and ARGV[8]
local queues = {}
for qi = 9, #ARGV do queues[#queues + 1] = ARGV[qi] end
local taken, lanes, rows, lease = 0, 0, {}, {}

-- Lease job id if it is queued; false otherwise.
local function take(q, id, member)
  local j = jkey(id)
  local row = redis.call('HMGET', j, unpack(FIELDS))
  if row[6] ~= 'Q' then return false end
  if not c then c = tostring(redis.call('HINCRBY', KEYS[1], 't', 1)) end
  local attempts = tonumber(row[7]) + 1
  redis.call('HSET', j, 's', 'R', 'a', attempts, 't', c, 'w', worker, 'g', NOW)
  row[6], row[7], row[16], row[17], row[18] = 'R', attempts, c, worker, NOW
  table.insert(row, 1, id)
  rows[#rows + 1] = row
  lease[#lease + 1] = 'j' .. id
  lease[#lease + 1] = member
  count(q, 'Q', 'R')
  taken = taken + 1
  return true
end

-- Take up to `want` consecutive queued jobs from the front of a named lane.
local function take_lane(q, lane, want)
  local lk = lkey(q, lane)
  local member = q .. '|' .. lane
  local got = 0
  for _, id in ipairs(redis.call('ZRANGE', lk, 0, want - 1)) do
    if not take(q, id, member) then break end
    got = got + 1
  end
  if got > 0 then
    redis.call('ZREMRANGEBYRANK', lk, 0, got - 1)
    redis.call('HSET', P .. 'held', member, c)
    lanes = lanes + 1
  end
end

for _, q in ipairs(queues) do
  promote(q, promote_max)
  local r = P .. 'r:' .. q
  while taken < limit and lanes < max_lanes do
    local pop = 1
    if batch == 1 then pop = math.min(limit - taken, max_lanes - lanes) end
    local popped = redis.call('ZPOPMIN', r, pop)
    if #popped == 0 then break end
    for i = 1, #popped, 2 do
      local m = popped[i]
      if string.byte(m, 1) == 0 then
        if take(q, string.sub(m, 2), '') then lanes = lanes + 1 end
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

if taken > 0 then
  redis.call('HSET', P .. 'k:' .. c, 'w', worker, unpack(lease))
  redis.call('ZADD', P .. 'K', NOW + lease_us, c)
end
flush()
return {c or 0, NOW, next_due(queues), lanes, rows}
