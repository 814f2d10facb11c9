--[[ list (read only): scan part of an index of one shard, newest first, for jobs that
match every filter given.

KEYS  P c, P a or P D (the index).
ARGV  [1] wake channel prefix (unused), [2] rank to start at (from the newest),
      [3] entries to scan, [4] status ('' = any), [5] queue ('' = any), [6] lane ('' = any).
Returns {next rank (-1 when exhausted), {{id, HMGET of FIELDS...} per matching job}}.
]]

local start, span = tonumber(ARGV[2]), tonumber(ARGV[3])
local status, queue, lane = ARGV[4], ARGV[5], ARGV[6]
local ids = redis.call('ZREVRANGE', KEYS[2], start, start + span - 1)
local rows = {}
for _, id in ipairs(ids) do
  local v = redis.call('HMGET', jkey(id), 's', 'q', 'l')
  if v[1] and (status == '' or v[1] == status) and (queue == '' or v[2] == queue)
      and (lane == '' or v[3] == lane) then
    local row = redis.call('HMGET', jkey(id), unpack(FIELDS))
    table.insert(row, 1, id)
    rows[#rows + 1] = row
  end
end
local next_rank = -1
if #ids >= span then next_rank = start + #ids end
return {next_rank, rows}
