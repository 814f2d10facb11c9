--[[ stats (read only): job counts per queue and status, lanes with pending work, and the
run_at of the oldest ready job head of each queue, in one shard.

KEYS  P c, P n, P held.
ARGV  [1] wake channel prefix (unused).
Returns {now_us, {"<queue>|<status>", count, ...}, {queue, lanes, oldest run_at_us or -1, ...}}.
The oldest ready job is looked for among the heads of ready lanes (the oldest head of
each priority level) and the next jobs of held lanes: at most 256 + held lanes reads.
]]

local counts = redis.call('HGETALL', P .. 'n')
local queues, seen = {}, {}
for i = 1, #counts, 2 do
  local f = counts[i]
  local q = string.sub(f, 1, #f - 2)
  if not seen[q] then seen[q] = true; queues[#queues + 1] = q end
end

local function head_run_at(q, member)
  local id
  if string.byte(member, 1) == 0 then
    id = string.sub(member, 2)
  else
    id = redis.call('ZRANGE', lkey(q, member), 0, 0)[1]
  end
  if not id then return false end
  local v = redis.call('HMGET', jkey(id), 's', 'r')
  if v[1] ~= 'Q' then return false end
  return tonumber(v[2])
end

local held = redis.call('HKEYS', P .. 'held')
local out = {}
for _, q in ipairs(queues) do
  local oldest = -1
  local function consider(t) if t and (oldest < 0 or t < oldest) then oldest = t end end
  local r = P .. 'r:' .. q
  local entry = redis.call('ZRANGE', r, 0, 0, 'WITHSCORES')
  while entry[1] do
    consider(head_run_at(q, entry[1]))
    local band = math.floor(tonumber(entry[2]) / BAND)
    entry = redis.call('ZRANGEBYSCORE', r, (band + 1) * BAND, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  end
  local prefix = q .. '|'
  for _, member in ipairs(held) do
    if string.sub(member, 1, #prefix) == prefix then consider(head_run_at(q, string.sub(member, #prefix + 1))) end
  end
  out[#out + 1] = q
  out[#out + 1] = redis.call('SCARD', P .. 'L:' .. q)
  out[#out + 1] = oldest
end
return {NOW, counts, out}
