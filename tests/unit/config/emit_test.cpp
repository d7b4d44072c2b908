// to_yaml: every key with its effective value, loadable back into an equal Config.
#include <gtest/gtest.h>

#include <string>

#include "config/config.hpp"
#include "config_test_util.hpp"
#include "filters/cors/config.hpp"
#include "filters/registry.hpp"
#include "filters/security_headers/config.hpp"

namespace gatehouse::config {
namespace {

using namespace std::chrono_literals;
using testing::kBase;

void expect_same_endpoints(const std::vector<Endpoint>& a, const std::vector<Endpoint>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].host, b[i].host);
    EXPECT_EQ(a[i].port, b[i].port);
  }
}

// Field by field, so a key to_yaml forgets cannot hide behind comparing two to_yaml outputs.
void expect_same(const Config& a, const Config& b) {
  EXPECT_EQ(a.environment, b.environment);
  expect_same_endpoints({a.listen}, {b.listen});
  ASSERT_EQ(a.admin_listen.has_value(), b.admin_listen.has_value());
  if (a.admin_listen) {
    expect_same_endpoints({*a.admin_listen}, {*b.admin_listen});
  }
  EXPECT_EQ(a.workers, b.workers);
  EXPECT_EQ(a.forwarded_headers, b.forwarded_headers);
  EXPECT_EQ(a.proxy_protocol, b.proxy_protocol);
  ASSERT_EQ(a.trusted_proxies.size(), b.trusted_proxies.size());
  for (std::size_t i = 0; i < a.trusted_proxies.size(); ++i) {
    EXPECT_EQ(a.trusted_proxies[i].to_string(), b.trusted_proxies[i].to_string());
  }
  EXPECT_EQ(a.limits.max_header_bytes, b.limits.max_header_bytes);
  EXPECT_EQ(a.limits.max_body_bytes, b.limits.max_body_bytes);
  EXPECT_EQ(a.limits.max_uri_bytes, b.limits.max_uri_bytes);
  EXPECT_EQ(a.limits.header_timeout, b.limits.header_timeout);
  EXPECT_EQ(a.limits.idle_timeout, b.limits.idle_timeout);
  EXPECT_EQ(a.drain_delay, b.drain_delay);
  EXPECT_EQ(a.drain_timeout, b.drain_timeout);
  ASSERT_EQ(a.upstreams.size(), b.upstreams.size());
  for (std::size_t i = 0; i < a.upstreams.size(); ++i) {
    const auto& x = a.upstreams[i];
    const auto& y = b.upstreams[i];
    EXPECT_EQ(x.name, y.name);
    expect_same_endpoints(x.targets, y.targets);
    EXPECT_EQ(x.connect_timeout, y.connect_timeout);
    EXPECT_EQ(x.timeout, y.timeout);
    EXPECT_EQ(x.max_idle_per_target, y.max_idle_per_target);
    EXPECT_EQ(x.keepalive_timeout, y.keepalive_timeout);
    EXPECT_EQ(x.balance, y.balance);
    EXPECT_EQ(x.max_connections, y.max_connections);
    EXPECT_EQ(x.queue_timeout, y.queue_timeout);
    EXPECT_EQ(x.max_queued, y.max_queued);
    EXPECT_EQ(x.resolve_interval, y.resolve_interval);  // i12-resolve
    EXPECT_EQ(x.max_addresses, y.max_addresses);
    EXPECT_EQ(x.retry.attempts, y.retry.attempts);
    EXPECT_EQ(x.retry.backoff_base, y.retry.backoff_base);
    EXPECT_EQ(x.retry.backoff_max, y.retry.backoff_max);
    EXPECT_EQ(x.retry.jitter, y.retry.jitter);
    EXPECT_EQ(x.retry.on, y.retry.on);
    EXPECT_EQ(x.retry.on_status, y.retry.on_status);
    EXPECT_EQ(x.retry.methods, y.retry.methods);
    EXPECT_EQ(x.retry.budget_percent, y.retry.budget_percent);
    EXPECT_EQ(x.retry.budget_floor, y.retry.budget_floor);
    EXPECT_EQ(x.retry.buffer_body, y.retry.buffer_body);
    EXPECT_EQ(x.per_try_timeout, y.per_try_timeout);
    EXPECT_EQ(x.health_check, y.health_check);
    EXPECT_EQ(x.outlier, y.outlier);
    EXPECT_EQ(x.circuit_breaker, y.circuit_breaker);
  }
  ASSERT_EQ(a.routes.size(), b.routes.size());
  for (std::size_t i = 0; i < a.routes.size(); ++i) {
    const auto& x = a.routes[i];
    const auto& y = b.routes[i];
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.match.path_prefix, y.match.path_prefix);
    EXPECT_EQ(x.match.methods, y.match.methods);
    EXPECT_EQ(x.match.host, y.match.host);
    EXPECT_EQ(x.upstream, y.upstream);
    EXPECT_EQ(x.upstream_index, y.upstream_index);
    EXPECT_EQ(x.timeout, y.timeout);
    EXPECT_EQ(x.buffer_request, y.buffer_request);
  }
  EXPECT_EQ(a.log.format, b.log.format);
  EXPECT_EQ(a.log.access, b.log.access);
  EXPECT_EQ(a.log.error, b.log.error);
  EXPECT_EQ(a.log.security, b.log.security);
  EXPECT_EQ(a.log.level, b.log.level);
  EXPECT_EQ(a.log.hash_client_ip, b.log.hash_client_ip);
  EXPECT_EQ(a.log.security_events, b.log.security_events);
  EXPECT_EQ(a.log.security_per_key_per_minute, b.log.security_per_key_per_minute);
  EXPECT_EQ(a.health.live_path, b.health.live_path);
  EXPECT_EQ(a.health.ready_path, b.health.ready_path);
  EXPECT_EQ(a.health.summary_path, b.health.summary_path);
  EXPECT_EQ(a.health.cache_ttl, b.health.cache_ttl);
  EXPECT_EQ(a.health.check_interval, b.health.check_interval);
  EXPECT_EQ(a.paths.merge_slashes, b.paths.merge_slashes);
  EXPECT_EQ(a.paths.forward, b.paths.forward);
  EXPECT_EQ(a.request_id.header, b.request_id.header);
  EXPECT_EQ(a.request_id.trust_incoming, b.request_id.trust_incoming);
  testing::expect_same_rate_limits(a, b);
  EXPECT_TRUE(filters::security_headers::settings(a) == filters::security_headers::settings(b));
  EXPECT_TRUE(filters::cors::settings(a) == filters::cors::settings(b));
}

