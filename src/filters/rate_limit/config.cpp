#include "filters/rate_limit/config.hpp"

#include <algorithm>
#include <array>
#include <string_view>

#include "config/value_readers.hpp"
#include "config/yaml_reader.hpp"

namespace gatehouse::filters::rate_limit {
namespace {

using config::detail::Map;
using config::detail::quoted;
using config::detail::read_choice;
using config::detail::read_cidrs;
using config::detail::read_count;
using config::detail::read_duration;
using config::detail::read_integer;
using config::detail::read_path;
using config::detail::Value;
using config::detail::Zero;
using ratelimit::Algorithm;

// The keys of a route block; the top-level block adds max_keys.
const std::vector<std::string_view> kBlockKeys{"algorithm",  "key",     "limits",
                                               "burst",      "headers", "exempt_paths",
                                               "exempt_ips", "ban",     "max_in_flight"};

constexpr std::array<Algorithm, 4> kAlgorithms{Algorithm::sliding_window, Algorithm::fixed_window,
                                               Algorithm::token_bucket, Algorithm::gcra};

bool has_burst(Algorithm a) {
  return a == Algorithm::token_bucket || a == Algorithm::gcra;
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [&](char x, char y) { return lower(x) == lower(y); });
}

bool is_off(const std::string& text) {
  return text == "off" || text == "false" || text == "False" || text == "FALSE";
}

Algorithm read_algorithm(const Value& v) {
  std::vector<std::string_view> names;
  for (auto a : kAlgorithms) {
    names.push_back(ratelimit::algorithm_name(a));
  }
  std::string name = read_choice(v, names);
  auto it = std::find(names.begin(), names.end(), name);
  return kAlgorithms[static_cast<std::size_t>(it - names.begin())];
}

KeyPart read_key_part(const Value& v) {
  const std::string& text = v.text();
  constexpr std::string_view kHeader = "header:";
  if (text == "ip") {
    return KeyPart{KeyPart::Kind::ip, {}};
  }
  if (text == "route") {
    return KeyPart{KeyPart::Kind::route, {}};
  }
  if (text == "global") {
    return KeyPart{KeyPart::Kind::global, {}};
  }
  if (text.starts_with(kHeader)) {
    std::string name = text.substr(kHeader.size());
    if (!config::detail::is_token(name)) {
      v.fail("invalid header name " + quoted(name) + " in " + quoted(text) +
             " (expected a token such as X-API-Key)");
    }
    return KeyPart{KeyPart::Kind::header, name};
  }
  constexpr std::string_view kPath = "path:";
  if (text.starts_with(kPath)) {
    std::string name = text.substr(kPath.size());
    if (name.empty()) {
      v.fail("invalid key " + quoted(text) +
             " (expected path:NAME, NAME a variable of the route's "
             "match.path)");
    }
    return KeyPart{KeyPart::Kind::path, name};
  }
  v.fail("invalid key " + quoted(text) + " (expected ip, route, global, header:NAME or path:NAME)");
}

bool same_part(const KeyPart& a, const KeyPart& b) {
  if (a.kind == KeyPart::Kind::path) {
    return b.kind == a.kind && a.header == b.header;  // variable names are case-sensitive
  }
  return a.kind == b.kind && equals_ignoring_case(a.header, b.header);
}

std::vector<KeyPart> read_key(const Value& v) {
  if (v.node().IsScalar()) {
    return {read_key_part(v)};
  }
  std::vector<KeyPart> out;
  for (const auto& item : v.items()) {
    auto part = read_key_part(item);
    for (const auto& seen : out) {
      if (same_part(seen, part)) {
        item.fail("duplicate key part " + quoted(item.text()));
      }
    }
    out.push_back(std::move(part));
  }
  if (out.empty()) {
    v.fail("at least one key part is required (ip, route, global, header:NAME or path:NAME)");
  }
  if (out.size() > 1) {
    for (std::size_t i = 0; i < out.size(); ++i) {
      if (out[i].kind == KeyPart::Kind::global) {
        v.items()[i].fail("\"global\" cannot be combined with other key parts");
      }
    }
  }
  return out;
}

std::vector<ratelimit::Rate> read_limits(const Value& v) {
  auto parsed = ratelimit::parse_rates(v.text());
  if (!parsed.error.empty()) {
    v.fail(parsed.error);
  }
  const auto& rates = parsed.rates;
  if (rates.size() > ratelimit::kMaxRatesPerBlock) {
    v.fail("too many rates: " + std::to_string(rates.size()) + " (at most " +
           std::to_string(ratelimit::kMaxRatesPerBlock) + " per block)");
  }
  for (std::size_t i = 0; i < rates.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (rates[i].period_s == rates[j].period_s) {
        v.fail("rates " + quoted(rates[j].text()) + " and " + quoted(rates[i].text()) +
               " have the same period (keep one)");
      }
    }
  }
  return parsed.rates;
}

