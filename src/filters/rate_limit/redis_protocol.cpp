#include "filters/rate_limit/redis_protocol.hpp"

#include <fmt/format.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include <charconv>

namespace gatehouse::filters::rate_limit::redis {
namespace {

// Time is in microseconds (Redis TIME's resolution). Every quantity is an integer below 2^53,
// where Lua's doubles are exact; idiv corrects the rare off-by-one of floor(a / b) near 2^53.
// State per key is three doubles (struct.pack, 24 bytes) and every key carries a TTL equal to the
// time after which its state is the same as no state, so Redis memory stays bounded.
constexpr std::string_view kScript = R"lua(-- gatehouse rate-limit decision
-- KEYS: per group: its counter keys, then (ARGV[2] == '1') its ban key and rejection-count key.
-- ARGV[1]: now in microseconds, or '' for the server clock (TIME)
-- ARGV[2]: '1' to look bans up and count rejections
-- ARGV[3]: the number of groups; then per group: counters, ban_after (0: no rule),
--          ban_within_ms, ban_for_ms, ban_reason; then per counter: algorithm, count, period_us,
--          burst
-- Reply: status (0 admitted and committed, 1 limited, nothing committed, 2 banned),
--        banned group (0-based), ban ms left, bit mask of groups whose ban this request started,
--        then per counter: allowed, remaining, reset_us, retry_us
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
local bans = ARGV[2] == '1'
local groups = {}
local checks = {}
local ai, ki = 4, 1
for g = 1, tonumber(ARGV[3]) do
  local grp = {n = tonumber(ARGV[ai]), after = tonumber(ARGV[ai + 1]),
               within = tonumber(ARGV[ai + 2]), dur = tonumber(ARGV[ai + 3]),
               reason = ARGV[ai + 4], rejected = false}
  ai = ai + 5
  for c = 1, grp.n do
    checks[#checks + 1] = {key = KEYS[ki], alg = tonumber(ARGV[ai]), L = tonumber(ARGV[ai + 1]),
                           P = tonumber(ARGV[ai + 2]), B = tonumber(ARGV[ai + 3]), g = g}
    ki = ki + 1
    ai = ai + 4
  end
  if bans then grp.ban = KEYS[ki]; grp.rej = KEYS[ki + 1]; ki = ki + 2 end
  groups[g] = grp
end

if bans then
  for g, grp in ipairs(groups) do
    local ms = redis.call('PTTL', grp.ban)
    if ms > 0 then return {2, g - 1, ms, 0} end
  end
end

local out = {0, -1, 0, 0}
local states = {}
local all = true
for i, c in ipairs(checks) do
  local a, b, s3
  local s = redis.call('GET', c.key)
  if s then a, b, s3 = struct.unpack('<ddd', s) end
  local ok, rem, reset, retry, na, nb, nc, ttl = algorithms[c.alg](c.L, c.P, c.B, a, b, s3)
  out[#out + 1] = ok
  out[#out + 1] = rem
  out[#out + 1] = reset
  out[#out + 1] = retry
  states[i] = {na, nb, nc, ttl}
  if ok == 0 then all = false; groups[c.g].rejected = true end
end

if all then
  for i, c in ipairs(checks) do
    local st = states[i]
    local ms = cdiv(pos(st[4]), 1000)
    if ms < 1 then ms = 1 end
    redis.call('SET', c.key, struct.pack('<ddd', st[1], st[2], st[3]), 'PX', ms)
  end
  return out
end
out[1] = 1
if bans then
  local bit = 1
  for g, grp in ipairs(groups) do
    if grp.after > 0 and grp.rejected then
      local n = redis.call('INCR', grp.rej)
      if n == 1 then redis.call('PEXPIRE', grp.rej, grp.within) end
      if n >= grp.after then
        redis.call('SET', grp.ban, grp.reason, 'PX', grp.dur)
        redis.call('DEL', grp.rej)
        out[4] = out[4] + bit
      end
    end
    bit = bit * 2
  end
end
return out
)lua";

void append_u64(std::string& out, std::uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, static_cast<std::size_t>(r.ptr - buf));
}

void add_number(Command& cmd, std::uint64_t v) {
  append_u64(cmd.arena, v);
  cmd.ends.push_back(cmd.arena.size());
}

void append_tagged(std::string& out, std::string_view prefix, std::string_view identity) {
  out += prefix;
  out += '{';
  out += identity;
  out += "}:";
}

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

void build_decide(const StoreRequest& req, std::size_t first, std::size_t last,
                  std::string_view prefix, bool with_body, std::int64_t now_us, Command& cmd) {
  cmd.clear();
  if (with_body) {
    cmd.add("EVAL");
    cmd.add(kScript);
  } else {
    cmd.add("EVALSHA");
    cmd.add(script_sha1());
  }
  std::size_t nkeys = 0;
  for (std::size_t g = first; g < last; ++g) {
    nkeys += req.groups[g].count + (req.check_bans ? 2 : 0);
  }
  add_number(cmd, nkeys);
  for (std::size_t g = first; g < last; ++g) {
    const auto& grp = req.groups[g];
    for (std::size_t c = grp.first; c < grp.first + grp.count; ++c) {
      append_tagged(cmd.arena, prefix, grp.identity);
      fmt::format_to(std::back_inserter(cmd.arena), "{:08x}", req.definitions[c]);
      cmd.ends.push_back(cmd.arena.size());
    }
    if (req.check_bans) {
      append_tagged(cmd.arena, prefix, grp.identity);
      cmd.add("ban");
      append_tagged(cmd.arena, prefix, grp.identity);
      cmd.add("rej");
    }
  }
  if (now_us >= 0) {
    add_number(cmd, static_cast<std::uint64_t>(now_us));
  } else {
    cmd.add("");
  }
  cmd.add(req.check_bans ? "1" : "0");
  add_number(cmd, last - first);
  for (std::size_t g = first; g < last; ++g) {
    const auto& grp = req.groups[g];
    add_number(cmd, grp.count);
    if (grp.ban != nullptr) {
      add_number(cmd, grp.ban->after);
      add_number(cmd, static_cast<std::uint64_t>(std::max<std::int64_t>(
                          1, (grp.ban->within + kNanosPerMilli - 1) / kNanosPerMilli)));
      add_number(cmd, static_cast<std::uint64_t>(std::max<std::int64_t>(
                          1, (grp.ban->duration + kNanosPerMilli - 1) / kNanosPerMilli)));
      cmd.add(grp.ban_reason);
    } else {
      cmd.add("0");
      cmd.add("0");
      cmd.add("0");
      cmd.add("");
    }
    for (std::size_t c = grp.first; c < grp.first + grp.count; ++c) {
      const auto& check = req.checks[c];
      add_number(cmd, static_cast<std::uint64_t>(check.algorithm));
      add_number(cmd, check.params.count);
      add_number(cmd, static_cast<std::uint64_t>(
                          std::max<std::int64_t>(1, check.params.period / kNanosPerMicro)));
      add_number(cmd, check.params.effective_burst());
    }
  }
}

bool parse_decide(const redisReply* reply, StoreRequest& req, std::size_t first, std::size_t last,
                  std::string& error) {
  if (reply == nullptr) {
    error = "no reply";
    return false;
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    error.assign(reply->str, reply->len);
    return false;
  }
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 4) {
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
  long long status = 0, group = 0, ban_ms = 0, new_bans = 0;
  if (!integer(0, status) || !integer(1, group) || !integer(2, ban_ms) || !integer(3, new_bans)) {
    error = "unexpected reply to the decision script";
    return false;
  }
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
  std::size_t i = 4;
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

std::uint16_t key_slot(std::string_view key) {
  if (auto open = key.find('{'); open != std::string_view::npos) {
    auto close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  std::uint16_t crc = 0;
  for (unsigned char byte : key) {
    crc ^= static_cast<std::uint16_t>(byte << 8);
    for (int i = 0; i < 8; ++i) {
      crc = (crc & 0x8000) != 0 ? static_cast<std::uint16_t>((crc << 1) ^ 0x1021)
                                : static_cast<std::uint16_t>(crc << 1);
    }
  }
  return crc & 16383;
}

}  // namespace gatehouse::filters::rate_limit::redis
