// What the loader accepts: defaults, the full example from the spec, every accepted form, files
// and the --upstream configuration.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "config/config.hpp"
#include "config_test_util.hpp"
#include "filters/registry.hpp"

namespace gatehouse::config {
namespace {

using namespace std::chrono_literals;
using testing::error_of;
using testing::kBase;

Config load(const std::string& yaml) {
  return load_config_string(yaml, "t.yaml", filters::config_sections());
}

std::vector<std::string> cidr_texts(const Config& c) {
  std::vector<std::string> out;
  for (const auto& n : c.trusted_proxies) {
    out.push_back(n.to_string());
  }
  return out;
}

TEST(LoadConfig, MinimalConfigGetsEveryDefault) {
  auto c = load(kBase);
  EXPECT_EQ(c.source, "t.yaml");
  EXPECT_EQ(c.environment, Environment::production);
  EXPECT_EQ(c.listen.to_string(), "0.0.0.0:8080");
  ASSERT_TRUE(c.admin_listen.has_value());
  EXPECT_EQ(c.admin_listen->to_string(), "127.0.0.1:9901");
  EXPECT_EQ(c.workers, 0u);
  EXPECT_TRUE(c.trusted_proxies.empty());
  EXPECT_EQ(c.forwarded_headers, http::ForwardedHeaders::x_forwarded);
  EXPECT_FALSE(c.proxy_protocol);
  EXPECT_EQ(c.limits.max_header_bytes, 16u * 1024);
  EXPECT_EQ(c.limits.max_body_bytes, 10u * 1024 * 1024);
  EXPECT_EQ(c.limits.max_uri_bytes, 8u * 1024);
  EXPECT_EQ(c.limits.header_timeout, 10s);
  EXPECT_EQ(c.limits.idle_timeout, 60s);
  EXPECT_EQ(c.drain_timeout, 30s);
  ASSERT_EQ(c.upstreams.size(), 1u);
  const auto& app = c.upstreams[0];
  EXPECT_EQ(app.name, "app");
  ASSERT_EQ(app.targets.size(), 1u);
  EXPECT_EQ(app.targets[0].to_string(), "127.0.0.1:8000");
  EXPECT_EQ(app.connect_timeout, 2s);
  EXPECT_EQ(app.timeout, 60s);
  EXPECT_EQ(app.max_idle_per_target, 64u);
  EXPECT_EQ(app.keepalive_timeout, 30s);
  EXPECT_EQ(c.log.format, LogFormat::json);
  EXPECT_EQ(c.log.access, "stdout");
  EXPECT_EQ(c.log.error, "stderr");
  EXPECT_EQ(c.log.security, "stderr");
  EXPECT_EQ(c.log.level, "info");
  EXPECT_FALSE(c.log.hash_client_ip);
  EXPECT_EQ(c.health.live_path, "/health/live");
  EXPECT_EQ(c.health.ready_path, "/health/ready");
  EXPECT_EQ(c.health.summary_path, "/health");
  EXPECT_EQ(c.health.cache_ttl, 1s);
  EXPECT_EQ(c.health.check_interval, 5s);
  EXPECT_EQ(c.request_id.header, "X-Request-ID");
  EXPECT_TRUE(c.request_id.trust_incoming);
}

TEST(LoadConfig, OmittedRoutesWithOneUpstreamGiveADefaultRoute) {
  auto c = load(kBase);
  ASSERT_EQ(c.routes.size(), 1u);
  EXPECT_EQ(c.routes[0].name, "default");
  EXPECT_EQ(c.routes[0].match.path_prefix, "/");
  EXPECT_TRUE(c.routes[0].match.methods.empty());
  EXPECT_EQ(c.routes[0].match.host, "");
  EXPECT_EQ(c.routes[0].upstream, "app");
  EXPECT_EQ(c.routes[0].upstream_index, 0u);
}

// The example from the behaviour spec, verbatim.
const std::string kSpecExample = R"(environment: production            # development | production
listen: 0.0.0.0:8080
admin_listen: 127.0.0.1:9901       # null or "off" disables
workers: auto                      # or an integer >= 1
trusted_proxies: [10.0.0.0/8]
limits: {max_header_bytes: 16KiB, max_body_bytes: 10MiB, max_uri_bytes: 8KiB, header_timeout: 10s, idle_timeout: 60s}
drain_timeout: 30s
upstreams:
  app: {targets: ["127.0.0.1:8000"], connect_timeout: 2s, timeout: 60s, max_idle_per_target: 64, keepalive_timeout: 30s}
routes:
  - {name: generate, match: {path_prefix: /api/generate, methods: [POST], host: example.com}, upstream: app}
  - {name: default, match: {path_prefix: /}, upstream: app}
log: {format: json, access: stdout, error: stderr, security: stderr, level: info, hash_client_ip: false}
health: {live_path: /health/live, ready_path: /health/ready, summary_path: /health, cache_ttl: 1s, check_interval: 5s}
request_id: {header: X-Request-ID, trust_incoming: true}
)";

TEST(LoadConfig, SpecExample) {
  auto c = load(kSpecExample);
  EXPECT_EQ(c.environment, Environment::production);
  EXPECT_EQ(c.listen.host, "0.0.0.0");
  EXPECT_EQ(c.listen.port, 8080);
  ASSERT_TRUE(c.admin_listen.has_value());
  EXPECT_EQ(c.admin_listen->host, "127.0.0.1");
  EXPECT_EQ(c.admin_listen->port, 9901);
  EXPECT_EQ(c.workers, 0u);
  EXPECT_EQ(cidr_texts(c), std::vector<std::string>{"10.0.0.0/8"});
  EXPECT_EQ(c.limits.max_header_bytes, 16384u);
  EXPECT_EQ(c.limits.max_body_bytes, 10485760u);
  EXPECT_EQ(c.limits.max_uri_bytes, 8192u);
  EXPECT_EQ(c.limits.header_timeout, 10s);
  EXPECT_EQ(c.limits.idle_timeout, 60s);
  EXPECT_EQ(c.drain_timeout, 30s);
  EXPECT_EQ(c.drain_delay, 0s);  // default
  ASSERT_EQ(c.upstreams.size(), 1u);
  EXPECT_EQ(c.upstreams[0].name, "app");
  ASSERT_EQ(c.upstreams[0].targets.size(), 1u);
  EXPECT_EQ(c.upstreams[0].targets[0].host, "127.0.0.1");
  EXPECT_EQ(c.upstreams[0].targets[0].port, 8000);
  EXPECT_EQ(c.upstreams[0].connect_timeout, 2s);
  EXPECT_EQ(c.upstreams[0].timeout, 60s);
  EXPECT_EQ(c.upstreams[0].max_idle_per_target, 64u);
  EXPECT_EQ(c.upstreams[0].keepalive_timeout, 30s);
  ASSERT_EQ(c.routes.size(), 2u);
  EXPECT_EQ(c.routes[0].name, "generate");
  EXPECT_EQ(c.routes[0].match.path_prefix, "/api/generate");
  EXPECT_EQ(c.routes[0].match.methods, std::vector<std::string>{"POST"});
  EXPECT_EQ(c.routes[0].match.host, "example.com");
  EXPECT_EQ(c.routes[0].upstream, "app");
  EXPECT_EQ(c.routes[0].upstream_index, 0u);
  EXPECT_EQ(c.routes[1].name, "default");
  EXPECT_EQ(c.routes[1].match.path_prefix, "/");
  EXPECT_TRUE(c.routes[1].match.methods.empty());
  EXPECT_EQ(c.routes[1].match.host, "");
  EXPECT_EQ(c.log.format, LogFormat::json);
  EXPECT_EQ(c.log.access, "stdout");
  EXPECT_EQ(c.log.error, "stderr");
  EXPECT_EQ(c.log.security, "stderr");
  EXPECT_EQ(c.log.level, "info");
  EXPECT_FALSE(c.log.hash_client_ip);
  EXPECT_EQ(c.health.live_path, "/health/live");
  EXPECT_EQ(c.health.ready_path, "/health/ready");
  EXPECT_EQ(c.health.summary_path, "/health");
  EXPECT_EQ(c.health.cache_ttl, 1s);
  EXPECT_EQ(c.health.check_interval, 5s);
  EXPECT_EQ(c.request_id.header, "X-Request-ID");
  EXPECT_TRUE(c.request_id.trust_incoming);
}

TEST(LoadConfig, EverySettingChanged) {
  auto c = load(R"(
environment: development
listen: "[::1]:0"
admin_listen: localhost:9999
workers: 3
trusted_proxies:
  - 10.0.0.0/8
  - 192.168.1.7
  - fd00::/8
forwarded_headers: forwarded
proxy_protocol: true
limits:
  max_header_bytes: 4096B
  max_body_bytes: 0
  max_uri_bytes: 2KB
  header_timeout: 1.5s
  idle_timeout: 2m
drain_delay: 5s
drain_timeout: 0s
upstreams:
  api:
    targets: ["http://10.0.0.1:9000", "10.0.0.2:9000", "[::1]:9001"]
    connect_timeout: 250ms
    timeout: 1h
    max_idle_per_target: 0
    keepalive_timeout: 1d
  static:
    targets: ["http://files.internal"]
routes:
  - name: static-files
    match:
      path_prefix: /static/
      methods: [GET, HEAD]
      host: "[::1]"
    upstream: static
  - name: api_v1
    match: {host: API.example.com}
    upstream: api
log:
  format: text
  access: /var/log/gatehouse/access.log
  error: "off"
  security: stdout
  level: warn
  hash_client_ip: true
health:
  live_path: /livez
  ready_path: /readyz
  summary_path: /healthz
  cache_ttl: 0s
  check_interval: 500ms
request_id:
  header: X-Correlation-Id
  trust_incoming: false
)");
  EXPECT_EQ(c.environment, Environment::development);
  EXPECT_EQ(c.listen.host, "::1");
  EXPECT_EQ(c.listen.port, 0);
  EXPECT_EQ(c.admin_listen->to_string(), "localhost:9999");
  EXPECT_EQ(c.workers, 3u);
  EXPECT_EQ(cidr_texts(c), (std::vector<std::string>{"10.0.0.0/8", "192.168.1.7/32", "fd00::/8"}));
  EXPECT_EQ(c.limits.max_header_bytes, 4096u);
  EXPECT_EQ(c.limits.max_body_bytes, 0u);
  EXPECT_EQ(c.limits.max_uri_bytes, 2000u);
  EXPECT_EQ(c.limits.header_timeout, 1500ms);
  EXPECT_EQ(c.limits.idle_timeout, 120s);
  EXPECT_EQ(c.drain_timeout, 0s);
  EXPECT_EQ(c.drain_delay, 5s);
  ASSERT_EQ(c.upstreams.size(), 2u);
  EXPECT_EQ(c.upstreams[0].name, "api");
  ASSERT_EQ(c.upstreams[0].targets.size(), 3u);
  EXPECT_EQ(c.upstreams[0].targets[0].to_string(), "10.0.0.1:9000");
  EXPECT_EQ(c.upstreams[0].targets[1].to_string(), "10.0.0.2:9000");
  EXPECT_EQ(c.upstreams[0].targets[2].to_string(), "[::1]:9001");
  EXPECT_EQ(c.upstreams[0].connect_timeout, 250ms);
  EXPECT_EQ(c.upstreams[0].timeout, 1h);
  EXPECT_EQ(c.upstreams[0].max_idle_per_target, 0u);
  EXPECT_EQ(c.upstreams[0].keepalive_timeout, 24h);
  EXPECT_EQ(c.upstreams[1].name, "static");
  ASSERT_EQ(c.upstreams[1].targets.size(), 1u);
  EXPECT_EQ(c.upstreams[1].targets[0].to_string(), "files.internal:80");
  EXPECT_EQ(c.upstreams[1].timeout, 60s);  // default
  ASSERT_EQ(c.routes.size(), 2u);
  EXPECT_EQ(c.routes[0].name, "static-files");
  EXPECT_EQ(c.routes[0].match.path_prefix, "/static/");
  EXPECT_EQ(c.routes[0].match.methods, (std::vector<std::string>{"GET", "HEAD"}));
  EXPECT_EQ(c.routes[0].match.host, "[::1]");
  EXPECT_EQ(c.routes[0].upstream, "static");
  EXPECT_EQ(c.routes[0].upstream_index, 1u);
  EXPECT_EQ(c.routes[1].name, "api_v1");
  EXPECT_EQ(c.routes[1].match.path_prefix, "/");
  EXPECT_EQ(c.routes[1].match.host, "API.example.com");
  EXPECT_EQ(c.routes[1].upstream_index, 0u);
  EXPECT_EQ(c.log.format, LogFormat::text);
  EXPECT_EQ(c.log.access, "/var/log/gatehouse/access.log");
  EXPECT_EQ(c.log.error, "off");
  EXPECT_EQ(c.log.security, "stdout");
  EXPECT_EQ(c.log.level, "warn");
  EXPECT_TRUE(c.log.hash_client_ip);
  EXPECT_EQ(c.health.live_path, "/livez");
  EXPECT_EQ(c.health.ready_path, "/readyz");
  EXPECT_EQ(c.health.summary_path, "/healthz");
  EXPECT_EQ(c.health.cache_ttl, 0s);
  EXPECT_EQ(c.health.check_interval, 500ms);
  EXPECT_EQ(c.request_id.header, "X-Correlation-Id");
  EXPECT_FALSE(c.request_id.trust_incoming);
  EXPECT_EQ(c.forwarded_headers, http::ForwardedHeaders::forwarded);
  EXPECT_TRUE(c.proxy_protocol);
}

TEST(LoadConfig, AdminListenCanBeDisabled) {
  for (auto snippet : {"admin_listen: off\n", "admin_listen: \"off\"\n", "admin_listen: null\n",
                       "admin_listen: ~\n", "admin_listen:\n"}) {
    auto c = load(kBase + snippet);
    EXPECT_FALSE(c.admin_listen.has_value()) << snippet;
  }
}

TEST(LoadConfig, AcceptedScalarForms) {
  // The forms the CLI integration tests rely on, plus the other spellings we allow.
  for (auto snippet : {"drain_timeout: 250ms",
                       "drain_timeout: 10s",
                       "drain_timeout: 1m",
                       "drain_timeout: 1h",
                       "drain_timeout: 1d",
                       "drain_timeout: 365d",
                       "drain_timeout: \"10s\"",
                       "drain_delay: 0s",
                       "drain_delay: 15s",
                       "limits: {max_body_bytes: 512}",
                       "limits: {max_body_bytes: 10MiB}",
                       "limits: {max_body_bytes: 10MB}",
                       "limits: {max_body_bytes: 1GiB}",
                       "limits: {max_header_bytes: 16KB}",
                       "limits: {max_header_bytes: 4096B}",
                       "workers: auto",
                       "workers: 1",
                       "workers: 1024",
                       "workers: \"3\"",
                       "log: {hash_client_ip: True}",
                       "log: {hash_client_ip: FALSE}",
                       "log: {level: trace}",
                       "log: {level: critical}",
                       "log: {level: off}",
                       "log: {level: error}",
                       "log: {level: debug}",
                       "listen: :8080",
                       "listen: localhost:8080",
                       "trusted_proxies: []",
                       "trusted_proxies:",
                       "limits:",
                       "log:",
                       "health:",
                       "request_id:",
                       "environment: development"}) {
    EXPECT_EQ(error_of(kBase + snippet + "\n"), "(no error)") << snippet;
  }
}

TEST(LoadConfig, MatchDefaultsWhenOmitted) {
  auto c = load(kBase + "routes:\n  - name: all\n    upstream: app\n    match:\n");
  ASSERT_EQ(c.routes.size(), 1u);
  EXPECT_EQ(c.routes[0].match.path_prefix, "/");
  EXPECT_TRUE(c.routes[0].match.methods.empty());
}

TEST(LoadConfig, YamlAnchorsAndAliases) {
  auto c = load(
      "upstreams:\n"
      "  a: &common {targets: [\"127.0.0.1:1\"], timeout: 5s}\n"
      "  b: *common\n"
      "routes:\n"
      "  - {name: a, upstream: a}\n"
      "  - {name: b, upstream: b}\n");
  ASSERT_EQ(c.upstreams.size(), 2u);
  EXPECT_EQ(c.upstreams[1].timeout, 5s);
  EXPECT_EQ(c.routes[1].upstream_index, 1u);
}

// --- files ---------------------------------------------------------------------------------------

class LoadConfigFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("gatehouse-config-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    auto path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }

  std::filesystem::path dir_;
};

TEST_F(LoadConfigFile, LoadsAndRemembersThePath) {
  auto path = write("ok.yaml", kBase);
  auto c = load_config_file(path, filters::config_sections());
  EXPECT_EQ(c.source, path);
  EXPECT_EQ(c.upstreams.at(0).name, "app");
}

TEST_F(LoadConfigFile, ErrorsNameTheFile) {
  auto path = write("bad.yaml", kBase + "limits:\n  max_header_bytez: 16KiB\n");
  try {
    load_config_file(path, filters::config_sections());
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              path +
                  ":5:3: limits.max_header_bytez: unknown key \"max_header_bytez\" (did you mean "
                  "\"max_header_bytes\"?); allowed keys: max_header_bytes, max_body_bytes, "
                  "max_uri_bytes, header_timeout, idle_timeout, min_body_rate, max_connections, "
                  "max_connections_per_ip");
  }
}

