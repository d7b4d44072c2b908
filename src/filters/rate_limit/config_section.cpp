// The rate_limit section as config/ sees it: the top-level key read before the routes (their
// blocks inherit from it), each route's key, their `gatehouse check` form, and the configured
// paths canonicalised like requests' once `paths` is known.
#include <fmt/format.h>

#include "config/config.hpp"
#include "config/path_template.hpp"
#include "config/sections.hpp"
#include "config/yaml_reader.hpp"
#include "config/yaml_writer.hpp"
#include "filters/rate_limit/config.hpp"
#include "http/canonical_path.hpp"

namespace gatehouse::filters::rate_limit {
namespace {

std::string rates_text(const std::vector<ratelimit::Rate>& rates) {
  std::string out;
  for (const auto& rate : rates) {
    out += out.empty() ? "" : "; ";
    out += rate.text();
  }
  return out;
}

std::vector<std::string> cidrs(const std::vector<http::Cidr>& nets) {
  std::vector<std::string> out;
  for (const auto& net : nets) {
    out.push_back(net.to_string());
  }
  return out;
}

// Every field, so that a route block reloads the same whatever the defaults it inherits from.
void write_block(config::YamlWriter& w, const Block& b) {
  w.key("algorithm").str(ratelimit::algorithm_name(b.algorithm));
  if (b.key.size() == 1) {
    w.key("key").str(b.key.front().text());
  } else {
    std::vector<std::string> parts;
    for (const auto& part : b.key) {
      parts.push_back(part.text());
    }
    w.key("key").list(parts);
  }
  if (!b.limits.empty()) {
    w.key("limits").str(rates_text(b.limits));
  }
  if (b.burst != 0) {
    w.key("burst").number(b.burst);
  }
  std::vector<std::string> headers;
  if (b.ietf_headers) {
    headers.push_back("ietf");
  }
  if (b.x_headers) {
    headers.push_back("x-ratelimit");
  }
  w.key("headers").list(headers);
  w.key("exempt_paths").list(b.exempt_paths);
  w.key("exempt_ips").list(cidrs(b.exempt_ips));
  if (b.ban) {
    w.key("ban").begin_map();
    w.key("after").number(b.ban->after);
    w.key("within").duration(b.ban->within);
    w.key("for").duration(b.ban->duration);
    w.end_map();
  } else {
    w.key("ban").str("off");
  }
  w.key("max_in_flight").number(b.max_in_flight);
}

void read(const config::detail::Value* v, config::Config& config) {
  if (v != nullptr) {
    Settings s = read_settings(*v);
    for (auto& note : s.notes) {
      config.notes.push_back(std::move(note));
    }
    s.notes.clear();
    config.filters.set(std::move(s));
  }
}

void write(config::YamlWriter& w, const config::Config& config) {
  const Settings& s = settings(config);
  if (!s.defaults) {
    w.key("rate_limit").null();
    return;
  }
  w.key("rate_limit").begin_map();
  write_block(w, *s.defaults);
  w.key("max_keys").number(s.max_keys);
  w.key("ipv6_prefix").number(s.ipv6_prefix);
  if (s.redis) {
    const auto& r = *s.redis;
    w.key("store").str(r.url.redacted());  // the password never leaves the process
    w.key("redis").begin_map();
    w.key("timeout").duration(r.timeout);
    w.key("pool").number(r.pool);
    w.key("key_prefix").str(r.key_prefix);
    w.key("cluster").boolean(r.cluster);
    w.key("breaker_failures").number(r.breaker_failures);
    w.key("breaker_cooldown").duration(r.breaker_cooldown);
    w.end_map();
    w.key("on_store_failure").str(on_store_failure_name(s.on_store_failure));
  } else {
    w.key("store").str("memory");
  }
  w.end_map();
}

void read_route(const config::detail::Value& v, const config::Config& config,
                config::Route& route) {
  route.filters.set(
      read_route_limits(v, settings(config), config::path_variables(route.match.path)));
}

void write_route(config::YamlWriter& w, const config::Config&, const config::Route& route) {
  const RouteLimits& r = route_limits(route);
  if (r.mode == RouteLimits::Mode::inherit) {
    return;
  }
  if (r.mode == RouteLimits::Mode::off) {
    w.key("rate_limit").str("off");
    return;
  }
  w.key("rate_limit").begin_list();
  for (const auto& block : r.blocks) {
    w.begin_map();
    write_block(w, block);
    w.end_map();
  }
  w.end_list();
}

// exempt_paths were read canonical with slashes kept (read_path): the `paths` block may come
// after them. They get the requests' treatment here.
void merge_slashes(Block& b) {
  for (auto& path : b.exempt_paths) {
    auto canonical = http::canonical_path(path, true);
    if (canonical.changed) {
      path = std::move(canonical.path);
    }
  }
}

void finish(config::Config& config) {
  if (!config.paths.merge_slashes) {
    return;
  }
  for (auto& route : config.routes) {
    if (const auto* limits = route.filters.get<RouteLimits>()) {
      RouteLimits merged = *limits;
      for (auto& b : merged.blocks) {
        merge_slashes(b);
      }
      route.filters.set(std::move(merged));
    }
  }
  if (const auto* s = config.filters.get<Settings>(); s != nullptr && s->defaults) {
    Settings merged = *s;
    merge_slashes(*merged.defaults);
    config.filters.set(std::move(merged));
  }
}

}  // namespace

const Settings& settings(const config::Config& config) {
  static const Settings none;
  const auto* s = config.filters.get<Settings>();
  return s != nullptr ? *s : none;
}

const RouteLimits& route_limits(const config::Route& route) {
  static const RouteLimits inherit;
  const auto* r = route.filters.get<RouteLimits>();
  return r != nullptr ? *r : inherit;
}

// The store and its capacity are built once, at start-up, and shared by every generation's
// limiter; the per-IP connection slots are keyed with ipv6_prefix.
std::string restart_needed(const config::Config& running, const config::Config& next) {
  const Settings& a = settings(running);
  const Settings& b = settings(next);
  const char* key = nullptr;
  if (a.max_keys != b.max_keys) {
    key = "rate_limit.max_keys";
  } else if (a.ipv6_prefix != b.ipv6_prefix) {
    key = "rate_limit.ipv6_prefix";
  } else if (a.redis.has_value() != b.redis.has_value() ||
             (a.redis && a.redis->url.redacted() != b.redis->url.redacted())) {
    key = "rate_limit.store";
  } else if (a.redis && !(*a.redis == *b.redis)) {
    key = "rate_limit.redis";
  } else if (a.redis && a.on_store_failure != b.on_store_failure) {
    key = "rate_limit.on_store_failure";
  }
  return key == nullptr ? std::string() : config::restart_message(key);
}

void register_config(config::Sections& sections) {
  sections.add({.key = "rate_limit",
                .stage = config::Stage::before_routes,
                .read = read,
                .write = write,
                .read_route = read_route,
                .write_route = write_route,
                .finish = finish,
                .restart_needed = restart_needed});
}

}  // namespace gatehouse::filters::rate_limit