struct HeaderChoice {
  bool ietf = true;
  bool x = true;
};

HeaderChoice read_headers(const Value& v) {
  if (v.node().IsScalar()) {
    auto name = read_choice(v, {"ietf", "x-ratelimit", "none"});
    return HeaderChoice{name == "ietf", name == "x-ratelimit"};
  }
  HeaderChoice out{false, false};
  for (const auto& item : v.items()) {
    bool ietf = read_choice(item, {"ietf", "x-ratelimit"}) == "ietf";
    bool& flag = ietf ? out.ietf : out.x;
    if (flag) {
      item.fail("duplicate value " + quoted(item.text()));
    }
    flag = true;
  }
  return out;
}

std::vector<std::string> read_paths(const Value& v) {
  std::vector<std::string> out;
  for (const auto& item : v.items()) {
    out.push_back(read_path(item));
  }
  return out;
}

std::optional<Ban> read_ban(const Value& v) {
  if (v.is_null() || (v.node().IsScalar() && is_off(v.text()))) {
    return std::nullopt;
  }
  if (v.node().IsScalar()) {
    v.fail("invalid value " + quoted(v.text()) +
           " (expected off or a map such as {after: 20, within: 1m, for: 15m})");
  }
  Map m(v, {"after", "within", "for"});
  Ban out;
  out.after = static_cast<std::uint32_t>(read_integer(m.require("after"), 1, kMaxBanAfter));
  out.within = read_duration(m.require("within"), Zero::rejected);
  out.duration = read_duration(m.require("for"), Zero::rejected);
  return out;
}

// Fields present in `m` replace those of `base`.
Block read_block(const Map& m, Block base) {
  Block out = std::move(base);
  if (auto x = m.find("algorithm")) {
    out.algorithm = read_algorithm(*x);
  }
  if (auto x = m.find("key")) {
    out.key = read_key(*x);
  }
  if (auto x = m.find("limits")) {
    out.limits = read_limits(*x);
  }
  if (auto x = m.find("burst")) {
    out.burst = read_integer(*x, 1, ratelimit::kMaxCount);
  }
  if (auto x = m.find("headers")) {
    auto headers = read_headers(*x);
    out.ietf_headers = headers.ietf;
    out.x_headers = headers.x;
  }
  if (auto x = m.find("exempt_paths")) {
    out.exempt_paths = read_paths(*x);
  }
  if (auto x = m.find("exempt_ips")) {
    out.exempt_ips = read_cidrs(*x);
  }
  if (auto x = m.find("ban")) {
    out.ban = read_ban(*x);
  }
  if (auto x = m.find("max_in_flight")) {
    out.max_in_flight = static_cast<std::uint32_t>(read_count(*x, kMaxInFlight));
  }
  return out;
}

// Where a check that involves `key` and an inherited value should point: the key when this block
// sets it, else the block itself.
Value at(const Map& m, std::string_view key) {
  auto found = m.find(key);
  return found ? *found : m.self();
}

bool per_client(const Block& b) {
  return std::any_of(b.key.begin(), b.key.end(), [](const KeyPart& p) {
    return p.kind == KeyPart::Kind::ip || p.kind == KeyPart::Kind::header;
  });
}

