// health.checks: accepted forms, defaults, round trip through `gatehouse check`, and every
// rejection with file:line:col and key path.
#include <gtest/gtest.h>

#include <string>

#include "config/config.hpp"
#include "config/config_test_util.hpp"
#include "config/health_checks.hpp"

namespace gatehouse::config {
namespace {

using namespace std::chrono_literals;
using testing::expect_errors;
using testing::kBase;

Config load(const std::string& yaml) {
  return load_config_string(kBase + yaml, "t.yaml", filters::config_sections());
}

TEST(HealthChecksConfig, EveryKind) {
  auto c = load(
      "health:\n"
      "  checks:\n"
      "    - {name: db, tcp: \"127.0.0.1:5432\"}\n"
      "    - {name: redis, redis: \"redis://127.0.0.1:6379/0\", timeout: 500ms}\n"
      "    - {name: app, http: \"http://127.0.0.1:8000/health\", expect: [200, 204]}\n"
      "    - {name: disk, disk: {path: /var/lib/app, min_free: 1GiB}}\n");
  const auto& k = c.health.checks;
  ASSERT_EQ(k.size(), 4u);
  EXPECT_EQ(k[0].name, "db");
  EXPECT_EQ(k[0].kind, DependencyCheck::Kind::tcp);
  EXPECT_EQ(k[0].target, "127.0.0.1:5432");
  EXPECT_EQ(k[0].timeout, 2s);
  EXPECT_EQ(k[1].kind, DependencyCheck::Kind::redis);
  EXPECT_EQ(k[1].target, "redis://127.0.0.1:6379/0");
  EXPECT_EQ(k[1].timeout, 500ms);
  EXPECT_EQ(k[2].kind, DependencyCheck::Kind::http);
  EXPECT_EQ(k[2].expect, (std::vector<unsigned>{200, 204}));
  EXPECT_EQ(k[3].kind, DependencyCheck::Kind::disk);
  EXPECT_EQ(k[3].target, "/var/lib/app");
  EXPECT_EQ(k[3].min_free, 1024ull * 1024 * 1024);
  EXPECT_TRUE(load("").health.checks.empty());
}

TEST(HealthChecksConfig, HttpUrl) {
  auto u = parse_http_check_url("http://127.0.0.1:8000/health?full=1");
  EXPECT_EQ(u.error, "");
  EXPECT_EQ(u.endpoint.to_string(), "127.0.0.1:8000");
  EXPECT_EQ(u.path, "/health?full=1");
  u = parse_http_check_url("http://app.internal");
  EXPECT_EQ(u.error, "");
  EXPECT_EQ(u.endpoint.port, 80);
  EXPECT_EQ(u.path, "/");
  EXPECT_NE(parse_http_check_url("https://x:1/").error, "");
  EXPECT_NE(parse_http_check_url("http:///health").error, "");
  EXPECT_NE(parse_http_check_url("http://x:1/a b").error, "");
}

TEST(HealthChecksConfig, RoundTrip) {
  auto c = load(
      "health:\n"
      "  checks:\n"
      "    - {name: db, tcp: \"localhost:5432\", timeout: 1s}\n"
      "    - {name: app, http: \"http://127.0.0.1:8000/health\", expect: [200]}\n"
      "    - {name: disk, disk: {path: /tmp}}\n");
  std::string emitted = to_yaml(c, filters::config_sections());
  auto again = load_config_string(emitted, "emitted.yaml", filters::config_sections());
  ASSERT_EQ(again.health.checks.size(), 3u);
  EXPECT_EQ(again.health.checks[1].expect, (std::vector<unsigned>{200}));
  EXPECT_EQ(again.health.checks[0].timeout, 1s);
  EXPECT_EQ(to_yaml(again, filters::config_sections()), emitted);
  auto none = load("");
  std::string empty = to_yaml(none, filters::config_sections());
  EXPECT_EQ(to_yaml(load_config_string(empty, "e.yaml", filters::config_sections()),
                    filters::config_sections()),
            empty);
}

TEST(HealthChecksConfig, Rejections) {
  const std::string h = "health:\n  checks:\n";
  expect_errors({
      {kBase + h + "    - {tcp: \"127.0.0.1:5432\"}\n",
       "t.yaml:6:7: health.checks[0].name: required key is missing"},
      {kBase + h + "    - {name: db}\n",
       "t.yaml:6:7: health.checks[0]: expected one of tcp, redis, http, disk"},
      {kBase + h + "    - {name: db, tcp: \"a:1\", redis: \"redis://x\"}\n",
       "t.yaml:6:7: health.checks[0]: expected only one of tcp, redis, http, disk"},
      {kBase + h + "    - {name: db, tcp: \"127.0.0.1\"}\n",
       "t.yaml:6:23: health.checks[0].tcp: invalid address \"127.0.0.1\" (expected HOST:PORT)"},
      {kBase + h + "    - {name: r, redis: \"http://x\"}\n",
       "t.yaml:6:24: health.checks[0].redis: expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], "
       "got \"http://x\""},
      {kBase + h + "    - {name: a, http: \"https://x/health\"}\n",
       "t.yaml:6:23: health.checks[0].http: expected http://HOST[:PORT][/PATH], got "
       "\"https://x/health\""},
      {kBase + h + "    - {name: a, tcp: \"x:1\", expect: [200]}\n",
       "t.yaml:6:37: health.checks[0].expect: only http checks have expect"},
      {kBase + h + "    - {name: a, http: \"http://x/\", expect: [99]}\n",
       "t.yaml:6:45: health.checks[0].expect[0]: invalid value \"99\" (expected an integer from "
       "100 "
       "to 599)"},
      {kBase + h + "    - {name: d, disk: {path: var/lib}}\n",
       "t.yaml:6:30: health.checks[0].disk.path: expected an absolute path, got \"var/lib\""},
      {kBase + h + "    - {name: d, disk: {path: /x, min_free: lots}}\n",
       "t.yaml:6:44: health.checks[0].disk.min_free: invalid size \"lots\" (expected bytes, or a "
       "number and a unit: B, KiB, MiB, GiB, KB, MB or GB, e.g. \"16KiB\")"},
      {kBase + h + "    - {name: a, tcp: \"x:1\", timeout: 2m}\n",
       "t.yaml:6:38: health.checks[0].timeout: must be at most 60s"},
      {kBase + h + "    - {name: a, tcp: \"x:1\"}\n    - {name: a, tcp: \"x:2\"}\n",
       "t.yaml:7:14: health.checks[1].name: duplicate check name \"a\""},
      {kBase + h + "    - {name: \"a b\", tcp: \"x:1\"}\n",
       "t.yaml:6:14: health.checks[0].name: invalid check name \"a b\" (use letters, digits, '_' "
       "and '-')"},
      {kBase + h + "    - {name: a, tcp: \"x:1\", tmeout: 1s}\n",
       "t.yaml:6:29: health.checks[0].tmeout: unknown key \"tmeout\" (did you mean \"timeout\"?); "
       "allowed keys: name, tcp, redis, http, disk, expect, timeout"},
  });
}

}  // namespace
}  // namespace gatehouse::config
