"""The Redis frontier's key layout and the Lua scripts that change it atomically.

Every key of a job starts with ``crawler:{JOB}:`` (the braces make it a Redis
Cluster hash tag: one job lives in one slot, so the scripts may touch any of its
keys). ``P`` below is that prefix.

=================  ======  ================================================================
key                type    holds
=================  ======  ================================================================
P seq              string  counter: request ids and the FIFO order within a priority
P q:HOST           zset    pending request ids of HOST; score = -priority * 2^36 + seq
P req              hash    id -> encoded request (pending, delayed retry or leased)
P ready            zset    HOST -> score of its best request: hosts that may start one now
P wait             zset    HOST -> next allowed start: hosts with work and a free slot, waiting
                           out DOWNLOAD_DELAY or a hold (hosts at their limit are in neither)
P busy             hash    HOST -> requests in flight (the whole cluster)
P next             hash    HOST -> when its next request may start
P charge           hash    HOST -> id of the lease whose delay ``next`` holds (REFUND gives it back)
P hdelay / pdelay  hash    HOST -> delay override (set_host_delay) / HOST_DELAYS setting
P leases           zset    id -> lease deadline
P leased           hash    id -> "worker TAB host TAB priority TAB state"; state L = in flight,
                           D / F = acked done / failed, removed at the holder's next flush
P retry            zset    "order TAB id TAB host TAB priority" -> when the retry is due
P seen             set     16-byte request fingerprints (de-duplication)
P counts           hash    queued (pending + retries), in_flight, done, failed, reclaimed
P stats            hash    engine counters summed over all processes (pages, items, ...)
P workers          zset    worker id ("hostname:pid:random") -> last heartbeat
P meta             hash    started_at, lease_timeout_s
P epoch            string  the job's identity: a random token written with ``seeded``; every
                           script of a worker that joined checks it (see :mod:`.prelude`)
P lost             string  tombstone: the epoch a worker found gone (the state was lost)
P seeded           string  worker that claimed the seeding (SET NX; never expires)
P seeding          string  present while the start requests are pushed (TTL, refreshed)
P wake             pubsub  "something became ready" (wakes idle workers of every process)
=================  ======  ================================================================

Times are Redis ``TIME`` (one clock for every machine) unless the caller passes
its own (tests with a manual clock). Priorities are clamped to +-2^16 so a score
stays an exact double.
"""

from __future__ import annotations

__all__ = [
    "ABANDON",
    "CLAIM_SEED",
    "FINALIZE",
    "HOLD",
    "LEASE",
    "PRIORITY_LIMIT",
    "PUSH",
    "REFUND",
    "RELEASE",
    "RENEW",
    "SEED_DONE",
    "job_prefix",
]

from .prelude import PRELUDE as _PRELUDE

PRIORITY_LIMIT = 2**16


def job_prefix(job: str) -> str:
    """The key prefix of ``job``."""
    return f"crawler:{{{job}}}:"


PUSH = (
    _PRELUDE
    + """
-- ARGV: now, limit, then per request: fingerprint, dont_filter, host, priority, data
-- -> 1/0 per request (queued / duplicate), then how many hosts became ready
local now, limit = clock(ARGV[1]), tonumber(ARGV[2])
local out, hosts, touched, added = {}, {}, {}, 0
for i = 3, #ARGV, 5 do
  local host = ARGV[i + 2]
  if redis.call('SADD', P .. 'seen', ARGV[i]) == 1 or ARGV[i + 1] == '1' then
    local id = redis.call('INCR', P .. 'seq')
    redis.call('HSET', P .. 'req', id, ARGV[i + 4])
    redis.call('ZADD', P .. 'q:' .. host, -tonumber(ARGV[i + 3]) * SPAN + id, id)
    added = added + 1
    if not touched[host] then
      touched[host] = true
      hosts[#hosts + 1] = host
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if added > 0 then redis.call('HINCRBY', P .. 'counts', 'queued', added) end
local ready = 0
for _, host in ipairs(hosts) do ready = ready + schedule(host, now, limit) end
if ready > 0 then redis.call('PUBLISH', P .. 'wake', 'push') end
out[#out + 1] = ready
return out
"""
)

