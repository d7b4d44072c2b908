// Config -> YAML for `gatehouse check`: every key, defaults included, in the units people write
// ("10s", "16KiB"). The output loads back into an equal Config.
#include <yaml-cpp/yaml.h>

#include "config/config.hpp"
#include "config/units.hpp"
#include "config/value_readers.hpp"

namespace gatehouse::config {
namespace {

// The loader interpolates ${...} before parsing; a literal "${" must come back as "$${".
std::string escaped(const std::string& text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text.compare(i, 2, "${") == 0) {
      out += '$';
    }
    out += text[i];
  }
  return out;
}

class Writer {
 public:
  Writer() {
    out_.SetNullFormat(YAML::LowerNull);
    out_ << YAML::BeginMap;
  }

  Writer& key(const char* name) {
    out_ << YAML::Key << name << YAML::Value;
    return *this;
  }
  Writer& str(const std::string& value) {
    out_ << escaped(value);
    return *this;
  }
  Writer& boolean(bool value) {
    out_ << (value ? "true" : "false");
    return *this;
  }
  Writer& duration(Millis d) { return str(detail::format_duration(d)); }
  Writer& size(std::size_t bytes) { return str(detail::format_size(bytes)); }
  Writer& number(std::size_t n) { return str(std::to_string(n)); }
  Writer& null() {
    out_ << YAML::Null;
    return *this;
  }
  Writer& list(const std::vector<std::string>& items) {
    out_ << YAML::Flow << YAML::BeginSeq;
    for (const auto& item : items) {
      out_ << escaped(item);
    }
    out_ << YAML::EndSeq;
    return *this;
  }
  Writer& begin_map() {
    out_ << YAML::BeginMap;
    return *this;
  }
  Writer& begin_flow_map() {
    out_ << YAML::Flow << YAML::BeginMap;
    return *this;
  }
  Writer& end_map() {
    out_ << YAML::EndMap;
    return *this;
  }
  Writer& begin_list() {
    out_ << YAML::BeginSeq;
    return *this;
  }
  Writer& end_list() {
    out_ << YAML::EndSeq;
    return *this;
  }

  std::string finish() {
    out_ << YAML::EndMap;
    return std::string(out_.c_str()) + "\n";
  }

 private:
  YAML::Emitter out_;
};

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

void write_upstreams(Writer& w, const std::vector<Upstream>& upstreams) {
  w.key("upstreams").begin_map();
  for (const auto& u : upstreams) {
    w.key(u.name.c_str()).begin_map();
    w.key("targets").list(endpoints(u.targets));
    w.key("connect_timeout").duration(u.connect_timeout);
    w.key("timeout").duration(u.timeout);
    w.key("max_idle_per_target").number(u.max_idle_per_target);
    w.key("keepalive_timeout").duration(u.keepalive_timeout);
    w.end_map();
  }
  w.end_map();
}

std::string rates_text(const std::vector<ratelimit::Rate>& rates) {
  std::string out;
  for (const auto& rate : rates) {
    out += out.empty() ? "" : "; ";
    out += rate.text();
  }
  return out;
}

// Every field, so that a route block reloads the same whatever the defaults it inherits from.
void write_rate_limit_block(Writer& w, const filters::rate_limit::Block& b) {
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

void write_rate_limit(Writer& w, const filters::rate_limit::Settings& s) {
  if (!s.defaults) {
    w.key("rate_limit").null();
    return;
  }
  w.key("rate_limit").begin_map();
  write_rate_limit_block(w, *s.defaults);
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
    w.key("on_store_failure").str(filters::rate_limit::on_store_failure_name(s.on_store_failure));
  } else {
    w.key("store").str("memory");
  }
  w.end_map();
}

void write_route_limits(Writer& w, const filters::rate_limit::RouteLimits& r) {
  using Mode = filters::rate_limit::RouteLimits::Mode;
  if (r.mode == Mode::inherit) {
    return;
  }
  if (r.mode == Mode::off) {
    w.key("rate_limit").str("off");
    return;
  }
  w.key("rate_limit").begin_list();
  for (const auto& block : r.blocks) {
    w.begin_map();
    write_rate_limit_block(w, block);
    w.end_map();
  }
  w.end_list();
}