TEST_F(LoadConfigFile, MissingFile) {
  auto path = (dir_ / "missing.yaml").string();
  try {
    load_config_file(path, filters::config_sections());
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), path + ": cannot read: No such file or directory");
  }
}

TEST_F(LoadConfigFile, Directory) {
  try {
    load_config_file(dir_.string(), filters::config_sections());
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), dir_.string() + ": cannot read: Is a directory");
  }
}

TEST_F(LoadConfigFile, EmptyFile) {
  auto path = write("empty.yaml", "");
  try {
    load_config_file(path, filters::config_sections());
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), path + ":1:1: upstreams: required key is missing");
  }
}

// --- config_for_upstream -------------------------------------------------------------------------

TEST(ConfigForUpstream, ProductionDefaultsInFrontOfOneUrl) {
  auto c = config_for_upstream("http://127.0.0.1:8000", "");
  EXPECT_EQ(c.source, "<cli>");
  EXPECT_EQ(c.environment, Environment::production);
  EXPECT_EQ(c.listen.to_string(), "0.0.0.0:8080");
  ASSERT_TRUE(c.admin_listen.has_value());
  EXPECT_EQ(c.admin_listen->to_string(), "127.0.0.1:9901");
  ASSERT_EQ(c.upstreams.size(), 1u);
  EXPECT_EQ(c.upstreams[0].name, "app");
  ASSERT_EQ(c.upstreams[0].targets.size(), 1u);
  EXPECT_EQ(c.upstreams[0].targets[0].to_string(), "127.0.0.1:8000");
  EXPECT_EQ(c.upstreams[0].timeout, 60s);
  ASSERT_EQ(c.routes.size(), 1u);
  EXPECT_EQ(c.routes[0].name, "default");
  EXPECT_EQ(c.routes[0].match.path_prefix, "/");
  EXPECT_EQ(c.routes[0].upstream, "app");
  EXPECT_EQ(c.routes[0].upstream_index, 0u);
  EXPECT_EQ(c.log.access, "stdout");
}

