#pragma once
// The Lua scripts of the Redis job store (redis_store.cpp): each state change is one script, so
// a job's hash, the stream entry that carries it, the state indexes and the idempotency key change
// together or not at all. Every script takes ARGV[1] = the key prefix ("gatehouse:{jobs}:") and
// builds its keys from it (all in one hash slot); ARGV[2] = the consumer group.
//
// Keys: <p>job:<id> (hash: the job; `entry` = the stream entry it is pending under, `holder` =
// the consumer running it), <p>stream (job ids; the group hands each entry to one consumer),
// <p>delayed (zset id → run_at: backoffs), <p>leases (zset id → lease expiry of every running
// job, claimed or run where accepted), <p>index:<state> (zset id → created_at: list(), counts),
// <p>finished (zset id → finished_at: final jobs leave the indexes after result_ttl; their hashes
// expire by TTL), <p>idem:<owner>:<key> (string: job id).

namespace gatehouse::jobs::redis_scripts {

// ARGV: p, group, id, idem key name ('' = none), digest, max_queued, run_here, created_at, lease
// expiry, then the hash's field/value pairs. → {'created'} | {'existing', HGETALL} |
// {'mismatch'} | {'full'} | {'duplicate'} (the id exists: refused)
inline constexpr const char* kEnqueue = R"lua(
local p, id, idem = ARGV[1], ARGV[3], ARGV[4]
if idem ~= '' then
  local prev = redis.call('GET', idem)
  if prev then
    local ph = p .. 'job:' .. prev
    local d = redis.call('HGET', ph, 'request_digest')
    if d then
      if d == ARGV[5] then return {'existing', redis.call('HGETALL', ph)} end
      return {'mismatch'}
    end
  end
end
if redis.call('ZCARD', p .. 'index:0') >= tonumber(ARGV[6]) then return {'full'} end
local h = p .. 'job:' .. id
if redis.call('EXISTS', h) == 1 then return {'duplicate'} end
redis.call('HSET', h, unpack(ARGV, 10))
if ARGV[7] == '1' then
  redis.call('ZADD', p .. 'leases', ARGV[9], id)
  redis.call('ZADD', p .. 'index:1', ARGV[8], id)
else
  redis.call('XADD', p .. 'stream', '*', 'id', id)
  redis.call('ZADD', p .. 'index:0', ARGV[8], id)
end
if idem ~= '' then redis.call('SET', idem, id) end
return {'created'}
)lua";

// ARGV: p, group, consumer, max, lease ms, now. → {HGETALL...} of the jobs now running here.
inline constexpr const char* kClaim = R"lua(
local p, g, c = ARGV[1], ARGV[2], ARGV[3]
local max, lease, now = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local S = p .. 'stream'
-- Due backoffs go into the stream.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. 'delayed', '-inf', now, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', p .. 'delayed', id)
  redis.call('XADD', S, '*', 'id', id)
end
local out = {}
local function drop(entry)
  redis.call('XACK', S, g, entry)
  redis.call('XDEL', S, entry)
end
local function take(entry, id)
  local h = p .. 'job:' .. id
  local st = redis.call('HGET', h, 'state')
  local mine = redis.call('HGET', h, 'entry')
  if not (st == '0' or (st == '1' and tonumber(redis.call('HGET', h, 'run_at')) <= now)) then
    -- Removed, final, or running under a live lease: a stale entry, unless it is the running
    -- job's own (left pending: its holder acks it).
    if entry and mine ~= entry then drop(entry) end
    if st ~= '1' then redis.call('ZREM', p .. 'leases', id) end
    return
  end
  if st == '0' then
    redis.call('ZREM', p .. 'index:0', id)
    redis.call('ZADD', p .. 'index:1', redis.call('HGET', h, 'created_at'), id)
  end
  if mine and mine ~= entry then drop(mine) end
  redis.call('ZADD', p .. 'leases', now + lease, id)
  redis.call('HINCRBY', h, 'attempts', 1)
  redis.call('HSET', h, 'state', '1', 'run_at', now + lease, 'updated_at', now, 'holder', c)
  if entry then
    redis.call('HSET', h, 'entry', entry)
  else
    redis.call('HDEL', h, 'entry')
  end
  out[#out + 1] = redis.call('HGETALL', h)
end
-- Running jobs whose lease expired (their holder died or stopped renewing) are taken over: the
-- stream entry, if any, moves to this consumer.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. 'leases', '-inf', now, 'LIMIT', 0, max)) do
  local e = redis.call('HGET', p .. 'job:' .. id, 'entry')
  if e then
    redis.call('XCLAIM', S, g, c, 0, e, 'JUSTID')
    take(e, id)
  else
    redis.call('ZREM', p .. 'leases', id)
    take(nil, id)
  end
