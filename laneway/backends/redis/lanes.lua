--[[ lanes (read only): what operators see of some named lanes of one queue in one shard.

KEYS  P c, P held, P L:<q>.
ARGV  [1] wake channel prefix (unused), [2] queue, [3..] lane names.
Returns {now_us, {lane, depth, head id, head status, head attempts, head enqueued_us,
held (0/1)} for each lane with pending or running work}.
]]

local q = ARGV[2]
local out = {}
for i = 3, #ARGV do
  local lane = ARGV[i]
  local member = q .. '|' .. lane
  local ids = {}
  local first = redis.call('ZRANGE', lkey(q, lane), 0, 0)[1]
  if first then ids[1] = first end
  local depth = redis.call('ZCARD', lkey(q, lane))
  local c = redis.call('HGET', P .. 'held', member)
  if c then
    local lease = redis.call('HGETALL', P .. 'k:' .. c)
    for f = 1, #lease, 2 do
      if lease[f + 1] == member then
        ids[#ids + 1] = string.sub(lease[f], 2)
        depth = depth + 1
      end
    end
  end
  local head, head_seq = false, -1
  for _, id in ipairs(ids) do
    local seq = tonumber(redis.call('HGET', jkey(id), 'n') or '-1')
    if not head or seq < head_seq then head, head_seq = id, seq end
  end
  if head then
    local v = redis.call('HMGET', jkey(head), 's', 'a', 'e')
    local held = 0
    if c then held = 1 end
    out[#out + 1] = {lane, depth, head, v[1], v[2], v[3], held}
  end
end
return {NOW, out}
