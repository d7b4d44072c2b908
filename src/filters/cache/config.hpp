#pragma once
// Typed `cache` configuration (issue 14): the top-level block (the process-wide store) and the
// block a route carries (routes[].cache: what is stored for how long). Read by config.cpp; runtime
// code only sees these structs. docs/configuration.md, "Response cache".
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace gatehouse::config {
struct Config;
struct Route;
class Sections;
namespace detail {
class Value;
}
}  // namespace gatehouse::config

namespace gatehouse::filters::cache {

using Millis = std::chrono::milliseconds;

// One part of a route's cache key. The canonical path is always part of the key; `path` in the
// list only says so explicitly.
struct KeyPart {
  enum class Kind : std::uint8_t { method, path, query, body, header };
  Kind kind = Kind::path;
  std::string header;        // Kind::header: the field name as written
  std::string text() const;  // "method", "path", "query", "body", "header:X-Model"
  bool operator==(const KeyPart&) const = default;
};

// routes[].cache
struct RouteCache {
  Millis ttl{0};                     // > 0: fresh this long (shortened or lengthened by the
                                     // upstream's max-age/s-maxage, never beyond ttl)
  Millis stale_while_revalidate{0};  // after ttl: served STALE at once, refreshed in background
  Millis stale_if_error{0};          // after ttl: served STALE when the upstream fails
  std::vector<KeyPart> key{
      {KeyPart::Kind::method, {}}, {KeyPart::Kind::path, {}}, {KeyPart::Kind::query, {}}};
  std::vector<unsigned> statuses{200, 203, 204, 301, 404};
  bool ignore_cache_control = false;  // the upstream's Cache-Control neither forbids nor shortens
  bool allow_client_bypass = false;   // a client's `Cache-Control: no-cache` revalidates
  std::size_t max_waiters = 100;      // requests waiting for one fill; more go upstream (BYPASS)
  bool operator==(const RouteCache&) const = default;

  bool keys_body() const;
  // Whether the key includes request header `name` (case-insensitive): Authorization may then be
  // cached.
  bool keys_header(std::string_view name) const;
};

// Top-level `cache`.
struct Settings {
  bool enabled = false;  // a top-level `cache:` block, or a route with `cache`
  std::size_t max_memory = 256 * 1024 * 1024;  // per process, LRU by bytes
  std::size_t max_object = 8 * 1024 * 1024;    // larger responses are relayed, not stored
  std::string header = "X-Cache";              // HIT | MISS | STALE | BYPASS; "" = none
  // --- invalidation (issue 14, cache-invalidation): `shared` and `shared_channel` are
  // filters/cache_bus/config.hpp's Settings (their own slot in Config::filters) ---
  bool operator==(const Settings&) const = default;
};

inline constexpr std::size_t kMinMaxMemory = 64 * 1024;
inline constexpr std::size_t kMaxWaitersLimit = 100'000;

// Readers (config.cpp). Failures throw config::ConfigError ("FILE:LINE:COLUMN: cache.ttl: ...").
Settings read_settings(const config::detail::Value& v);
// `route_methods`: the route's match.methods (a POST route must key on the body).
RouteCache read_route_cache(const config::detail::Value& v,
                            const std::vector<std::string>& route_methods);

// The loaded settings; Settings{} (disabled) without a cache anywhere.
const Settings& settings(const config::Config& config);
// A route's `cache` block; null when the route does not cache.
const RouteCache* route_cache(const config::Route& route);

// Adds the `cache` section (top level and per route) for filters/registry.cpp.
void register_config(config::Sections& sections);

}  // namespace gatehouse::filters::cache