LEASE = (
    _PRELUDE
    + """
-- ARGV: now, worker, lease_s, limit, delay_s, jitter factor, max moves per step, final,
--       then releases of this worker to apply first (see release_all)
-- -> {release codes, 1, id, data, host, hosts still ready}
--    | {release codes, 2, seconds until something may be ready or ''}
--    | {release codes, 0} when the crawl is exhausted
local now, worker = clock(ARGV[1]), ARGV[2]
local lease_s, limit, delay_s = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local jitter, moves = tonumber(ARGV[6]), tonumber(ARGV[7])
local codes = release_all(9, worker, ARGV[8], now, limit)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', now, 'LIMIT', 0, moves)) do
  reclaim(id, now, limit)
end
local due = redis.call('ZRANGEBYSCORE', P .. 'retry', '-inf', now, 'LIMIT', 0, moves)
for _, member in ipairs(due) do
  redis.call('ZREM', P .. 'retry', member)
  local f = split(member)
  enqueue(f[2], f[3], tonumber(f[4]))
  schedule(f[3], now, limit)
end
for _, host in ipairs(redis.call('ZRANGEBYSCORE', P .. 'wait', '-inf', now, 'LIMIT', 0, moves)) do
  schedule(host, now, limit)
end
while true do
  local best = redis.call('ZRANGE', P .. 'ready', 0, 0)
  if #best == 0 then break end
  local host = best[1]
  local top = redis.call('ZPOPMIN', P .. 'q:' .. host)
  if #top == 0 then
    redis.call('ZREM', P .. 'ready', host)
  else
    local id = top[1]
    local prio = 0 - math.floor(tonumber(top[2]) / SPAN)
    local data = redis.call('HGET', P .. 'req', id)
    redis.call('HINCRBY', P .. 'counts', 'queued', -1)
    if data then
      redis.call('HINCRBY', P .. 'busy', host, 1)
      redis.call('HINCRBY', P .. 'counts', 'in_flight', 1)
      local d = tonumber(redis.call('HGET', P .. 'hdelay', host))
        or tonumber(redis.call('HGET', P .. 'pdelay', host)) or delay_s
      if d > 0 then
        redis.call('HSET', P .. 'next', host, now + d * jitter)
        redis.call('HSET', P .. 'charge', host, id)
      end
      schedule(host, now, limit)
      redis.call('ZADD', P .. 'leases', now + lease_s, id)
      redis.call('HSET', P .. 'leased', id, worker .. '\\t' .. host .. '\\t' .. prio .. '\\tL')
      return {codes, 1, id, data, host, redis.call('ZCARD', P .. 'ready')}
    end
    redis.call('HINCRBY', P .. 'counts', 'failed', 1)  -- its data is gone: count it lost
    schedule(host, now, limit)
  end
end
if exhausted() then return {codes, 0} end
local soonest = nil
for _, key in ipairs({'wait', 'retry', 'leases'}) do
  local first = redis.call('ZRANGE', P .. key, 0, 0, 'WITHSCORES')
  if #first > 0 and (soonest == nil or tonumber(first[2]) < soonest) then
    soonest = tonumber(first[2])
  end
end
if soonest == nil then return {codes, 2, ''} end
return {codes, 2, tostring(soonest - now)}
"""
)

RELEASE = (
    _PRELUDE
    + """
-- ARGV: now, worker, limit, final, then releases (see release_all) -> release_all's codes
return release_all(5, ARGV[2], ARGV[4], clock(ARGV[1]), tonumber(ARGV[3]))
"""
)

FINALIZE = (
    _PRELUDE
    + """
-- ARGV: worker, ids acked or failed since the last flush -> 1 if the crawl is now exhausted
local worker = ARGV[1]
for i = 2, #ARGV do
  local id = ARGV[i]
  local held = redis.call('HGET', P .. 'leased', id)
  if held then
    local f = split(held)
    if f[1] == worker and f[4] ~= 'L' then
      redis.call('ZREM', P .. 'leases', id)
      redis.call('HDEL', P .. 'leased', id)
      redis.call('HDEL', P .. 'req', id)
    end
  end
end
if exhausted() then
  redis.call('PUBLISH', P .. 'wake', 'exhausted')
  return 1
end
return 0
"""
)