TEST(ConfigForUpstream, ListenAndUrlForms) {
  auto c = config_for_upstream("http://[::1]:9000/", "127.0.0.1:0");
  EXPECT_EQ(c.listen.to_string(), "127.0.0.1:0");
  EXPECT_EQ(c.upstreams[0].targets[0].to_string(), "[::1]:9000");
  EXPECT_EQ(config_for_upstream("http://app.internal", ":8081").upstreams[0].targets[0].to_string(),
            "app.internal:80");
  EXPECT_EQ(config_for_upstream("127.0.0.1:8000", "").upstreams[0].targets[0].to_string(),
            "127.0.0.1:8000");
}

std::string cli_error(const std::string& url, const std::string& listen) {
  try {
    config_for_upstream(url, listen);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ConfigForUpstream, Errors) {
  EXPECT_EQ(cli_error("https://127.0.0.1:8443", ""),
            "--upstream: unsupported scheme \"https\" (only http:// is supported)");
  EXPECT_EQ(cli_error("ftp://x", ""),
            "--upstream: unsupported scheme \"ftp\" (only http:// is supported)");
  EXPECT_EQ(cli_error("http://127.0.0.1:8000/api", ""),
            "--upstream: unexpected \"/api\" after the address (expected HOST:PORT or "
            "http://HOST:PORT)");
  EXPECT_EQ(cli_error("", ""),
            "--upstream: invalid address \"\" (expected HOST:PORT or http://HOST:PORT)");
  EXPECT_EQ(cli_error("http://127.0.0.1:0", ""),
            "--upstream: port 0 is not allowed in \"http://127.0.0.1:0\"");
  EXPECT_EQ(cli_error("http://127.0.0.1:8000", "8080"),
            "--listen: invalid address \"8080\" (expected HOST:PORT, [IPV6]:PORT or :PORT)");
}

}  // namespace
}  // namespace gatehouse::config