end
-- Entries a consumer left pending longer than the lease with no live job behind them (the job
-- finished, was removed or re-queued elsewhere) are swept.
if #out < max then
  local r = redis.call('XAUTOCLAIM', S, g, c, lease, '0-0', 'COUNT', max - #out)
  for _, e in ipairs(r[2]) do
    if e[2] and e[2][2] then take(e[1], e[2][2]) else drop(e[1]) end
  end
end
local need = max - #out
if need > 0 then
  local got = redis.call('XREADGROUP', 'GROUP', g, c, 'COUNT', need, 'STREAMS', S, '>')
  if got then
    for _, e in ipairs(got[1][2]) do
      if e[2] and e[2][2] then take(e[1], e[2][2]) else drop(e[1]) end
    end
  end
end
return out
)lua";

// Moves a job out of wherever it is pending (stream entry, lease) and out of its index.
// Shared prologue of the scripts below.
#define GH_JOBS_DETACH                               \
  "local function detach(p, g, h, id, old)\n"        \
  "  local e = redis.call('HGET', h, 'entry')\n"     \
  "  if e then\n"                                    \
  "    redis.call('XACK', p .. 'stream', g, e)\n"    \
  "    redis.call('XDEL', p .. 'stream', e)\n"       \
  "  end\n"                                          \
  "  redis.call('HDEL', h, 'entry', 'holder')\n"     \
  "  redis.call('ZREM', p .. 'leases', id)\n"        \
  "  redis.call('ZREM', p .. 'delayed', id)\n"       \
  "  redis.call('ZREM', p .. 'finished', id)\n"      \
  "  redis.call('ZREM', p .. 'index:' .. old, id)\n" \
  "end\n"

// ARGV: p, group, id, state, now, ttl ms, error, has response, status, headers, body. → 1 | 0
inline constexpr const char* kFinish = GH_JOBS_DETACH R"lua(
local p, g, id, now = ARGV[1], ARGV[2], ARGV[3], ARGV[5]
local h = p .. 'job:' .. id
local old = redis.call('HGET', h, 'state')
if not old then return 0 end
detach(p, g, h, id, old)
redis.call('ZADD', p .. 'index:' .. ARGV[4], redis.call('HGET', h, 'created_at'), id)
redis.call('ZADD', p .. 'finished', now, id)
redis.call('HSET', h, 'state', ARGV[4], 'finished_at', now, 'updated_at', now, 'last_error', ARGV[7])
if ARGV[8] == '1' then
  redis.call('HSET', h, 'response_status', ARGV[9], 'response_headers', ARGV[10],
             'response_body', ARGV[11])
else
  redis.call('HDEL', h, 'response_status', 'response_headers', 'response_body')
end
-- The result and its idempotency key live result_ttl more.
redis.call('PEXPIRE', h, ARGV[6])
local k = redis.call('HGET', h, 'idem_ref')
if k and k ~= '' then redis.call('PEXPIRE', k, ARGV[6]) end
return 1
)lua";

// ARGV: p, group, id, run_at, now, error. → 1 | 0
inline constexpr const char* kRetryLater = GH_JOBS_DETACH R"lua(
local p, g, id, run_at, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local h = p .. 'job:' .. id
local old = redis.call('HGET', h, 'state')
if not old then return 0 end
detach(p, g, h, id, old)
redis.call('ZADD', p .. 'index:0', redis.call('HGET', h, 'created_at'), id)
redis.call('HSET', h, 'state', '0', 'run_at', run_at, 'updated_at', now, 'last_error', ARGV[6])
redis.call('PERSIST', h)
if run_at <= now then
  redis.call('XADD', p .. 'stream', '*', 'id', id)
else
  redis.call('ZADD', p .. 'delayed', run_at, id)
end
return 1
)lua";

// ARGV: p, group, id, now. → 1 | 0 (not dead or failed)
inline constexpr const char* kRequeue = GH_JOBS_DETACH R"lua(
local p, g, id, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local h = p .. 'job:' .. id
local old = redis.call('HGET', h, 'state')
if old ~= '3' and old ~= '4' then return 0 end
detach(p, g, h, id, old)
redis.call('ZADD', p .. 'index:0', redis.call('HGET', h, 'created_at'), id)
redis.call('HSET', h, 'state', '0', 'attempts', '0', 'run_at', now, 'updated_at', now,
           'finished_at', '0')
