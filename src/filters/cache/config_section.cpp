// The cache section as config/ sees it: the top-level `cache` (the store) and each route's.
#include "config/config.hpp"
#include "config/sections.hpp"
#include "config/yaml_reader.hpp"
#include "config/yaml_writer.hpp"
#include "filters/cache/config.hpp"
#include "filters/cache_bus/config.hpp"

namespace gatehouse::filters::cache {
namespace {

void read(const config::detail::Value* v, config::Config& config) {
  if (v != nullptr && !v->is_null()) {
    config.filters.set(read_settings(*v));
    cache_bus::read(*v, config);  // issue 14: shared, shared_channel
  }
}

void write(config::YamlWriter& w, const config::Config& config) {
  const Settings& s = settings(config);
  if (!s.enabled) {
    w.key("cache").null();
    return;
  }
  w.key("cache").begin_map();
  w.key("max_memory").size(s.max_memory);
  w.key("max_object").size(s.max_object);
  w.key("header").str(s.header);
  cache_bus::write(w, config);  // issue 14: shared, shared_channel
  w.end_map();
}

void read_route(const config::detail::Value& v, const config::Config&, config::Route& route) {
  if (v.is_null()) {
    return;
  }
  route.filters.set(read_route_cache(v, route.match.methods));
}

void write_route(config::YamlWriter& w, const config::Config&, const config::Route& route) {
  const RouteCache* c = route_cache(route);
  if (c == nullptr) {
    return;
  }
  w.key("cache").begin_map();
  w.key("ttl").duration(c->ttl);
  w.key("stale_while_revalidate").duration(c->stale_while_revalidate);
  w.key("stale_if_error").duration(c->stale_if_error);
  std::vector<std::string> parts;
  for (const auto& p : c->key) {
    parts.push_back(p.text());
  }
  w.key("key").list(parts);
  std::vector<std::string> statuses;
  for (auto s : c->statuses) {
    statuses.push_back(std::to_string(s));
  }
  w.key("statuses").list(statuses);
  w.key("ignore_cache_control").boolean(c->ignore_cache_control);
  w.key("allow_client_bypass").boolean(c->allow_client_bypass);
  w.key("max_waiters").number(c->max_waiters);
  w.end_map();
}

// A route's cache needs the store: routes[].cache alone turns it on with the defaults.
void finish(config::Config& config) {
  if (settings(config).enabled) {
    return;
  }
  for (const auto& route : config.routes) {
    if (route_cache(route) != nullptr) {
      Settings s;
      s.enabled = true;
      config.filters.set(std::move(s));
      return;
    }
  }
}

}  // namespace

const Settings& settings(const config::Config& config) {
  static const Settings none;
  const auto* s = config.filters.get<Settings>();
  return s != nullptr ? *s : none;
}

const RouteCache* route_cache(const config::Route& route) {
  return route.filters.get<RouteCache>();
}

// The store (its size) and the invalidation bus are built once, at start-up, and shared by every
// generation; a route's own `cache` block (ttl, key, ...) reloads. The store exists only when the
// file at start-up cached something, so turning the cache on needs a restart too.
std::string restart_needed(const config::Config& running, const config::Config& next) {
  const Settings& a = settings(running);
  const Settings& b = settings(next);
  const char* key = nullptr;
  if (a.enabled != b.enabled) {
    key = a.enabled ? "cache (no route caches any more)" : "cache (a route caches now)";
  } else if (a.max_memory != b.max_memory) {
    key = "cache.max_memory";
  } else if (a.max_object != b.max_object) {
    key = "cache.max_object";
  } else if (a.header != b.header) {
    key = "cache.header";
  } else if (!(cache_bus::settings(running) == cache_bus::settings(next))) {
    key = "cache.shared";
  }
  return key == nullptr ? std::string() : config::restart_message(key);
}

void register_config(config::Sections& sections) {
  sections.add({.key = "cache",
                .stage = config::Stage::last,
                .read = read,
                .write = write,
                .read_route = read_route,
                .write_route = write_route,
                .finish = finish,
                .restart_needed = restart_needed});
}

}  // namespace gatehouse::filters::cache