// Checks that span fields, after inheritance.
void check_block(const Map& m, const Block& b) {
  if (b.burst != 0 && !has_burst(b.algorithm)) {
    std::string message = "burst applies only to token_bucket and gcra, not " +
                          std::string(ratelimit::algorithm_name(b.algorithm));
    if (m.find("burst")) {
      m.find("burst")->fail(message);
    }
    at(m, "algorithm")
        .fail(message + " (burst " + std::to_string(b.burst) + " is inherited from rate_limit)");
  }
  if (b.ban && !per_client(b)) {
    at(m, "ban").fail("ban needs a per-client key (ip or header:NAME), not " +
                      quoted(b.key.front().text()));
  }
}

// A route's block: the defaults without their limits and max_in_flight, then its own fields.
// `path:NAME` parts must name a variable of the route's match.path: a request of the route then
// always has a value for them.
void check_path_parts(const Map& m, const Block& b, const std::vector<std::string>& variables) {
  for (const auto& part : b.key) {
    if (part.kind != KeyPart::Kind::path ||
        std::find(variables.begin(), variables.end(), part.header) != variables.end()) {
      continue;
    }
    std::string have;
    for (const auto& name : variables) {
      have += (have.empty() ? "" : ", ") + name;
    }
    at(m, "key").fail(
        "key part " + quoted(part.text()) + ": the route's match.path has no " + "variable " +
        quoted(part.header) +
        (variables.empty() ? std::string(" (it has no variables)") : " (it has: " + have + ")"));
  }
}

Block read_route_block(const Value& v, const Settings& settings,
                       const std::vector<std::string>& variables) {
  if (!v.is_map()) {
    v.fail("expected a map, got " + std::string(v.kind()));
  }
  for (const auto& kv : v.node()) {
    for (std::string_view top : {"max_keys", "ipv6_prefix"}) {
      if (kv.first.IsScalar() && kv.first.Scalar() == top) {
        Value key(v.source(), kv.first, kv.first.Mark(), v.path() + "." + std::string(top));
        key.fail(std::string(top) + " is a top-level setting (rate_limit." + std::string(top) +
                 ")");
      }
    }
  }
  Map m(v, kBlockKeys);
  Block base = settings.defaults.value_or(Block{});
  base.limits.clear();
  base.max_in_flight = 0;
  Block out = read_block(m, std::move(base));
  // A global or per-route block has no client to ban: an inherited ban does not apply to it.
  if (!m.find("ban") && !per_client(out)) {
    out.ban.reset();
  }
  check_block(m, out);
  check_path_parts(m, out, variables);
  if (out.limits.empty() && out.max_in_flight == 0) {
    v.fail("nothing to limit: set limits or max_in_flight");
  }
  return out;
}

}  // namespace

std::string KeyPart::text() const {
  switch (kind) {
    case Kind::ip:
      return "ip";
    case Kind::header:
      return "header:" + header;
    case Kind::route:
      return "route";
    case Kind::global:
      return "global";
    case Kind::path:
      return "path:" + header;
  }
  return "?";
}

const char* on_store_failure_name(OnStoreFailure f) {
  switch (f) {
    case OnStoreFailure::local:
      return "local";
    case OnStoreFailure::allow:
      return "allow";
    case OnStoreFailure::deny:
      return "deny";
  }
  return "?";
}

