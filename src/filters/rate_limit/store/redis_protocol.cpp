#include "filters/rate_limit/store/redis_protocol.hpp"

#include <fmt/format.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include <bit>
#include <cstring>

#include "http/json.hpp"

namespace gatehouse::filters::rate_limit::store {
namespace {

// Time is in microseconds (Redis TIME's resolution). Lua numbers are doubles: the arithmetic is
// exact (and matches the C++ algorithms, tests/redis/) while count x period in microseconds stays
// below 2^53, about 9e15 (150 million per minute, 100 thousand per day); idiv corrects the
// off-by-one of floor(a / b) near that bound. Beyond it, decisions near the limit may be off by
// one request.
// State per key is three doubles (struct.pack, 24 bytes) and every key carries a TTL equal to the
// time after which its state is the same as no state, so Redis memory stays bounded.
constexpr std::string_view kScript = R"lua(-- gatehouse rate-limit decision
-- One call decides a batch of requests, each all-or-nothing over its own keys.
-- KEYS: per decision, per group: its counter keys, then (bans) its ban and rejection-count keys.
-- ARGV[1]: now in microseconds, or '' for the server clock (TIME)
-- ARGV[2]: the number of decisions; then per decision: its spec, then one ban reason per group.
--          The spec is little-endian doubles: bans (1: look bans up and count rejections),
--          groups; per group: counters, ban_after (0: no rule), ban_within_ms, ban_for_ms; per
--          counter: algorithm, count, period_us, burst. (One packed argument instead of a dozen
--          strings: Redis turns every argument into a Lua string, which costs more than the
--          unpacking.)
-- Reply, per decision: status (0 admitted and committed, 1 limited and nothing committed,
--        2 banned), banned group (0-based), ban ms left, bit mask of the groups whose ban this
--        request started, then per counter: allowed, remaining, reset_us, retry_us (zeros when
--        banned)
local floor = math.floor
local function idiv(a, b)
  local q = floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end
local function cdiv(a, b) return idiv(a + b - 1, b) end
local function pos(v) if v < 0 then return 0 end return v end

local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end

-- Each returns: allowed, remaining, reset, retry, the three state values, ttl (all microseconds)
local function sliding_window(L, P, B, t, n, v)
  if t == nil then t = now; n = 0; v = 0
  elseif now >= t + P then
    local k = idiv(now - t, P)
    if k == 1 then v = n else v = 0 end
    n = 0; t = t + k * P
  end
  local elapsed = pos(now - t)
  local wp = v * (P - elapsed)
  local allowed, remaining, retry = 0, 0, 0
  if wp + (n + 1) * P <= L * P then
    allowed = 1; n = n + 1
    remaining = pos(idiv(L * P - wp - n * P, P))
  else
    local at = -1
    if v > 0 and L - n - 1 >= 0 then
      local e_min = P - idiv((L - n - 1) * P, v)
      if e_min < P then at = math.max(e_min, elapsed) end
    end
    if at < 0 then
      local e_min = 0
      if n ~= 0 then e_min = P - idiv((L - 1) * P, n) end
      at = P + pos(e_min)
    end
    retry = pos(at - elapsed)
  end
  local reset = 0
  if n > 0 then reset = pos(2 * P - elapsed) elseif v > 0 then reset = pos(P - elapsed) end
  return allowed, remaining, reset, retry, t, n, v, 2 * P - elapsed
end

local function fixed_window(L, P, B, t, n, c)
  if t == nil then t = now; n = 0
  elseif now >= t + P then t = t + idiv(now - t, P) * P; n = 0 end
  local left = t + P - now
  if left < 0 then left = 0 elseif left > P then left = P end
  if n < L then return 1, L - n - 1, left, 0, t, n + 1, 0, left end
  return 0, 0, left, left, t, n, 0, left
end

-- v: level in token x P units, refilled by L per microsecond; a request costs P.
local function token_bucket(L, P, B, v, t, c)
  local cap = B * P
  if v == nil then v = cap; t = now
  elseif now > t then
    local d = now - t
    local full = cdiv(cap, L)
    if d > full then d = full end
    v = math.min(cap, v + d * L); t = now
  end
  local allowed, remaining, retry = 0, 0, 0
  if v >= P then allowed = 1; v = v - P; remaining = idiv(v, P)
  else retry = cdiv(P - v, L) end
  local reset = cdiv(cap - v, L)
  return allowed, remaining, reset, retry, v, t, 0, reset
end

-- d: how far the theoretical arrival time is ahead of t, in time x L units.
local function gcra(L, P, B, d, t, c)
  if d == nil then d = 0; t = now end
  if now > t then
    local e = now - t
    if e >= cdiv(d, L) then d = 0 else d = d - e * L end
    t = now
  end
  local window = B * P
  local nd = d + P
  if nd <= window then
    local reset = cdiv(nd, L)
    return 1, idiv(window - nd, P), reset, 0, nd, t, 0, reset
  end
  local reset = cdiv(d, L)
  return 0, 0, reset, cdiv(nd - window, L), d, t, 0, reset
end

local algorithms = {[0] = sliding_window, [1] = fixed_window, [2] = token_bucket, [3] = gcra}
local out = {}
local ai, ki = 3, 1
-- Scratch arrays reused by every decision of the batch: no table is created per decision.
local gban, grej, gafter, gwithin, gdur, greason, grejected = {}, {}, {}, {}, {}, {}, {}
local ckey, cgroup, s1, s2, s3, sttl = {}, {}, {}, {}, {}, {}

local function decide()
  -- One packed argument of little-endian doubles per decision, then one reason per group.
  local spec = ARGV[ai]
  ai = ai + 1
  local bans, ngroups, at = struct.unpack('<dd', spec)
  bans = bans == 1
  local base = #out
  out[base + 1] = 0
  out[base + 2] = -1
  out[base + 3] = 0
  out[base + 4] = 0
  local o = base + 4
  local n = 0
  local all = true
  local banned = 0
  for g = 1, ngroups do
    local count, after, within, dur
    count, after, within, dur, at = struct.unpack('<dddd', spec, at)
    gafter[g] = after
    gwithin[g] = within
    gdur[g] = dur
    greason[g] = ARGV[ai]
    grejected[g] = false
    ai = ai + 1
    local first_key = ki
    ki = ki + count
    if bans then
      gban[g] = KEYS[ki]
      grej[g] = KEYS[ki + 1]
      ki = ki + 2
      if banned == 0 then
        local ms = redis.call('PTTL', gban[g])
        if ms > 0 then banned = g; out[base + 3] = ms end
      end
    end
    for c = 0, count - 1 do
      n = n + 1
      if banned == 0 then
        local key = KEYS[first_key + c]
        local a, b, d
        local s = redis.call('GET', key)
        if s then a, b, d = struct.unpack('<ddd', s) end
        local alg, L, P, B
        alg, L, P, B, at = struct.unpack('<dddd', spec, at)
        local ok, rem, reset, retry, na, nb, nc, ttl = algorithms[alg](L, P, B, a, b, d)
        out[o + 1] = ok
        out[o + 2] = rem
        out[o + 3] = reset
        out[o + 4] = retry
        ckey[n] = key
        cgroup[n] = g
        s1[n] = na
        s2[n] = nb
        s3[n] = nc
        sttl[n] = ttl
        if ok == 0 then all = false; grejected[g] = true end
      else
        at = at + 32  -- this counter's four doubles
        out[o + 1] = 0
        out[o + 2] = 0
        out[o + 3] = 0
        out[o + 4] = 0
      end
      o = o + 4
    end
  end
  if banned > 0 then
    -- Refused by a ban found on group `banned`: zeros for every counter, nothing written.
    -- Counters of groups read before the ban was found were evaluated but are not committed.
    for i = base + 5, o do out[i] = 0 end
    out[base + 1] = 2
    out[base + 2] = banned - 1
    return
  end
  if all then
    for i = 1, n do
      local ms = cdiv(pos(sttl[i]), 1000)
      if ms < 1 then ms = 1 end
      redis.call('SET', ckey[i], struct.pack('<ddd', s1[i], s2[i], s3[i]), 'PX', ms)
    end
    return
  end
  out[base + 1] = 1
  if bans then
    local bit = 1
    for g = 1, ngroups do
      if gafter[g] > 0 and grejected[g] then
        local c = redis.call('INCR', grej[g])
        if c == 1 then redis.call('PEXPIRE', grej[g], gwithin[g]) end
        if c >= gafter[g] then
          redis.call('SET', gban[g], greason[g], 'PX', gdur[g])
          redis.call('DEL', grej[g])
          out[base + 4] = out[base + 4] + bit
        end
      end
      bit = bit * 2
    end
  end
end

-- Decisions run one after the other: a later one sees what an earlier one committed.
for d = 1, tonumber(ARGV[2]) do decide() end
return out
)lua";

void add_number(redis::Command& cmd, std::uint64_t v) {
  http::append_integer(cmd.arena, v);
  cmd.ends.push_back(cmd.arena.size());
}

void append_tagged(std::string& out, std::string_view prefix, std::string_view identity) {
  out += prefix;
  out += '{';
  out += identity;
  out += "}:";
}

static_assert(std::endian::native == std::endian::little, "the script unpacks '<d'");
constexpr std::int64_t kNanosPerMicro = 1000;
constexpr std::int64_t kNanosPerMilli = 1'000'000;

}  // namespace

