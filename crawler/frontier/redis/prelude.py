"""The Lua prelude every script of :mod:`.scripts` starts with: the epoch check, the key
prefix, the clock, and the helpers that keep a host's place in the ready and wait sets
(``schedule``).

The epoch check: every script's first argument is the epoch of the job this worker
joined ('' before it joined: not checked; :class:`~.link.RedisLink` prepends it). If the
job's ``epoch`` key is missing (Redis lost the job: restarted empty, flushed) the script
writes the ``lost`` tombstone, so that workers started later refuse the job too, and
answers the error ``CRAWLER_STATE_LOST missing``; if it holds another epoch (another
crawl's state), ``CRAWLER_STATE_LOST replaced``. Either way it changes nothing else.

The key layout is described in :mod:`.scripts`.
"""

from __future__ import annotations

__all__ = ["PRELUDE"]

PRELUDE = """
local P = KEYS[1]
local EPOCH = table.remove(ARGV, 1)
if EPOCH ~= '' then
  local current = redis.call('GET', P .. 'epoch')
  if current ~= EPOCH then
    if not current then
      redis.call('SET', P .. 'lost', EPOCH, 'NX')
      return redis.error_reply('CRAWLER_STATE_LOST missing')
    end
    return redis.error_reply('CRAWLER_STATE_LOST replaced')
  end
end
local SPAN = 68719476736

local function clock(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function split(s)
  local out = {}
  for field in string.gmatch(s, '[^\\t]+') do out[#out + 1] = field end
  return out
end

local function enqueue(id, host, prio)
  local seq = redis.call('INCR', P .. 'seq')
  redis.call('ZADD', P .. 'q:' .. host, -prio * SPAN + seq, id)
end

local function free_slot(host)
  if redis.call('HINCRBY', P .. 'busy', host, -1) <= 0 then
    redis.call('HDEL', P .. 'busy', host)
  end
end

-- Put HOST in ready, in wait or in neither; 1 if it just became ready.
local function schedule(host, now, limit)
  local at = tonumber(redis.call('HGET', P .. 'next', host)) or 0
  local head = redis.call('ZRANGE', P .. 'q:' .. host, 0, 0, 'WITHSCORES')
  if #head == 0 or (tonumber(redis.call('HGET', P .. 'busy', host)) or 0) >= limit then
    redis.call('ZREM', P .. 'ready', host)
    redis.call('ZREM', P .. 'wait', host)
    if #head == 0 and at > 0 and at <= now then
      redis.call('HDEL', P .. 'next', host)
      redis.call('HDEL', P .. 'charge', host)
    end
    return 0
  end
  if at > now then
    redis.call('ZREM', P .. 'ready', host)
    redis.call('ZADD', P .. 'wait', at, host)
    return 0
  end
  redis.call('ZREM', P .. 'wait', host)
  return redis.call('ZADD', P .. 'ready', head[2], host)
end

-- Put a lease back in its host's queue (its holder died or gave it back).
local function reclaim(id, now, limit)
  redis.call('ZREM', P .. 'leases', id)
  local held = redis.call('HGET', P .. 'leased', id)
  if not held then return end
  redis.call('HDEL', P .. 'leased', id)
  local f = split(held)
  local host, state = f[2], f[4]
  if state == 'L' then
    free_slot(host)
    redis.call('HINCRBY', P .. 'counts', 'in_flight', -1)
  elseif state == 'D' then
    redis.call('HINCRBY', P .. 'counts', 'done', -1)
  else
    redis.call('HINCRBY', P .. 'counts', 'failed', -1)
  end
  redis.call('HINCRBY', P .. 'counts', 'queued', 1)
  redis.call('HINCRBY', P .. 'counts', 'reclaimed', 1)
  enqueue(id, host, tonumber(f[3]))
  schedule(host, now, limit)
end

local function exhausted()
  return (tonumber(redis.call('HGET', P .. 'counts', 'queued')) or 0) <= 0
    and redis.call('ZCARD', P .. 'leases') == 0
    and redis.call('EXISTS', P .. 'seeding') == 0
end

-- Give back lease ID of WORKER: outcome D done, F failed (final now if FINAL is '1', else at
-- the worker's next flush) or R retry (due in DELAY seconds, stored as DATA).
-- -> 0 not held (it expired and was re-delivered), 1 given back, 2 and its host became ready
local function release(worker, id, outcome, final, delay, data, now, limit)
  local held = redis.call('HGET', P .. 'leased', id)
  if not held then return 0 end
  local f = split(held)
  if f[1] ~= worker then return 0 end
  if f[4] ~= 'L' then return f[4] == outcome and 1 or 0 end  -- sent twice: done already
  local host, prio = f[2], f[3]
  free_slot(host)
  redis.call('HINCRBY', P .. 'counts', 'in_flight', -1)
  if outcome == 'R' then
    redis.call('ZREM', P .. 'leases', id)
    redis.call('HDEL', P .. 'leased', id)
    redis.call('HSET', P .. 'req', id, data)
    redis.call('HINCRBY', P .. 'counts', 'queued', 1)
    -- due at now + delay; queued behind its priority when a lease finds it due
    local order = string.format('%015d', redis.call('INCR', P .. 'seq'))
    local member = order .. '\t' .. id .. '\t' .. host .. '\t' .. prio
    redis.call('ZADD', P .. 'retry', now + math.max(0, delay), member)
  else
    redis.call('HINCRBY', P .. 'counts', outcome == 'D' and 'done' or 'failed', 1)
    if final == '1' then
      redis.call('ZREM', P .. 'leases', id)
      redis.call('HDEL', P .. 'leased', id)
      redis.call('HDEL', P .. 'req', id)
    else
      local record = worker .. '\t' .. host .. '\t' .. prio .. '\t' .. outcome
      redis.call('HSET', P .. 'leased', id, record)
    end
  end
  if schedule(host, now, limit) == 1 or (outcome == 'R' and delay <= 0) then return 2 end
  return 1
end

-- Releases in ARGV[first..], 4 per lease: id, outcome, delay, data.
-- -> a code per release, then 1 if idle workers should look again (published to all)
local function release_all(first, worker, final, now, limit)
  local codes, wake = {}, 0
  for i = first, #ARGV, 4 do
    local code = release(worker, ARGV[i], ARGV[i + 1], final, tonumber(ARGV[i + 2]), ARGV[i + 3],
      now, limit)
    codes[#codes + 1] = code
    if code == 2 then wake = 1 end
  end
  if #codes > 0 and (wake == 1 or exhausted()) then
    wake = 1
    redis.call('PUBLISH', P .. 'wake', 'release')
  end
  codes[#codes + 1] = wake
  return codes
end
"""