namespace {

// store / redis / on_store_failure of the top-level block.
void read_store(const Map& m, Settings& out) {
  auto store = m.find("store");
  if (store && store->text() != "memory") {
    RedisSettings redis;
    std::string error;
    if (!redis::parse_url(store->text(), redis.url, error)) {
      store->fail(error);
    }
    out.redis = std::move(redis);
  }
  // With the memory store, `redis` and `on_store_failure` are read into these and dropped, so one
  // file serves `store: "${REDIS_URL:-memory}"` in development and production.
  RedisSettings ignored_redis;
  auto note = [&](const Value& x, const char* what) {
    out.notes.push_back(config::detail::located(
        x.source(), x.mark(), x.path(), std::string(what) + " ignored: the store is memory"));
  };
  if (auto x = m.find("redis")) {
    if (!out.redis) {
      note(*x, "redis settings");
    }
    Map r(*x, {"timeout", "pool", "key_prefix", "cluster", "breaker_failures", "breaker_cooldown"});
    auto& redis = out.redis ? *out.redis : ignored_redis;
    if (auto t = r.find("timeout")) {
      redis.timeout = read_duration(*t, Zero::rejected);
      if (redis.timeout > Millis(60'000)) {
        t->fail("at most 60s (a decision waits this long before falling back)");
      }
    }
    if (auto p = r.find("pool")) {
      redis.pool = static_cast<unsigned>(read_integer(*p, 1, kMaxRedisPool));
    }
    if (auto k = r.find("key_prefix")) {
      const auto& text = k->text();
      if (text.size() > kMaxKeyPrefix) {
        k->fail("at most " + std::to_string(kMaxKeyPrefix) + " characters");
      }
      if (text.find_first_of("{}") != std::string::npos) {
        k->fail("must not contain { or } (they delimit Redis Cluster hash tags)");
      }
      redis.key_prefix = text;
    }
    if (auto c = r.find("cluster")) {
      redis.cluster = config::detail::read_bool(*c);
    }
    if (auto f = r.find("breaker_failures")) {
      redis.breaker_failures = static_cast<unsigned>(read_integer(*f, 1, 1000));
    }
    if (auto c = r.find("breaker_cooldown")) {
      redis.breaker_cooldown = read_duration(*c, Zero::rejected);
    }
  }
  if (out.redis && out.redis->cluster && out.redis->url.db != 0) {
    store->fail("Redis Cluster has only database 0");
  }
  if (auto x = m.find("on_store_failure")) {
    auto choice = read_choice(*x, {"local", "allow", "deny"});
    if (!out.redis) {
      note(*x, "on_store_failure");
      return;
    }
    out.on_store_failure = choice == "local"   ? OnStoreFailure::local
                           : choice == "allow" ? OnStoreFailure::allow
                                               : OnStoreFailure::deny;
  }
}

}  // namespace

Settings read_settings(const Value& v) {
  Settings out;
  if (v.is_null() || (v.node().IsScalar() && is_off(v.text()))) {
    return out;
  }
  if (v.node().IsScalar()) {
    v.fail("invalid value " + quoted(v.text()) + " (expected off or a map)");
  }
  std::vector<std::string_view> keys = kBlockKeys;
  for (auto k : {"max_keys", "ipv6_prefix", "store", "redis", "on_store_failure"}) {
    keys.push_back(k);
  }
  Map m(v, keys);
  Block block = read_block(m, Block{});
  check_block(m, block);
  for (const auto& part : block.key) {
    if (part.kind == KeyPart::Kind::path) {
      // Routes inherit the top-level key; prefix routes have no variables to give it.
      at(m, "key").fail("key part " + quoted(part.text()) +
                        " is per route: set it in the rate_limit block of a route whose " +
                        "match.path has {" + part.header + "}");
    }
  }
  if (auto x = m.find("max_keys")) {
    out.max_keys = read_integer(*x, 1, kMaxKeysLimit);
  }
  if (auto x = m.find("ipv6_prefix")) {
    out.ipv6_prefix = static_cast<unsigned>(read_integer(*x, 1, 128));
  }
  read_store(m, out);
  out.applies = !block.limits.empty() || block.max_in_flight > 0;
  out.defaults = std::move(block);
  return out;
}

RouteLimits read_route_limits(const Value& v, const Settings& settings,
                              const std::vector<std::string>& variables) {
  RouteLimits out;
  if (v.is_null()) {
    return out;
  }
  if (v.node().IsScalar()) {
    if (!is_off(v.text())) {
      v.fail("invalid value " + quoted(v.text()) + " (expected off, a map or a list of maps)");
    }
    out.mode = RouteLimits::Mode::off;
    return out;
  }
  out.mode = RouteLimits::Mode::own;
  if (v.is_map()) {
    out.blocks.push_back(read_route_block(v, settings, variables));
    return out;
  }
  auto items = v.items();
  if (items.empty()) {
    v.fail("at least one block is required (use off to turn rate limiting off for this route)");
  }
  if (items.size() > kMaxBlocksPerRoute) {
    v.fail("too many blocks: " + std::to_string(items.size()) + " (at most " +
           std::to_string(kMaxBlocksPerRoute) + ")");
  }
  for (const auto& item : items) {
    out.blocks.push_back(read_route_block(item, settings, variables));
  }
  return out;
}

}  // namespace gatehouse::filters::rate_limit
