#pragma once
// Typed rate_limit configuration: the top-level block (defaults for every route, plus max_keys)
// and the blocks a route may carry. Parsed by config.cpp from the YAML the loader walks; runtime
// code only sees these structs.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "http/cidr.hpp"
#include "ratelimit/algorithm.hpp"
#include "ratelimit/rate.hpp"
#include "redis/url.hpp"

namespace gatehouse::config {
struct Config;
struct Route;
class Sections;
namespace detail {
class Value;
}
}  // namespace gatehouse::config

namespace gatehouse::filters::rate_limit {

using Millis = std::chrono::milliseconds;

// One part of a limiter key. `key: ip`, `key: header:X-API-Key`, `key: route`, `key: global`,
// `key: path:id` (a variable of the route's match.path template; issue 15, routes), or a list
// combining them (`[ip, route]`, `[ip, "path:id"]`).
struct KeyPart {
  enum class Kind : std::uint8_t { ip, header, route, global, path };
  Kind kind = Kind::ip;
  std::string header;        // Kind::header: the header name as written; Kind::path: the variable
  std::string text() const;  // "ip", "header:X-API-Key", "route", "global", "path:id"
  bool operator==(const KeyPart&) const = default;
};

struct Ban {
  std::uint32_t after = 0;  // rejections ...
  Millis within{0};         // ... within this window ...
  Millis duration{0};       // ... ban the key for this long (YAML key `for`)
  bool operator==(const Ban&) const = default;
};

struct Block {
  ratelimit::Algorithm algorithm = ratelimit::Algorithm::sliding_window;
  std::vector<KeyPart> key{KeyPart{}};    // default: per client IP
  std::vector<ratelimit::Rate> limits;    // stacked; every one must allow (may be empty only with
                                          // max_in_flight)
  std::uint64_t burst = 0;                // token_bucket / gcra only; 0 = each limit's count
  bool ietf_headers = true;               // RateLimit-Policy + RateLimit
  bool x_headers = true;                  // X-RateLimit-Limit/-Remaining/-Reset
  std::vector<std::string> exempt_paths;  // path prefixes never limited
  std::vector<http::Cidr> exempt_ips;     // client addresses never limited
  std::optional<Ban> ban;
  std::uint32_t max_in_flight = 0;  // concurrent requests per key; 0 = unlimited
  bool operator==(const Block&) const = default;
};

// What a decision does when the shared store (Redis) fails or its circuit breaker is open.
enum class OnStoreFailure : std::uint8_t {
  local,  // decide with the in-memory limiter of this instance (limits hold per instance)
  allow,  // admit
  deny,   // refuse with 503 rate_limit_store_unavailable
};
const char* on_store_failure_name(OnStoreFailure f);

// `store: redis://...` with `redis: {...}`.
struct RedisSettings {
  redis::Url url;
  Millis timeout{50};  // per call, connection set-up included; then the call counts as failed
  unsigned pool = 1;   // connections per worker (and per cluster node); calls are pipelined
  std::string key_prefix = "gatehouse:";
  bool cluster = false;           // Redis Cluster: slot map from CLUSTER SLOTS, MOVED/ASK
  unsigned breaker_failures = 3;  // consecutive failed calls that open the circuit breaker
  Millis breaker_cooldown{1000};  // open this long, then a background probe may close it
  bool operator==(const RedisSettings&) const = default;
};

inline constexpr unsigned kMaxRedisPool = 64;
inline constexpr std::size_t kMaxKeyPrefix = 64;

struct Settings {
  std::optional<Block> defaults;     // top-level `rate_limit:`; applies to routes without their own
  std::size_t max_keys = 1'000'000;  // tracked (limit, key) pairs across all routes
  // IPv6 clients are counted, banned and capped (limits.max_connections_per_ip) per network of
  // this many leading bits; IPv4 per address.
  unsigned ipv6_prefix = 64;
  // Whether routes without their own `rate_limit` are limited by `defaults`. False when the
  // top-level block sets neither limits nor max_in_flight: it then only supplies fields that route
  // blocks inherit. Meaningful only when `defaults` is set.
  bool applies = true;
  std::optional<RedisSettings> redis;  // `store: redis://...`; none: the in-memory store
  OnStoreFailure on_store_failure = OnStoreFailure::local;
  // issue 15, frictions: `redis` / `on_store_failure` given with the memory store are read (typos
  // still fail) and ignored; these notes say so (moved to config::Config::notes).
  std::vector<std::string> notes;
};

// Per route: inherit the defaults (shared counters), its own blocks (each inheriting unset fields
// from the defaults), or `rate_limit: off`.
struct RouteLimits {
  enum class Mode : std::uint8_t { inherit, own, off };
  Mode mode = Mode::inherit;
  std::vector<Block> blocks;  // Mode::own
};

inline constexpr std::size_t kMaxBlocksPerRoute = 8;
inline constexpr std::size_t kMaxKeysLimit = 100'000'000;
inline constexpr std::uint32_t kMaxInFlight = 1'000'000;
inline constexpr std::uint32_t kMaxBanAfter = 1'000'000;

// Readers for the section (config_section.cpp). Failures throw config::ConfigError
// ("FILE:LINE:COLUMN: rate_limit.ban.after: ...").
// The top-level `rate_limit` value; null or `off` means no defaults.
Settings read_settings(const config::detail::Value& v);
// A route's `rate_limit` value: absent (not called), null, `off`/`false`, a map or a list of maps.
// `variables`: the route's match.path variables, which `path:NAME` key parts must name.
RouteLimits read_route_limits(const config::detail::Value& v, const Settings& settings,
                              const std::vector<std::string>& variables = {});

// The loaded settings (config_section.cpp); a config without a `rate_limit` key has Settings{}.
const Settings& settings(const config::Config& config);
// A route's own `rate_limit`; Mode::inherit when it has none.
const RouteLimits& route_limits(const config::Route& route);

// Adds the `rate_limit` section (top level and per route) for filters/registry.cpp.
void register_config(config::Sections& sections);

}  // namespace gatehouse::filters::rate_limit
