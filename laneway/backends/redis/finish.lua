--[[ finish: apply workers' outcomes for jobs of one shard; each is checked on its own.

KEYS  P c, P n, P u, P x, P D, P K, P held, then P j:<id> for each outcome, then (when it
      claims too) the queue keys of claim.lua. Lane, queue and lease keys of a job are
      derived from P and the job's fields.
ARGV  [1] wake channel prefix, [2] number m of outcome arguments, then 8 per outcome: id,
      lease number, verdict (D succeeded, Y retry, X dead, L release), presence flags of
      result/error/traceback ("101"), result, error, traceback, retry delay_us; then
      optionally the arguments of claim.lua from its ARGV[2] on: the worker's next claim,
      made after the outcomes in the same script.
Returns per outcome 1 (accepted) or 0 (refused: not running under that lease, or the lease
expired); with a claim, {those, the claim's reply}.
]]

local expiry = {}
local function lease_alive(c)
  local e = expiry[c]
  if e == nil then
    e = tonumber(redis.call('ZSCORE', P .. 'K', c) or '-1')
    expiry[c] = e
  end
  return e > NOW
end

local function opt(flags, pos, value)
  if string.sub(flags, pos, pos) == '1' then return value end
  return false
end

local out = {}
local claim_at = 3 + tonumber(ARGV[2])
for i = 3, claim_at - 1, 8 do
  local id, c, verdict, flags = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local j = jkey(id)
  -- s q l u n B t x
  local v = redis.call('HMGET', j, 's', 'q', 'l', 'u', 'n', 'B', 't', 'x')
  if v[1] ~= 'R' or v[7] ~= c or not lease_alive(c) then
    out[#out + 1] = 0
  else
    local q, lane = v[2], v[3]
    local err, tb = opt(flags, 2, ARGV[i + 5]), opt(flags, 3, ARGV[i + 6])
    if verdict == 'D' then
      local result = opt(flags, 1, ARGV[i + 4])
      if result then
        redis.call('HSET', j, 's', 'D', 'f', NOW, 'R', result)
      else
        redis.call('HSET', j, 's', 'D', 'f', NOW)
      end
      redis.call('ZADD', P .. 'x', NOW + tonumber(v[8]), id)
      drop_unique(v[4], id)
      count(q, 'R', 'D')
    elseif verdict == 'Y' then
      local due = NOW + tonumber(ARGV[i + 7])
      local sets = {'s', 'Y', 'r', due}
      if err then sets[#sets + 1] = 'E'; sets[#sets + 1] = err end
      if tb then sets[#sets + 1] = 'T'; sets[#sets + 1] = tb end
      redis.call('HSET', j, unpack(sets))
      if not err then redis.call('HDEL', j, 'E') end
      if not tb then redis.call('HDEL', j, 'T') end
      if lane then redis.call('ZADD', lkey(q, lane), v[5], id) end
      count(q, 'R', 'Y')
      schedule(q, id, due)
    elseif verdict == 'X' then
      go_dead(id, {v[1], q, lane, v[4], v[5], v[6]}, err, tb)
    else
      redis.call('HSET', j, 's', 'Q')
      redis.call('HINCRBY', j, 'a', -1)
      if lane then redis.call('ZADD', lkey(q, lane), v[5], id) end
      count(q, 'R', 'Q')
      if not lane then reindex(q, false, id) end
    end
    leave_lease(c, id, q, lane)
    out[#out + 1] = 1
  end
end
settle_leases()
if claim_at <= #ARGV then
  local claimed = claim_from_argv(claim_at)
  flush()
  return {out, claimed}
end
flush()
return out
