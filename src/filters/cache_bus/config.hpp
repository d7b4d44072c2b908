#pragma once
// The invalidation bus's keys inside the `cache` section (issue 14): `shared` (a redis:// URL, the
// rate-limit store's syntax) and `shared_channel`. The cache section's reader and writer call
// read()/write() below; the settings live in Config::filters under their own type.
#include <optional>
#include <string>
#include <string_view>

#include "redis/url.hpp"

namespace gatehouse::config {
struct Config;
class YamlWriter;
namespace detail {
class Value;
}
}  // namespace gatehouse::config

namespace gatehouse::filters::cache_bus {

inline constexpr std::size_t kMaxChannel = 128;

struct Settings {
  // cache.shared: invalidations reach every instance subscribed to `channel` on this Redis;
  // nullopt: they stay on this instance.
  std::optional<redis::Url> url;
  // cache.shared_channel; default "gatehouse:cache:invalidate:DB" (DB from the URL: Redis
  // pub/sub channels are not scoped to a database, so deployments sharing a server but not a
  // database do not purge each other's caches).
  std::string channel;
  bool operator==(const Settings&) const = default;
};

std::string default_channel(unsigned db);

// Reads `shared` and `shared_channel` of the cache section (whose reader already refused unknown
// keys) into config.filters.
void read(const config::detail::Value& cache, config::Config& config);
// Writes them (the password redacted), inside the cache section's map.
void write(config::YamlWriter& out, const config::Config& config);

// The settings (defaults, no bus, when never read).
const Settings& settings(const config::Config& config);

}  // namespace gatehouse::filters::cache_bus
