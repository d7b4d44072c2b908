// upstreams.<name>.health_check / outlier / circuit_breaker (issue 12, target health): values,
// defaults, `gatehouse check` round trip, and every rejection with its file:line:col and key.
#include <gtest/gtest.h>

#include <string>

#include "config/config.hpp"
#include "config_test_util.hpp"
#include "filters/registry.hpp"

namespace gatehouse::config {
namespace {

using namespace std::chrono_literals;
using testing::expect_errors;

Config load(const std::string& yaml) {
  return load_config_string(yaml, "t.yaml", filters::config_sections());
}

// An upstream "app" with `block` lines (indented 4) after its targets.
std::string with(const std::string& block) {
  return "upstreams:\n  app:\n    targets: [\"127.0.0.1:8000\", \"127.0.0.1:8001\"]\n" + block;
}

TEST(TargetHealthConfig, OffByDefault) {
  auto c = load(with(""));
  EXPECT_FALSE(c.upstreams[0].health_check);
  EXPECT_FALSE(c.upstreams[0].outlier);
  EXPECT_FALSE(c.upstreams[0].circuit_breaker);
  auto n = load(with("    health_check: null\n    outlier: null\n    circuit_breaker: null\n"));
  EXPECT_FALSE(n.upstreams[0].health_check);
  EXPECT_FALSE(n.upstreams[0].outlier);
  EXPECT_FALSE(n.upstreams[0].circuit_breaker);
}

TEST(TargetHealthConfig, TheIssueExample) {
  auto c = load(with(
      "    health_check: {path: /health, expect: [200], interval: 5s, timeout: 1s, healthy_after: "
      "2, unhealthy_after: 3}\n"
      "    outlier: {consecutive_5xx: 5, consecutive_connect_failures: 3, eject_for: 30s, "
      "max_ejected: 50%}\n"
      "    circuit_breaker: {failure_ratio: 0.5, min_requests: 20, window: 10s, open_for: 15s}\n"));
  const auto& u = c.upstreams[0];
  ASSERT_TRUE(u.health_check);
  EXPECT_EQ(u.health_check->path, "/health");
  EXPECT_EQ(u.health_check->expect, (std::vector<StatusRange>{{200, 200}}));
  EXPECT_EQ(u.health_check->interval, 5s);
  EXPECT_EQ(u.health_check->timeout, 1s);
  EXPECT_EQ(u.health_check->healthy_after, 2u);
  EXPECT_EQ(u.health_check->unhealthy_after, 3u);
  EXPECT_EQ(u.health_check->host, "");
  ASSERT_TRUE(u.outlier);
  EXPECT_EQ(*u.outlier, OutlierConfig{});
  ASSERT_TRUE(u.circuit_breaker);
  EXPECT_EQ(*u.circuit_breaker, CircuitBreakerConfig{});
}

TEST(TargetHealthConfig, EmptyBlocksTakeTheDefaults) {
  auto c = load(with("    health_check: {}\n    outlier: {}\n    circuit_breaker: {}\n"));
  const auto& u = c.upstreams[0];
  EXPECT_EQ(*u.health_check, HealthCheckConfig{});
  EXPECT_EQ(u.health_check->path, "/health");
  EXPECT_EQ(u.health_check->interval, 5s);
  EXPECT_EQ(u.outlier->consecutive_5xx, 5u);
  EXPECT_EQ(u.outlier->consecutive_connect_failures, 3u);
  EXPECT_EQ(u.outlier->eject_for, 30s);
  EXPECT_EQ(u.outlier->max_ejected_percent, 50u);
  EXPECT_EQ(u.circuit_breaker->failure_ratio, 0.5);
  EXPECT_EQ(u.circuit_breaker->min_requests, 20u);
  EXPECT_EQ(u.circuit_breaker->window, 10s);
  EXPECT_EQ(u.circuit_breaker->open_for, 15s);
  EXPECT_EQ(u.circuit_breaker->half_open_probes, 1u);
}

TEST(TargetHealthConfig, UnusualValues) {
  auto c = load(with(
      "    health_check: {path: /ready, expect: [2xx, 301, \"404\"], interval: 500ms, timeout: "
      "500ms, healthy_after: 1, unhealthy_after: 1, host: app.internal}\n"
      "    outlier: {consecutive_5xx: 0, consecutive_connect_failures: 1, eject_for: 250ms, "
      "max_ejected: 100%}\n"
      "    circuit_breaker: {failure_ratio: 25%, min_requests: 1, window: 100ms, open_for: 1m, "
      "half_open_probes: 5}\n"));
  const auto& u = c.upstreams[0];
  EXPECT_EQ(u.health_check->expect, (std::vector<StatusRange>{{200, 299}, {301, 301}, {404, 404}}));
  EXPECT_EQ(u.health_check->host, "app.internal");
  EXPECT_EQ(u.health_check->timeout, 500ms);
  EXPECT_EQ(u.outlier->consecutive_5xx, 0u);
  EXPECT_EQ(u.outlier->max_ejected_percent, 100u);
  EXPECT_EQ(u.outlier->eject_for, 250ms);
  EXPECT_EQ(u.circuit_breaker->failure_ratio, 0.25);
  EXPECT_EQ(u.circuit_breaker->min_requests, 1u);
  EXPECT_EQ(u.circuit_breaker->window, 100ms);
  EXPECT_EQ(u.circuit_breaker->half_open_probes, 5u);
}

void expect_round_trip(const std::string& yaml_in) {
  auto c = load(yaml_in);
  auto yaml = to_yaml(c, filters::config_sections());
  SCOPED_TRACE(yaml);
  auto again = load(yaml);
  EXPECT_EQ(c.upstreams[0].health_check, again.upstreams[0].health_check);
  EXPECT_EQ(c.upstreams[0].outlier, again.upstreams[0].outlier);
  EXPECT_EQ(c.upstreams[0].circuit_breaker, again.upstreams[0].circuit_breaker);
  EXPECT_EQ(to_yaml(again, filters::config_sections()), yaml);
}

TEST(TargetHealthConfig, RoundTrips) {
  expect_round_trip(with(""));
  expect_round_trip(with("    health_check: {}\n    outlier: {}\n    circuit_breaker: {}\n"));
  expect_round_trip(
      with("    health_check: {path: /ready, expect: [2xx, 301], interval: 2s, timeout: 250ms, "
           "healthy_after: 4, unhealthy_after: 7, host: \"app.internal:8000\"}\n"
           "    outlier: {consecutive_5xx: 0, consecutive_connect_failures: 9, eject_for: 1m, "
           "max_ejected: 33%}\n"
           "    circuit_breaker: {failure_ratio: 0.125, min_requests: 3, window: 1m, open_for: 2s, "
           "half_open_probes: 2}\n"));
}

TEST(TargetHealthConfig, CheckPrintsEveryKey) {
  auto yaml =
      to_yaml(load(with("    health_check: {}\n    outlier: {}\n    circuit_breaker: {}\n")),
              filters::config_sections());
  EXPECT_NE(yaml.find("    health_check:\n      path: /health\n      expect: [200]\n"
                      "      interval: 5s\n      timeout: 1s\n      healthy_after: 2\n"
                      "      unhealthy_after: 3\n"),
            std::string::npos);
  EXPECT_NE(
      yaml.find("    outlier:\n      consecutive_5xx: 5\n      consecutive_connect_failures: 3\n"
                "      eject_for: 30s\n      max_ejected: 50%\n"),
      std::string::npos);
  EXPECT_NE(yaml.find("    circuit_breaker:\n      failure_ratio: 0.5\n      min_requests: 20\n"
                      "      window: 10s\n      open_for: 15s\n      half_open_probes: 1\n"),
            std::string::npos);
}

TEST(TargetHealthConfig, Rejections) {
  expect_errors({
      {with("    health_check: {paht: /x}\n"),
       "t.yaml:4:20: upstreams.app.health_check.paht: unknown key \"paht\" (did you mean "
       "\"path\"?); allowed keys: path, expect, interval, timeout, healthy_after, "
       "unhealthy_after, host"},
      {with("    health_check: {path: health}\n"),
       "t.yaml:4:26: upstreams.app.health_check.path: must start with '/' (got \"health\")"},
      {with("    health_check: {expect: []}\n"),
       "t.yaml:4:28: upstreams.app.health_check.expect: at least one status is required"},
      {with("    health_check: {expect: [2xy]}\n"),
       "t.yaml:4:29: upstreams.app.health_check.expect[0]: invalid status \"2xy\" (expected a "
       "status from 100 to 599 or a class such as \"2xx\")"},
      {with("    health_check: {expect: [200, 600]}\n"),
       "t.yaml:4:34: upstreams.app.health_check.expect[1]: invalid status \"600\" (expected a "
       "status from 100 to 599 or a class such as \"2xx\")"},
      {with("    health_check: {expect: 200}\n"),
       "t.yaml:4:28: upstreams.app.health_check.expect: expected a list, got a string"},
      {with("    health_check: {interval: 0s}\n"),
       "t.yaml:4:30: upstreams.app.health_check.interval: must be greater than 0"},
      {with("    health_check: {interval: 1s, timeout: 2s}\n"),
       "t.yaml:4:43: upstreams.app.health_check.timeout: must not exceed interval (1s): one "
       "check per target at a time"},
      {with("    health_check: {timeout: 6s}\n"),
       "t.yaml:4:29: upstreams.app.health_check.timeout: must not exceed interval (5s): one "
       "check per target at a time"},
      {with("    health_check: {healthy_after: 0}\n"),
       "t.yaml:4:35: upstreams.app.health_check.healthy_after: invalid value \"0\" (expected an "
       "integer from 1 to 100)"},
      {with("    health_check: {unhealthy_after: 101}\n"),
       "t.yaml:4:37: upstreams.app.health_check.unhealthy_after: invalid value \"101\" (expected "
       "an integer from 1 to 100)"},
      {with("    health_check: {host: \"\"}\n"),
       "t.yaml:4:26: upstreams.app.health_check.host: invalid host \"\" (expected a Host header "
       "value)"},
      {with("    health_check: /health\n"),
       "t.yaml:4:19: upstreams.app.health_check: expected a map, got a string"},
      {with("    outlier: {consecutive_5xx: -1}\n"),
       "t.yaml:4:32: upstreams.app.outlier.consecutive_5xx: invalid value \"-1\" (expected an "
       "integer from 0 to 1000000)"},
      {with("    outlier: {eject_for: 30}\n"),
       "t.yaml:4:26: upstreams.app.outlier.eject_for: invalid duration \"30\": a unit is "
       "required, e.g. \"30s\" (units: ms, s, m, h, d)"},
      {with("    outlier: {max_ejected: 50}\n"),
       "t.yaml:4:28: upstreams.app.outlier.max_ejected: invalid percentage \"50\" (expected 0% "
       "to 100%, e.g. \"50%\")"},
      {with("    outlier: {max_ejected: 150%}\n"),
       "t.yaml:4:28: upstreams.app.outlier.max_ejected: invalid percentage \"150%\" (expected "
       "0% to 100%, e.g. \"50%\")"},
      {with("    outlier: {ejections: 3}\n"),
       "t.yaml:4:15: upstreams.app.outlier.ejections: unknown key \"ejections\"; allowed keys: "
       "consecutive_5xx, consecutive_connect_failures, eject_for, max_ejected"},
      {with("    circuit_breaker: {failure_ratio: 0}\n"),
       "t.yaml:4:38: upstreams.app.circuit_breaker.failure_ratio: invalid ratio \"0\" (expected "
       "a number above 0 and at most 1, or a percentage, e.g. 0.5 or \"50%\")"},
      {with("    circuit_breaker: {failure_ratio: 1.5}\n"),
       "t.yaml:4:38: upstreams.app.circuit_breaker.failure_ratio: invalid ratio \"1.5\" "
       "(expected a number above 0 and at most 1, or a percentage, e.g. 0.5 or \"50%\")"},
      {with("    circuit_breaker: {failure_ratio: half}\n"),
       "t.yaml:4:38: upstreams.app.circuit_breaker.failure_ratio: invalid ratio \"half\" "
       "(expected a number above 0 and at most 1, or a percentage, e.g. 0.5 or \"50%\")"},
      {with("    circuit_breaker: {min_requests: 0}\n"),
       "t.yaml:4:37: upstreams.app.circuit_breaker.min_requests: invalid value \"0\" (expected "
       "an integer from 1 to 1000000000)"},
      {with("    circuit_breaker: {window: 50ms}\n"),
       "t.yaml:4:31: upstreams.app.circuit_breaker.window: must be at least 100ms (the window "
       "is counted in tenths)"},
      {with("    circuit_breaker: {open_for: 0s}\n"),
       "t.yaml:4:33: upstreams.app.circuit_breaker.open_for: must be greater than 0"},
      {with("    circuit_breaker: {half_open_probes: 0}\n"),
       "t.yaml:4:41: upstreams.app.circuit_breaker.half_open_probes: invalid value \"0\" "
       "(expected an integer from 1 to 1000)"},
  });
}

}  // namespace
}  // namespace gatehouse::config
