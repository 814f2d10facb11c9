--[[ extend: push live leases of one shard to lease_us from now; expired ones stay dead.

KEYS  P c, P K.
ARGV  [1] wake channel prefix (unused), [2] lease_us, [3..] lease numbers.
Returns 1 (extended) or 0 (gone: expired, swept or finished) per lease.
]]

local out = {}
local until_us = NOW + tonumber(ARGV[2])
for i = 3, #ARGV do
  local e = redis.call('ZSCORE', P .. 'K', ARGV[i])
  if e and tonumber(e) > NOW then
    redis.call('ZADD', P .. 'K', 'XX', until_us, ARGV[i])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
