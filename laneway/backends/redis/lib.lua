--[[ laneway Redis backend: helpers shared by every script (prepended when loaded).

KEY SCHEMA. Every key of a namespace starts with "<ns>:". Work is split over N shards
(N = 1 for redis://, 16 by default for redis+cluster://); every key of shard k carries the
hash tag {<tag k>}, so one script only ever touches one hash slot. P below is the shard
prefix "<ns>:{<tag k>}:". KEYS[1] of every script is P.."c"; the scripts take P from it.

  P c            hash    s -> last lane seq, t -> last lease number, i -> last insertion
                         number (shard 0 of a cluster: g -> last cluster-wide lease number,
                         kept at least the clock in us by lease.lua)
  P n            hash    "<queue>|<status>" -> job count (stats); zero counts are deleted
  P held         hash    "<queue>|<lane>" -> number of the lease holding the named lane
  P K            zset    lease number -> expiry (us)
  P k:<c>        hash    lease c: w -> worker; "j<id>" -> "<queue>|<lane>" ("" if unlaned)
  P u            hash    unique key -> id of the pending job holding it
  P x            zset    succeeded/cancelled job id -> time it may be pruned (us)
  P D            zset    dead job id -> insertion number, for listing and purging
  P a            zset    every stored job id -> insertion number, for listing newest first
  P t            hash    periodic schedule name -> last enqueued tick
  P meta         hash    put_meta/get_meta values (shard 0 only)
  P j:<id>       hash    one job (fields below)
  P l:<q>|<lane> zset    pending jobs of a named lane (queued, retrying, dead+block) by seq;
                         running jobs leave it and come back with their seq; gone when empty
  P L:<q>        set     named lanes of queue q that have pending work or are held
  P r:<q>        zset    READY index of queue q: lane name, or "\0<id>" for an unlaned job,
                         scored (255 - head priority) * 2^45 + head seq. A lane is in it
                         exactly while it is not held and its head is queued.
  P d:<q>        zset    due times (us) of scheduled jobs and retrying jobs of queue q
  P w:<q>        list    wake-up tokens of queue q (at most one), BLPOPed by idle workers
                         (with a cluster, PUBLISH on "<ns>:wake:<q>" is used instead, and
                         scripts do not declare P w:<q>: see Shard.declared_queue_keys)

JOB FIELDS: k task, q queue, l lane, p priority, P payload, s status (S scheduled,
Q queued, R running, D succeeded, Y retrying, X dead, C cancelled), a attempts,
m max_attempts, o timeout_s, u unique, x result_ttl (us), B "1" when on_dead=block,
e enqueued_at (us), r run_at (us), n seq, t lease number, w worker, g started_at (us),
f finished_at (us), R result, E error, T traceback. The lease number t is left behind when
a job stops running (readers ignore it unless the status is R).

Times are the server's clock (TIME) in integer microseconds. A seq is the time a job
joined its lane in units of 100 us since 2024 (bumped to stay strictly increasing in its
shard), so ready scores of different shards compare by age. The fencing token is the lease
number: per shard on one server, cluster-wide (one counter, lease.lua) on a cluster, where
one lease may span several shards. Cluster lease numbers are past 1e14, where tostring
and .. switch to exponent notation: they reach the scripts as strings (ARGV) and are
only ever stored and compared as those strings.
]]

local P = string.sub(KEYS[1], 1, -2)
local CHAN = ARGV[1]
local T0 = redis.call('TIME')
local NOW = tonumber(T0[1]) * 1000000 + tonumber(T0[2])
local BAND = 35184372088832  -- 2^45: priority bands of the ready score
local SEQ_EPOCH_US = 1704067200000000
local FIELDS = {'k', 'q', 'l', 'p', 'P', 's', 'a', 'm', 'o', 'u', 'x', 'B', 'e', 'r', 'n', 't', 'w', 'g',
                'f', 'R', 'E', 'T'}

local function jkey(id) return P .. 'j:' .. id end

-- redis.call(cmd, key, ...) with the items of list spread over calls of SPREAD items at most:
-- Lua's unpack fails past about 8,000 values, and a script that fails halfway keeps the
-- writes it made (a claim of 5,000 jobs would leave them running with no lease). SPREAD is
-- even, so field/value pairs stay together.
local SPREAD = 1000
local function call_spread(cmd, key, list)
  for i = 1, #list, SPREAD do
    redis.call(cmd, key, unpack(list, i, math.min(i + SPREAD - 1, #list)))
  end
end
local function lkey(q, lane) return P .. 'l:' .. q .. '|' .. lane end

local COUNTS = {}
local function count(q, from, to)
  if from then local f = q .. '|' .. from; COUNTS[f] = (COUNTS[f] or 0) - 1 end
  if to then local f = q .. '|' .. to; COUNTS[f] = (COUNTS[f] or 0) + 1 end
end

local SEQ = false
local function next_seq()
  if not SEQ then SEQ = tonumber(redis.call('HGET', KEYS[1], 's') or '0') end
  SEQ = math.max(SEQ + 1, math.floor((NOW - SEQ_EPOCH_US) / 100))
  return SEQ
end

-- Write what the script accumulated: status counts and the shard's last seq.
local function flush()
  for f, d in pairs(COUNTS) do
    if d ~= 0 and redis.call('HINCRBY', P .. 'n', f, d) == 0 then redis.call('HDEL', P .. 'n', f) end
  end
  if SEQ then redis.call('HSET', KEYS[1], 's', SEQ) end
end

local WOKEN = {}
local function wake(q)
  if WOKEN[q] then return end
  WOKEN[q] = true
  if CHAN ~= '' then
    redis.call('PUBLISH', CHAN .. q, '1')
  else
    local w = P .. 'w:' .. q
    if redis.call('LLEN', w) == 0 then redis.call('RPUSH', w, '1') end
  end
end

local function score(prio, seq) return (255 - tonumber(prio)) * BAND + tonumber(seq) end

-- Put a job's due time in its queue's schedule; wake waiters if it is now the earliest.
local function schedule(q, id, due)
  local d = P .. 'd:' .. q
  redis.call('ZADD', d, due, id)
  if redis.call('ZRANGE', d, 0, 0)[1] == id then wake(q) end
end

-- Make a lane ready when it is free and its head is queued, and take it out of the ready
-- index otherwise. An unlaned job (lane false) is a lane of its own.
local function reindex(q, lane, id)
  local r = P .. 'r:' .. q
  if not lane then
    local v = redis.call('HMGET', jkey(id), 's', 'p', 'n')
    if v[1] == 'Q' then
      redis.call('ZADD', r, score(v[2], v[3]), '\0' .. id)
      wake(q)
    else
      redis.call('ZREM', r, '\0' .. id)
    end
    return
  end
  if redis.call('HEXISTS', P .. 'held', q .. '|' .. lane) == 1 then return end
  local head = redis.call('ZRANGE', lkey(q, lane), 0, 0)[1]
  if head then
    local v = redis.call('HMGET', jkey(head), 's', 'p', 'n')
    if v[1] == 'Q' then
      redis.call('ZADD', r, score(v[2], v[3]), lane)
      wake(q)
      return
    end
  else
    redis.call('SREM', P .. 'L:' .. q, lane)
  end
  redis.call('ZREM', r, lane)
end

-- Put a job (back) into its lane with its seq. A job that takes a fresh seq can never be
-- the new head of a non-empty lane, so only a first member or an old seq re-indexes; a
-- fresh queued job whose priority is given goes straight to the ready index.
local function join(q, lane, id, seq, fresh, prio)
  if not lane then
    if not prio then return reindex(q, false, id) end
    redis.call('ZADD', P .. 'r:' .. q, score(prio, seq), '\0' .. id)
    return wake(q)
  end
  local lk = lkey(q, lane)
  redis.call('ZADD', lk, seq, id)
  if fresh and redis.call('ZCARD', lk) > 1 then return end
  redis.call('SADD', P .. 'L:' .. q, lane)
  if fresh and prio then
    if redis.call('HEXISTS', P .. 'held', q .. '|' .. lane) == 0 then
      redis.call('ZADD', P .. 'r:' .. q, score(prio, seq), lane)
      wake(q)
    end
    return
  end
  reindex(q, lane, id)
end

local function drop_unique(uniq, id)
  if uniq and redis.call('HGET', P .. 'u', uniq) == id then redis.call('HDEL', P .. 'u', uniq) end
end

-- A job goes dead: kept with its error; with on_dead=block a laned job stays its lane's head.
local function go_dead(id, v, err, tb)
  -- v: HMGET of s q l u n B
  local j = jkey(id)
  local sets = {'s', 'X', 'f', NOW}
  if err then sets[#sets + 1] = 'E'; sets[#sets + 1] = err end
  if tb then sets[#sets + 1] = 'T'; sets[#sets + 1] = tb end
  redis.call('HSET', j, unpack(sets))
  if not err then redis.call('HDEL', j, 'E') end
  if not tb then redis.call('HDEL', j, 'T') end
  redis.call('ZADD', P .. 'D', redis.call('ZSCORE', P .. 'a', id) or 0, id)
  drop_unique(v[4], id)
  count(v[2], v[1], 'X')
  if v[3] and v[6] == '1' then redis.call('ZADD', lkey(v[2], v[3]), v[5], id) end
end

-- Forget job id in lease c (settled by settle_leases at the end of the script): when it
-- was the last job of its lane in the lease, the lane is free again; when it was the
-- last job of the lease, the lease is gone.
local LEAVING, LEAVING_ORDER = {}, {}
local function leave_lease(c, id, q, lane)
  local e = LEAVING[c]
  if not e then
    e = {ids = {}, lanes = {}, order = {}}
    LEAVING[c] = e
    LEAVING_ORDER[#LEAVING_ORDER + 1] = c
  end
  e.ids[#e.ids + 1] = 'j' .. id
  if lane then
    local member = q .. '|' .. lane
    if not e.lanes[member] then e.order[#e.order + 1] = member end
    e.lanes[member] = {q, lane, id}
  end
end

local function settle_leases()
  for _, c in ipairs(LEAVING_ORDER) do
    local e = LEAVING[c]
    local k = P .. 'k:' .. c
    call_spread('HDEL', k, e.ids)
    local fields = redis.call('HGETALL', k)
    local still, jobs = {}, 0
    for i = 1, #fields, 2 do
      if string.sub(fields[i], 1, 1) == 'j' then
        still[fields[i + 1]] = true
        jobs = jobs + 1
      end
    end
    for _, member in ipairs(e.order) do
      if not still[member] then
        local v = e.lanes[member]
        if redis.call('HGET', P .. 'held', member) == c then redis.call('HDEL', P .. 'held', member) end
        reindex(v[1], v[2], v[3])
      end
    end
    if jobs == 0 then
      redis.call('DEL', k)
      redis.call('ZREM', P .. 'K', c)
    end
  end
end

-- Move due scheduled jobs of queue q into their lanes (taking a seq) and due retrying jobs
-- back to queued, at most `most` of them. Returns the earliest due time left (or false).
local function promote(q, most)
  local d = P .. 'd:' .. q
  local first = redis.call('ZRANGE', d, 0, 0, 'WITHSCORES')
  if not first[2] or tonumber(first[2]) > NOW then return first[2] and tonumber(first[2]) end
  local due = redis.call('ZRANGEBYSCORE', d, '-inf', NOW, 'LIMIT', 0, most)
  for _, id in ipairs(due) do
    local j = jkey(id)
    local v = redis.call('HMGET', j, 's', 'l', 'r', 'p')
    if v[1] == 'S' then
      local seq = next_seq()
      redis.call('HSET', j, 's', 'Q', 'n', seq)
      count(q, 'S', 'Q')
      join(q, v[2], id, seq, true, v[4])
    elseif v[1] == 'Y' and tonumber(v[3]) <= NOW then
      redis.call('HSET', j, 's', 'Q')
      count(q, 'Y', 'Q')
      reindex(q, v[2], id)
    end
    redis.call('ZREM', d, id)
  end
  first = redis.call('ZRANGE', d, 0, 0, 'WITHSCORES')
  return first[2] and tonumber(first[2])
end

-- CLAIM (claim.lua, and finish.lua when it claims too). Promotes due jobs, then leases up
-- to `limit` jobs from ready lanes of `queues` (in order) under lease number `c` (false:
-- the shard's next one). Returns {lease number or 0, now_us, earliest due_us or -1, lanes
-- taken, {{id, HMGET of FIELDS...} per job, lanes together in seq order}}.
-- Cost: O(promoted + taken) commands; ZPOPMIN on the ready index finds the next lane in
-- O(log lanes), whatever the number of lanes, their depth, or of delayed/blocked jobs.
local function claim_jobs(worker, limit, batch, max_lanes, lease_us, promote_max, c, queues)
  local taken, lanes, rows, lease, next_due = 0, 0, {}, {}, -1

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
    local due = promote(q, promote_max)
    if due and (next_due < 0 or due < next_due) then next_due = due end
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
      -- more ready lanes than this worker could take: pass the wake-up on
      if redis.call('ZCARD', r) > 0 then wake(q) end
      break
    end
  end

  if taken > 0 then
    redis.call('HSET', P .. 'k:' .. c, 'w', worker)
    call_spread('HSET', P .. 'k:' .. c, lease)
    redis.call('ZADD', P .. 'K', NOW + lease_us, c)
  end
  return {c or 0, NOW, next_due, lanes, rows}
end

-- claim_jobs with its arguments from ARGV[first..] (see claim.lua).
local function claim_from_argv(first)
  local queues = {}
  for i = first + 7, #ARGV do queues[#queues + 1] = ARGV[i] end
  local lease = ARGV[first + 6] ~= '' and ARGV[first + 6]
  return claim_jobs(ARGV[first], tonumber(ARGV[first + 1]), tonumber(ARGV[first + 2]), tonumber(ARGV[first + 3]),
                    tonumber(ARGV[first + 4]), tonumber(ARGV[first + 5]), lease, queues)
end