ABANDON = (
    _PRELUDE
    + """
-- ARGV: now, worker, limit, ids: this worker's leases go back to their queues now
local now, worker, limit = clock(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local n = 0
for i = 4, #ARGV do
  local held = redis.call('HGET', P .. 'leased', ARGV[i])
  if held and split(held)[1] == worker then
    reclaim(ARGV[i], now, limit)
    n = n + 1
  end
end
if n > 0 then redis.call('PUBLISH', P .. 'wake', 'abandon') end
return n
"""
)

RENEW = (
    _PRELUDE
    + """
-- ARGV: now, worker, lease_s, seeding ttl_ms (0: not seeding), ids
-- -> ids no longer held by this worker
local now, worker, lease_s = clock(ARGV[1]), ARGV[2], tonumber(ARGV[3])
redis.call('ZADD', P .. 'workers', now, worker)
if ARGV[4] ~= '0' and redis.call('GET', P .. 'seeding') == worker then
  redis.call('PEXPIRE', P .. 'seeding', ARGV[4])
end
local lost = {}
for i = 5, #ARGV do
  local held = redis.call('HGET', P .. 'leased', ARGV[i])
  if held and split(held)[1] == worker then
    redis.call('ZADD', P .. 'leases', 'XX', now + lease_s, ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"""
)

HOLD = (
    _PRELUDE
    + """
-- ARGV: now, limit, host, delay_s: start no request to host before now + delay_s
local now, limit, host = clock(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local at = now + tonumber(ARGV[4])
if at > (tonumber(redis.call('HGET', P .. 'next', host)) or 0) then
  redis.call('HSET', P .. 'next', host, at)
end
redis.call('HDEL', P .. 'charge', host)  -- a hold is never given back
schedule(host, now, limit)
return 1
"""
)

CLAIM_SEED = (
    _PRELUDE
    + """
-- ARGV: now, worker, seeding ttl_ms, a new epoch
-- -> {1, epoch}: this worker seeds the job, under the new epoch; {0, epoch}: it joins
--    the job; {2, epoch}: the job's state was lost while workers ran (the tombstone)
local lost = redis.call('GET', P .. 'lost')
if lost then return {2, lost} end
if redis.call('SET', P .. 'seeded', ARGV[2], 'NX') then
  redis.call('SET', P .. 'epoch', ARGV[4])
  redis.call('SET', P .. 'seeding', ARGV[2], 'PX', ARGV[3])
  redis.call('HSET', P .. 'meta', 'started_at', clock(ARGV[1]))
  return {1, ARGV[4]}
end
local epoch = redis.call('GET', P .. 'epoch')
if not epoch then  -- seeded by a version without epochs: this one is its epoch from now on
  epoch = ARGV[4]
  redis.call('SET', P .. 'epoch', epoch)
end
return {0, epoch}
"""
)

SEED_DONE = (
    _PRELUDE
    + """
-- ARGV: worker: the start requests are all pushed
if redis.call('GET', P .. 'seeding') == ARGV[1] then redis.call('DEL', P .. 'seeding') end
redis.call('PUBLISH', P .. 'wake', 'seeded')
return 1
"""
)

REFUND = (
    _PRELUDE
    + """
-- ARGV: now, limit, host, lease id: the lease used no network; if its delay is still the
-- host's last one, drop it -> 1 if the host became ready (published to all)
local now, limit, host = clock(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
if redis.call('HGET', P .. 'charge', host) ~= ARGV[4] then return 0 end
redis.call('HDEL', P .. 'charge', host)
redis.call('HDEL', P .. 'next', host)
if schedule(host, now, limit) == 0 then return 0 end
redis.call('PUBLISH', P .. 'wake', 'refund')
return 1
"""
)