void expect_round_trip(const Config& c) {
  std::string yaml = to_yaml(c, filters::config_sections());
  SCOPED_TRACE(yaml);
  Config again;
  try {
    again = load_config_string(yaml, "emitted.yaml", filters::config_sections());
  } catch (const ConfigError& e) {
    FAIL() << e.what();
  }
  expect_same(c, again);
  EXPECT_EQ(to_yaml(again, filters::config_sections()), yaml);
}

TEST(ToYaml, DefaultsInFull) {
  EXPECT_EQ(to_yaml(load_config_string(kBase, "t.yaml", filters::config_sections()),
                    filters::config_sections()),
            R"(environment: production
listen: 0.0.0.0:8080
listen_tls: null
admin_listen: 127.0.0.1:9901
workers: auto
trusted_proxies: []
forwarded_headers: x-forwarded
proxy_protocol: false
access:
  allow: []
  deny: []
limits:
  max_header_bytes: 16KiB
  max_body_bytes: 10MiB
  max_uri_bytes: 8KiB
  header_timeout: 10s
  idle_timeout: 60s
  min_body_rate: 1KiB
  max_connections: 0
  max_connections_per_ip: 0
drain_delay: 0s
drain_timeout: 30s
upstreams:
  app:
    targets: [127.0.0.1:8000]
    connect_timeout: 2s
    timeout: 60s
    max_idle_per_target: 64
    keepalive_timeout: 30s
    balance: round_robin
    max_connections: 0
    queue_timeout: 5s
    max_queued: 1024
    retry:
      attempts: 1
      backoff: {base: 100ms, max: 1s, jitter: full}
      on: [connect_failure, reset, 502, 503, 504]
      methods: [GET, HEAD, OPTIONS, TRACE, PUT, DELETE]
      budget: 20%
      budget_floor: 3
      buffer_body: 64KiB
    per_try_timeout: 0s
    health_check: null
    outlier: null
    circuit_breaker: null
    resolve_interval: 0s
    max_addresses: 16
rate_limit: null
routes:
  - name: default
    match:
      path_prefix: /
      methods: []
      host: ""
    upstream: app
    timeout: 0s
    buffer_request: false
log:
  format: json
  access: stdout
  error: stderr
  security: stderr
  level: info
  hash_client_ip: false
  security_events: [ban, ban_lifted, access_denied, cors_denied, bad_request]
  security_sample:
    per_key_per_minute: 10
health:
  live_path: /health/live
  ready_path: /health/ready
  summary_path: /health
  cache_ttl: 1s
  check_interval: 5s
  checks: []
paths:
  merge_slashes: true
  forward: canonical
request_id:
  header: X-Request-ID
  trust_incoming: true
security_headers:
  preset: strict
  content_security_policy: default-src 'self'; frame-ancestors 'none'; object-src 'none'; base-uri 'self'
  hsts: off
  overrides: {}
  force: false
cors: off
response_headers:
  process_time: false
errors:
  intercept: [500, 502, 503, 504]
  log_body: 4KiB
  sentry:
    dsn: ""
    environment: production
    release: ""
    sample_rate: 1
    max_queue: 1000
    timeout: 5s
cache: null
)");
}

