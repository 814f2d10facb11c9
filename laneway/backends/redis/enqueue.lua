--[[ enqueue: store jobs of one shard atomically, in order (also claim_tick).

KEYS  P c, P n, P u, P a, P t, P held, then for each job: P j:<id>, P r:<q>, P d:<q>,
      P w:<q> (not on a cluster), P L:<q>, P l:<q>|<lane> (the job key again when it has
      no lane).
ARGV  [1] wake channel prefix ('' = wake lists), [2] periodic schedule name ('' = none),
      [3] its tick, [4] most due jobs promoted per queue (PROMOTE_MAX, as a claim), then 13
      per job: id, task, queue, lane (''), priority, payload, max_attempts, timeout_s (''),
      unique (''), result_ttl_us, on_dead_block ('1'/''), delay_us, run_at_us ('' = now +
      delay).
Before anything is stored, up to ARGV[4] due jobs are promoted (as a claim would) in each
queue that a laned job of this send joins at once, so one that came due before this send
goes first. When more than that are due, the call stores nothing and returns {-1}: the
client calls again (each call promotes ARGV[4] more), and the send is stored by the call
that finds no due job left behind, so no backlog of due jobs is ever overtaken.
Returns one entry per job: 1 when stored, else the id of the pending job holding its
unique key (or the job's own id when a job with that id is stored already: a repeated
call after a lost reply stores nothing twice). With a tick: {0} when the tick was
already taken.
]]

-- When the job at ARGV[i] is due: its run_at, else now + its delay.
local function run_at_of(i)
  if ARGV[i + 12] ~= '' then return tonumber(ARGV[i + 12]) end
  return NOW + tonumber(ARGV[i + 11])
end

local promote_max = tonumber(ARGV[4])
local promoted = {}  -- queues whose due jobs were promoted by this call
for i = 5, #ARGV, 13 do
  local q = ARGV[i + 2]
  if ARGV[i + 3] ~= '' and not promoted[q] and run_at_of(i) <= NOW then  -- joins its lane now
    promoted[q] = true
    local left = promote(q, promote_max)
    if left and left <= NOW then
      flush()
      return {-1}
    end
  end
end

local tick_name = ARGV[2]
if tick_name ~= '' then
  local last = redis.call('HGET', P .. 't', tick_name)
  if last and tonumber(last) >= tonumber(ARGV[3]) then return {0} end
  redis.call('HSET', P .. 't', tick_name, ARGV[3])
end

local out = {}
local order = redis.call('HINCRBY', KEYS[1], 'i', (#ARGV - 4) / 13) - (#ARGV - 4) / 13
for i = 5, #ARGV, 13 do
  local id, q, lane, uniq = ARGV[i], ARGV[i + 2], ARGV[i + 3], ARGV[i + 8]
  local holder = uniq ~= '' and redis.call('HGET', P .. 'u', uniq)
  if not holder and redis.call('EXISTS', jkey(id)) == 1 then holder = id end
  if holder then
    out[#out + 1] = holder
  else
    local run_at = run_at_of(i)
    local status = 'Q'
    if run_at > NOW then status = 'S' end
    local j = jkey(id)
    local f = {'k', ARGV[i + 1], 'q', q, 'p', ARGV[i + 4], 'P', ARGV[i + 5], 's', status, 'a', 0,
               'm', ARGV[i + 6], 'x', ARGV[i + 9], 'e', NOW, 'r', run_at}
    if lane ~= '' then f[#f + 1] = 'l'; f[#f + 1] = lane else lane = false end
    if ARGV[i + 7] ~= '' then f[#f + 1] = 'o'; f[#f + 1] = ARGV[i + 7] end
    if uniq ~= '' then
      f[#f + 1] = 'u'; f[#f + 1] = uniq
      redis.call('HSET', P .. 'u', uniq, id)
    end
    if ARGV[i + 10] == '1' then f[#f + 1] = 'B'; f[#f + 1] = '1' end
    local seq
    if status == 'Q' then
      seq = next_seq()
      f[#f + 1] = 'n'; f[#f + 1] = seq
    end
    redis.call('HSET', j, unpack(f))
    order = order + 1
    redis.call('ZADD', P .. 'a', order, id)
    count(q, nil, status)
    if status == 'S' then schedule(q, id, run_at) else join(q, lane, id, seq, true, ARGV[i + 4]) end
    out[#out + 1] = 1
  end
end
flush()
if tick_name ~= '' then return {1} end
return out