std::string_view script() {
  return kScript;
}

const std::string& script_sha1() {
  static const std::string sha = [] {
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char*>(kScript.data()), kScript.size(), digest);
    std::string hex;
    for (unsigned char b : digest) {
      fmt::format_to(std::back_inserter(hex), "{:02x}", b);
    }
    return hex;
  }();
  return sha;
}

std::string counter_key(std::string_view prefix, std::string_view identity,
                        std::uint32_t definition) {
  std::string out;
  append_tagged(out, prefix, identity);
  fmt::format_to(std::back_inserter(out), "{:08x}", definition);
  return out;
}

std::string ban_key(std::string_view prefix, std::string_view identity) {
  std::string out;
  append_tagged(out, prefix, identity);
  out += "ban";
  return out;
}

std::string rejection_key(std::string_view prefix, std::string_view identity) {
  std::string out;
  append_tagged(out, prefix, identity);
  out += "rej";
  return out;
}

void DecideBatch::start(std::string_view prefix, std::int64_t now_us) {
  keys_.clear();
  args_.clear();
  prefix_ = prefix;
  now_us_ = now_us;
  decisions_ = 0;
}

void DecideBatch::add(const StoreRequest& req, std::size_t first, std::size_t last) {
  ++decisions_;
  for (std::size_t g = first; g < last; ++g) {
    const auto& grp = req.groups[g];
    for (std::size_t c = grp.first; c < grp.first + grp.count; ++c) {
      append_tagged(keys_.arena, prefix_, grp.identity);
      fmt::format_to(std::back_inserter(keys_.arena), "{:08x}", req.definitions[c]);
      keys_.ends.push_back(keys_.arena.size());
    }
    if (req.check_bans) {
      append_tagged(keys_.arena, prefix_, grp.identity);
      keys_.add("ban");
      append_tagged(keys_.arena, prefix_, grp.identity);
      keys_.add("rej");
    }
  }
  auto& spec = spec_;
  spec.clear();
  auto put = [&spec](double v) {
    char bytes[sizeof v];
    std::memcpy(bytes, &v, sizeof v);
    spec.append(bytes, sizeof v);
  };
  put(req.check_bans ? 1 : 0);
  put(static_cast<double>(last - first));
  for (std::size_t g = first; g < last; ++g) {
    const auto& grp = req.groups[g];
    put(grp.count);
    if (grp.ban != nullptr) {
      put(grp.ban->after);
      put(static_cast<double>(
          std::max<std::int64_t>(1, (grp.ban->within + kNanosPerMilli - 1) / kNanosPerMilli)));
      put(static_cast<double>(
          std::max<std::int64_t>(1, (grp.ban->duration + kNanosPerMilli - 1) / kNanosPerMilli)));
    } else {
      put(0);
      put(0);
      put(0);
    }
    for (std::size_t c = grp.first; c < grp.first + grp.count; ++c) {
      const auto& check = req.checks[c];
      put(static_cast<double>(check.algorithm));
      put(static_cast<double>(check.params.count));
      put(static_cast<double>(std::max<std::int64_t>(1, check.params.period / kNanosPerMicro)));
      put(static_cast<double>(check.params.effective_burst()));
    }
  }
  args_.add(spec);
  for (std::size_t g = first; g < last; ++g) {
    args_.add(req.groups[g].ban != nullptr ? std::string_view(req.groups[g].ban_reason)
                                           : std::string_view());
  }
}