void write_access(Writer& w, const AccessRules& a) {
  w.key("access").begin_map();
  w.key("allow").list(cidrs(a.allow));
  w.key("deny").list(cidrs(a.deny));
  w.end_map();
}

void write_routes(Writer& w, const std::vector<Route>& routes) {
  w.key("routes").begin_list();
  for (const auto& r : routes) {
    w.begin_map();
    w.key("name").str(r.name);
    w.key("match").begin_map();
    w.key("path_prefix").str(r.match.path_prefix);
    w.key("methods").list(r.match.methods);
    w.key("host").str(r.match.host);
    w.end_map();
    w.key("upstream").str(r.upstream);
    write_route_limits(w, r.rate_limit);
    if (!r.access.empty()) {
      write_access(w, r.access);
    }
    w.end_map();
  }
  w.end_list();
}

void write_security_headers(Writer& w, const filters::security_headers::Settings& s) {
  w.key("security_headers").begin_map();
  w.key("preset").str(std::string(filters::security_headers::preset_name(s.preset)));
  w.key("content_security_policy").str(s.content_security_policy);
  if (s.hsts) {
    w.key("hsts").begin_map();
    w.key("max_age").str(detail::format_seconds(s.hsts->max_age));
    w.key("include_subdomains").boolean(s.hsts->include_subdomains);
    w.key("preload").boolean(s.hsts->preload);
    w.end_map();
  } else {
    w.key("hsts").str("off");
  }
  w.key("overrides").begin_flow_map();
  for (const auto& o : s.overrides) {
    w.key(o.name.c_str()).str(o.value);
  }
  w.end_map();
  w.key("force").boolean(s.force);
  w.end_map();
}

void write_cors(Writer& w, const filters::cors::Settings& s) {
  if (!s.enabled) {
    w.key("cors").str("off");
    return;
  }
  std::vector<std::string> origins;
  for (const auto& o : s.origins) {
    origins.push_back(o.text);
  }
  w.key("cors").begin_map();
  w.key("origins").list(origins);
  w.key("methods").list(s.methods);
  w.key("headers").list(s.headers);
  w.key("expose_headers").list(s.expose_headers);
  w.key("credentials").boolean(s.credentials);
  w.key("max_age").str(detail::format_seconds(s.max_age));
  w.end_map();
}

}  // namespace

std::string to_yaml(const Config& c) {
  Writer w;
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
  write_rate_limit(w, c.rate_limit);
  write_routes(w, c.routes);

  w.key("log").begin_map();
  w.key("format").str(c.log.format == LogFormat::json ? "json" : "text");
  w.key("access").str(c.log.access);
  w.key("error").str(c.log.error);
  w.key("security").str(c.log.security);
  w.key("level").str(c.log.level);
  w.key("hash_client_ip").boolean(c.log.hash_client_ip);
  w.end_map();

  w.key("health").begin_map();
  w.key("live_path").str(c.health.live_path);
  w.key("ready_path").str(c.health.ready_path);
  w.key("summary_path").str(c.health.summary_path);
  w.key("cache_ttl").duration(c.health.cache_ttl);
  w.key("check_interval").duration(c.health.check_interval);
  w.end_map();

  w.key("paths").begin_map();
  w.key("merge_slashes").boolean(c.paths.merge_slashes);
  w.key("forward").str(c.paths.forward == PathForward::canonical ? "canonical" : "original");
  w.end_map();

  w.key("request_id").begin_map();
  w.key("header").str(c.request_id.header);
  w.key("trust_incoming").boolean(c.request_id.trust_incoming);
  w.end_map();

  write_security_headers(w, c.security_headers);
  write_cors(w, c.cors);
  return w.finish();
}

}  // namespace gatehouse::config
