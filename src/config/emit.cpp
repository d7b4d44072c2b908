// Config -> YAML for `gatehouse check`: every key, defaults included, in the units people write
// ("10s", "16KiB"). The output loads back into an equal Config.
#include <fmt/format.h>

#include "config/config.hpp"
#include "config/health_checks.hpp"
#include "config/sections.hpp"
#include "config/yaml_writer.hpp"

namespace gatehouse::config {
namespace {

std::vector<std::string> endpoints(const std::vector<Endpoint>& eps) {
  std::vector<std::string> out;
  for (const auto& ep : eps) {
    out.push_back(ep.to_string());
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

// --- balancing and backpressure (issue 12, i12-balance) ---
void write_balancing(YamlWriter& w, const Upstream& u) {
  const auto& b = u.balance;
  if (b.policy == BalancePolicy::hash) {
    w.key("balance").begin_map();
    w.key("hash").str(b.hash_on == HashOn::header ? "header" : "client_ip");
    if (b.hash_on == HashOn::header) {
      w.key("header").str(b.header);
    }
    w.end_map();
  } else {
    w.key("balance").str(b.policy == BalancePolicy::least_request ? "least_request"
                                                                  : "round_robin");
  }
  w.key("max_connections").number(u.max_connections);
  w.key("queue_timeout").duration(u.queue_timeout);
  w.key("max_queued").number(u.max_queued);
}

// --- retries (issue 12, i12-retry) ---
void write_upstream_retries(YamlWriter& w, const Upstream& u) {
  const auto& r = u.retry;
  w.key("retry").begin_map();
  w.key("attempts").number(r.attempts);
  w.key("backoff").begin_flow_map();
  w.key("base").duration(r.backoff_base);
  w.key("max").duration(r.backoff_max);
  w.key("jitter").str(r.jitter == Jitter::full ? "full" : "none");
  w.end_map();
  std::vector<std::string> on;
  for (auto [bit, name] :
       {std::pair{retry_connect_failure, "connect_failure"}, std::pair{retry_reset, "reset"},
        std::pair{retry_timeout, "timeout"}, std::pair{retry_invalid_json, "invalid_json"}}) {
    if ((r.on & bit) != 0) {
      on.emplace_back(name);
    }
  }
  for (unsigned s : r.on_status) {
    on.push_back(std::to_string(s));
  }
  w.key("on").list(on);
  w.key("methods").list(r.methods);
  w.key("budget").str(std::to_string(r.budget_percent) + "%");
  w.key("budget_floor").number(r.budget_floor);
  w.key("buffer_body").size(r.buffer_body);
  w.end_map();
  w.key("per_try_timeout").duration(u.per_try_timeout);
}

// issue 12, target health: each block, or null when it is off.
void write_target_health(YamlWriter& w, const Upstream& u) {
  if (u.health_check) {
    const auto& h = *u.health_check;
    std::vector<std::string> expect;
    for (const auto& r : h.expect) {
      expect.push_back(r.lo == r.hi ? std::to_string(r.lo) : std::to_string(r.lo / 100) + "xx");
    }
    w.key("health_check").begin_map();
    w.key("path").str(h.path);
    w.key("expect").list(expect);
    w.key("interval").duration(h.interval);
    w.key("timeout").duration(h.timeout);
    w.key("healthy_after").number(h.healthy_after);
    w.key("unhealthy_after").number(h.unhealthy_after);
    if (!h.host.empty()) {
      w.key("host").str(h.host);
    }
    w.end_map();
  } else {
    w.key("health_check").null();
  }
  if (u.outlier) {
    const auto& o = *u.outlier;
    w.key("outlier").begin_map();
    w.key("consecutive_5xx").number(o.consecutive_5xx);
    w.key("consecutive_connect_failures").number(o.consecutive_connect_failures);
    w.key("eject_for").duration(o.eject_for);
    w.key("max_ejected").str(std::to_string(o.max_ejected_percent) + "%");
    w.end_map();
  } else {
    w.key("outlier").null();
  }
  if (u.circuit_breaker) {
    const auto& b = *u.circuit_breaker;
    w.key("circuit_breaker").begin_map();
    w.key("failure_ratio").str(fmt::format("{}", b.failure_ratio));
    w.key("min_requests").number(b.min_requests);
    w.key("window").duration(b.window);
    w.key("open_for").duration(b.open_for);
    w.key("half_open_probes").number(b.half_open_probes);
    w.end_map();
  } else {
    w.key("circuit_breaker").null();
  }
}

// --- DNS re-resolution (issue 12, i12-resolve) ---
void write_resolve(YamlWriter& w, const Upstream& u) {
  w.key("resolve_interval").duration(u.resolve_interval);
  w.key("max_addresses").number(u.max_addresses);
}

void write_upstreams(YamlWriter& w, const std::vector<Upstream>& upstreams) {
  w.key("upstreams").begin_map();
  for (const auto& u : upstreams) {
    w.key(u.name.c_str()).begin_map();
    w.key("targets").list(endpoints(u.targets));
    w.key("connect_timeout").duration(u.connect_timeout);
    w.key("timeout").duration(u.timeout);
    w.key("max_idle_per_target").number(u.max_idle_per_target);
    w.key("keepalive_timeout").duration(u.keepalive_timeout);
    write_balancing(w, u);
    write_upstream_retries(w, u);
    write_target_health(w, u);
    write_resolve(w, u);
    w.end_map();
  }
  w.end_map();
}

void write_access(YamlWriter& w, const AccessRules& a) {
  w.key("access").begin_map();
  w.key("allow").list(cidrs(a.allow));
  w.key("deny").list(cidrs(a.deny));
  w.end_map();
}

void write_sections(YamlWriter& w, const Config& c, const Sections& sections, Stage stage) {
  for (const auto& s : sections.all()) {
    if (s.stage == stage) {
      s.write(w, c);
    }
  }
}

void write_routes(YamlWriter& w, const Config& c, const Sections& sections) {
  w.key("routes").begin_list();
  for (const auto& r : c.routes) {
    w.begin_map();
    w.key("name").str(r.name);
    w.key("match").begin_map();
    if (r.match.path.empty()) {
      w.key("path_prefix").str(r.match.path_prefix);
    } else {
      w.key("path").str(r.match.path);  // issue 15 (routes): replaces path_prefix
    }
    w.key("methods").list(r.match.methods);
    w.key("host").str(r.match.host);
    w.end_map();
    w.key("upstream").str(r.upstream);
    w.key("timeout").duration(r.timeout);  // retries (issue 12, i12-retry)
    w.key("buffer_request").boolean(r.buffer_request);
    if (!r.invalidates.empty()) {
      w.key("invalidates").list(r.invalidates);  // cache invalidation (issue 14)
    }
    if (r.mode != Route::Mode::sync) {  // async jobs (issue 13)
      w.key("mode").str(r.mode == Route::Mode::async ? "async" : "hybrid");
      w.key("hybrid_wait").duration(r.hybrid_wait);
    }
    for (const auto& s : sections.all()) {
      if (s.write_route != nullptr) {
        s.write_route(w, c, r);
      }
    }
    if (!r.access.empty()) {
      write_access(w, r.access);
    }
    w.end_map();
  }
  w.end_list();
}

}  // namespace

std::string to_yaml(const Config& c, const Sections& sections) {
  YamlWriter w;
  w.key("environment")
      .str(c.environment == Environment::development ? "development" : "production");
  w.key("listen").str(c.listen.to_string());
  if (c.listen_tls) {
    w.key("listen_tls").begin_map();
    w.key("address").str(c.listen_tls->address.to_string());
    w.key("cert").str(c.listen_tls->cert);
    w.key("key").str(c.listen_tls->key);
    w.key("redirect_http").boolean(c.listen_tls->redirect_http);
    w.end_map();
  } else {
    w.key("listen_tls").null();
  }
  w.key("admin_listen").str(c.admin_listen ? c.admin_listen->to_string() : "off");
  w.key("workers").str(c.workers == 0 ? "auto" : std::to_string(c.workers));
  w.key("trusted_proxies").list(cidrs(c.trusted_proxies));
  w.key("forwarded_headers")
      .str(c.forwarded_headers == http::ForwardedHeaders::forwarded ? "forwarded" : "x-forwarded");
  w.key("proxy_protocol").boolean(c.proxy_protocol);
  write_access(w, c.access);

  w.key("limits").begin_map();
  w.key("max_header_bytes").size(c.limits.max_header_bytes);
  w.key("max_body_bytes").size(c.limits.max_body_bytes);
  w.key("max_uri_bytes").size(c.limits.max_uri_bytes);
  w.key("header_timeout").duration(c.limits.header_timeout);
  w.key("idle_timeout").duration(c.limits.idle_timeout);
  w.key("min_body_rate").size(c.limits.min_body_rate);
  w.key("max_connections").number(c.limits.max_connections);
  w.key("max_connections_per_ip").number(c.limits.max_connections_per_ip);
  w.end_map();

  w.key("drain_delay").duration(c.drain_delay);
  w.key("drain_timeout").duration(c.drain_timeout);
  write_upstreams(w, c.upstreams);
  write_sections(w, c, sections, Stage::before_routes);
  write_routes(w, c, sections);

  w.key("log").begin_map();
  w.key("format").str(c.log.format == LogFormat::json ? "json" : "text");
  w.key("access").str(c.log.access);
  w.key("error").str(c.log.error);
  w.key("security").str(c.log.security);
  w.key("level").str(c.log.level);
  w.key("hash_client_ip").boolean(c.log.hash_client_ip);
  {  // issue 15, sentry-seclog
    std::vector<std::string> events;
    for (unsigned i = 0; i < kSecurityEventCount; ++i) {
      if ((c.log.security_events & (1U << i)) != 0) {
        events.emplace_back(security_event_name(static_cast<SecurityEvent>(i)));
      }
    }
    w.key("security_events").list(events);
    w.key("security_sample").begin_map();
    w.key("per_key_per_minute").number(c.log.security_per_key_per_minute);
    w.end_map();
  }
  w.end_map();

  w.key("health").begin_map();
  w.key("live_path").str(c.health.live_path);
  w.key("ready_path").str(c.health.ready_path);
  w.key("summary_path").str(c.health.summary_path);
  w.key("cache_ttl").duration(c.health.cache_ttl);
  w.key("check_interval").duration(c.health.check_interval);
  write_health_checks(w, c.health.checks);
  w.end_map();

  w.key("paths").begin_map();
  w.key("merge_slashes").boolean(c.paths.merge_slashes);
  w.key("forward").str(c.paths.forward == PathForward::canonical ? "canonical" : "original");
  w.end_map();

  w.key("request_id").begin_map();
  w.key("header").str(c.request_id.header);
  w.key("trust_incoming").boolean(c.request_id.trust_incoming);
  w.end_map();

  write_sections(w, c, sections, Stage::last);
  return w.finish();
}

}  // namespace gatehouse::config