void DecideBatch::finish(bool with_body, redis::Command& cmd) const {
  cmd.clear();
  if (with_body) {
    cmd.add("EVAL");
    cmd.add(kScript);
  } else {
    cmd.add("EVALSHA");
    cmd.add(script_sha1());
  }
  add_number(cmd, keys_.size());
  for (std::size_t i = 0; i < keys_.size(); ++i) {
    cmd.add(keys_.arg(i));
  }
  if (now_us_ >= 0) {
    add_number(cmd, static_cast<std::uint64_t>(now_us_));
  } else {
    cmd.add("");
  }
  add_number(cmd, decisions_);
  for (std::size_t i = 0; i < args_.size(); ++i) {
    cmd.add(args_.arg(i));
  }
}

void build_decide(const StoreRequest& req, std::size_t first, std::size_t last,
                  std::string_view prefix, bool with_body, std::int64_t now_us,
                  redis::Command& cmd) {
  DecideBatch batch;
  batch.start(prefix, now_us);
  batch.add(req, first, last);
  batch.finish(with_body, cmd);
}

bool parse_decide(const redisReply* reply, StoreRequest& req, std::size_t first, std::size_t last,
                  std::string& error) {
  std::size_t offset = 0;
  if (!parse_decide(reply, req, first, last, error, offset)) {
    return false;
  }
  if (offset != reply->elements) {
    error = "unexpected reply to the decision script";
    return false;
  }
  return true;
}