redis.call('HDEL', h, 'response_status', 'response_headers', 'response_body')
redis.call('PERSIST', h)
local k = redis.call('HGET', h, 'idem_ref')
if k and k ~= '' then redis.call('PERSIST', k) end
redis.call('XADD', p .. 'stream', '*', 'id', id)
return 1
)lua";

// ARGV: p, group, id. → 1 | 0
inline constexpr const char* kRemove = GH_JOBS_DETACH R"lua(
local p, g, id = ARGV[1], ARGV[2], ARGV[3]
local h = p .. 'job:' .. id
local old = redis.call('HGET', h, 'state')
if not old then return 0 end
detach(p, g, h, id, old)
local k = redis.call('HGET', h, 'idem_ref')
if k and k ~= '' and redis.call('GET', k) == id then redis.call('DEL', k) end
redis.call('DEL', h)
return 1
)lua";

// ARGV: p, group, consumer, id, lease expiry. Fire and forget.
inline constexpr const char* kRenew = R"lua(
local p, g, c, id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local h = p .. 'job:' .. id
if redis.call('HGET', h, 'state') ~= '1' then return 0 end
redis.call('HSET', h, 'run_at', ARGV[5])
local e = redis.call('HGET', h, 'entry')
if e then
  -- Resets the entry's idle time: XAUTOCLAIM elsewhere leaves it alone.
  redis.call('XCLAIM', p .. 'stream', g, c, 0, e, 'JUSTID')
else
end
redis.call('ZADD', p .. 'leases', ARGV[5], id)
return 1
)lua";

// ARGV: p, group, consumer, now. Running jobs this consumer holds go back to the stream. → n
inline constexpr const char* kRelease = GH_JOBS_DETACH R"lua(
local p, g, c, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local S = p .. 'stream'
local n = 0
local function back(id)
  local h = p .. 'job:' .. id
  detach(p, g, h, id, '1')
  redis.call('ZADD', p .. 'index:0', redis.call('HGET', h, 'created_at'), id)
  redis.call('HSET', h, 'state', '0', 'run_at', now, 'updated_at', now)
  redis.call('XADD', S, '*', 'id', id)
  n = n + 1
end
for _, id in ipairs(redis.call('ZRANGE', p .. 'leases', 0, -1)) do
  local h = p .. 'job:' .. id
  if redis.call('HGET', h, 'holder') == c and redis.call('HGET', h, 'state') == '1' then back(id) end
end
return n
)lua";

// ARGV: p, group, state, limit, field names... → {{field, value, ...}, ...} newest first.
inline constexpr const char* kList = R"lua(
local p = ARGV[1]
local out = {}
local fields = {unpack(ARGV, 5)}
for _, id in ipairs(redis.call('ZREVRANGE', p .. 'index:' .. ARGV[3], 0, tonumber(ARGV[4]) - 1)) do
  local v = redis.call('HMGET', p .. 'job:' .. id, unpack(fields))
  if v[1] then
    local row = {}
    for i, f in ipairs(fields) do
      if v[i] then
        row[#row + 1] = f
        row[#row + 1] = v[i]
      end
    end
    out[#out + 1] = row
  end
end
return out
)lua";

// ARGV: p, group, expired-before (final jobs finished earlier leave the indexes; their hashes
// expire by TTL). → {queued, running, succeeded, failed, dead, oldest queued created_at or -1}
inline constexpr const char* kCounts = R"lua(
local p = ARGV[1]
local gone = redis.call('ZRANGEBYSCORE', p .. 'finished', '-inf', '(' .. ARGV[3], 'LIMIT', 0, 10000)
for _, id in ipairs(gone) do
  redis.call('ZREM', p .. 'finished', id)
  for s = 2, 4 do redis.call('ZREM', p .. 'index:' .. s, id) end
end
local out = {}
for s = 0, 4 do out[#out + 1] = redis.call('ZCARD', p .. 'index:' .. s) end
local o = redis.call('ZRANGE', p .. 'index:0', 0, 0, 'WITHSCORES')
out[#out + 1] = o[2] and tonumber(o[2]) or -1
return out
)lua";

#undef GH_JOBS_DETACH

}  // namespace gatehouse::jobs::redis_scripts