TEST(ToYaml, RoundTripsDefaults) {
  expect_round_trip(load_config_string(kBase, "t.yaml", filters::config_sections()));
}

TEST(ToYaml, RoundTripsTheCliConfig) {
  expect_round_trip(config_for_upstream("http://127.0.0.1:8000", ""));
}

TEST(ToYaml, RoundTripsUnusualValues) {
  auto c = load_config_string(R"(
environment: development
listen: "[::]:0"
admin_listen: off
workers: 7
trusted_proxies: [10.0.0.0/8, "::1", 192.168.0.0/16]
forwarded_headers: forwarded
proxy_protocol: true
limits: {max_header_bytes: 1500, max_body_bytes: 0, max_uri_bytes: 3MB}
drain_delay: 1500ms
drain_timeout: 0s
upstreams:
  b-1:
    targets: ["[2001:db8::1]:81", "http://name.internal", "10.0.0.1:1"]
    connect_timeout: 1500ms
    timeout: 36h
    max_idle_per_target: 0
    keepalive_timeout: 2d
    balance: {hash: header, header: X-User-ID}
    max_connections: 8
    queue_timeout: 0s
    max_queued: 0
    retry:
      attempts: 10
      backoff: {base: 0s, max: 0s, jitter: none}
      on: [429, timeout, invalid_json, 500, 563]
      methods: [POST, M-SEARCH]
      budget: 1000%
      budget_floor: 0
      buffer_body: 0
    per_try_timeout: 1500ms
  a_2: {targets: ["127.0.0.1:2"], balance: least_request, queue_timeout: 250ms, retry: {on: []}}
  c_3: {targets: ["127.0.0.1:3"], balance: {hash: client_ip}}
routes:
  - name: r1
    match: {path_prefix: "/a:b/[x],{y}", methods: [GET, M-SEARCH], host: "[::1]"}
    upstream: a_2
    timeout: 90s
    buffer_request: true
    rate_limit: [{limits: 1/second, key: global}, {max_in_flight: 1, algorithm: token_bucket}]
  - {name: r2, upstream: b-1, rate_limit: off}
  - {name: r3, upstream: b-1, match: {path_prefix: /r3}}
log:
  format: text
  access: "/var/log/with space: and colon.log"
  error: "- dash"
  security: "$${literal}/x"
  level: "off"
  hash_client_ip: true
  security_events: [tls_error, rate_limited]
  security_sample: {per_key_per_minute: 0}
health: {live_path: "/l:x", ready_path: /r, summary_path: "/s'q", cache_ttl: 0s, check_interval: 1h}
request_id: {header: "X-Id", trust_incoming: false}
paths: {merge_slashes: false, forward: original}
rate_limit:
  algorithm: gcra
  key: [ip, "header:X-Api-Key"]
  limits: "200 per day, 50/HOURS | 10 per 90 seconds"
  burst: 5
  headers: none
  exempt_paths: ["/h:1", /static/]
  exempt_ips: [10.0.0.0/8, "2001:db8::/32"]
  ban: {after: 3, within: 1500ms, for: 2h}
  max_in_flight: 2
  max_keys: 42
)",
                              "t.yaml", filters::config_sections());
  expect_round_trip(c);
}

TEST(ToYaml, LiteralDollarBraceIsEscaped) {
  auto c = load_config_string(kBase + "log: {access: \"/tmp/$${HOME}.log\"}\n", "t.yaml",
                              filters::config_sections());
  ASSERT_EQ(c.log.access, "/tmp/${HOME}.log");
  std::string yaml = to_yaml(c, filters::config_sections());
  EXPECT_NE(yaml.find("access: /tmp/$${HOME}.log\n"), std::string::npos) << yaml;
  expect_round_trip(c);
}

TEST(ToYaml, AdminListenOffAndWorkers) {
  auto c = load_config_string(kBase + "admin_listen: null\nworkers: 12\n", "t.yaml",
                              filters::config_sections());
  std::string yaml = to_yaml(c, filters::config_sections());
  EXPECT_NE(yaml.find("\nadmin_listen: off\n"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("\nworkers: 12\n"), std::string::npos) << yaml;
}

}  // namespace
}  // namespace gatehouse::config