bool parse_decide(const redisReply* reply, StoreRequest& req, std::size_t first, std::size_t last,
                  std::string& error, std::size_t& offset) {
  if (reply == nullptr) {
    error = "no reply";
    return false;
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    error.assign(reply->str, reply->len);
    return false;
  }
  if (reply->type != REDIS_REPLY_ARRAY) {
    error = "unexpected reply to the decision script";
    return false;
  }
  auto integer = [&](std::size_t i, long long& v) {
    if (i >= reply->elements || reply->element[i]->type != REDIS_REPLY_INTEGER) {
      return false;
    }
    v = reply->element[i]->integer;
    return true;
  };
  const std::size_t at = offset;
  long long status = 0, group = 0, ban_ms = 0, new_bans = 0;
  if (!integer(at, status) || !integer(at + 1, group) || !integer(at + 2, ban_ms) ||
      !integer(at + 3, new_bans)) {
    error = "unexpected reply to the decision script";
    return false;
  }
  std::size_t counters = 0;
  for (std::size_t g = first; g < last; ++g) {
    counters += req.groups[g].count;
  }
  if (at + 4 + 4 * counters > reply->elements) {
    error = "short reply to the decision script";
    return false;
  }
  offset = at + 4 + 4 * counters;
  if (status == 2) {
    if (group < 0 || static_cast<std::size_t>(group) >= last - first) {
      error = "unexpected banned group in the reply";
      return false;
    }
    req.all = false;
    req.banned_group = static_cast<int>(first + static_cast<std::size_t>(group));
    req.ban_left = static_cast<ratelimit::Nanos>(ban_ms) * kNanosPerMilli;
    return true;
  }
  std::size_t i = at + 4;
  for (std::size_t g = first; g < last; ++g) {
    const auto& grp = req.groups[g];
    for (std::size_t c = grp.first; c < grp.first + grp.count; ++c, i += 4) {
      long long allowed = 0, remaining = 0, reset = 0, retry = 0;
      if (!integer(i, allowed) || !integer(i + 1, remaining) || !integer(i + 2, reset) ||
          !integer(i + 3, retry)) {
        error = "short reply to the decision script";
        return false;
      }
      auto& o = req.checks[c].outcome;
      o.allowed = allowed != 0;
      o.limit = req.checks[c].params.count;
      o.remaining = remaining > 0 ? static_cast<std::uint64_t>(remaining) : 0;
      o.reset_after = std::max<long long>(0, reset) * kNanosPerMicro;
      o.retry_after = std::max<long long>(0, retry) * kNanosPerMicro;
    }
  }
  if (status != 0) {
    req.all = false;
  }
  for (std::size_t g = first; g < last && g - first < 32; ++g) {
    if ((static_cast<unsigned long long>(new_bans) >> (g - first)) & 1u) {
      req.new_bans |= 1u << g;
    }
  }
  return true;
}

}  // namespace gatehouse::filters::rate_limit::store
