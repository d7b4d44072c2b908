#include "config/reload_plan.hpp"

#include <gtest/gtest.h>

#include "config/config_test_util.hpp"
#include "filters/rate_limit/rate_limit_filter.hpp"
#include "ratelimit/clock.hpp"

namespace gatehouse::config {
namespace {

using testing::kBase;

Config load(const std::string& yaml) {
  return load_config_string(yaml, "t.yaml", filters::config_sections());
}

const std::string kRoutes =
    "routes:\n"
    "  - name: api\n"
    "    match: {path_prefix: /api}\n"
    "    upstream: app\n"
    "    rate_limit: {limits: \"100/hour\"}\n"
    "  - name: default\n"
    "    match: {path_prefix: /}\n"
    "    upstream: app\n";

TEST(DiffDefinitions, KeptChangedAddedRemovedInFileOrder) {
  Definitions before{{"a", "1"}, {"b", "2"}, {"c", "3"}};
  Definitions after{{"d", "4"}, {"b", "2"}, {"a", "9"}};
  auto d = diff_definitions(before, after);
  EXPECT_EQ(d.kept, std::vector<std::string>{"b"});
  EXPECT_EQ(d.changed, std::vector<std::string>{"a"});
  EXPECT_EQ(d.added, std::vector<std::string>{"d"});
  EXPECT_EQ(d.removed, std::vector<std::string>{"c"});
  EXPECT_FALSE(d.same());
  EXPECT_TRUE(diff_definitions(before, before).same());
}

TEST(DiffDefinitions, ANameWithSeveralDefinitionsChangesWhenAnyDoes) {
  // A policy with "10/minute; 100/hour" has one definition per rate.
  Definitions before{{"route:api#0", "10/minute"}, {"route:api#0", "100/hour"}};
  Definitions after{{"route:api#0", "10/minute"}, {"route:api#0", "200/hour"}};
  EXPECT_EQ(diff_definitions(before, after).changed, std::vector<std::string>{"route:api#0"});
  EXPECT_EQ(diff_definitions(before, before).kept, std::vector<std::string>{"route:api#0"});
}

TEST(DiffDefinitions, JsonSummary) {
  DefinitionDiff d{{"a"}, {"b\"x"}, {}, {"c"}};
  EXPECT_EQ(diff_json(d), R"({"kept":["a"],"changed":["b\"x"],"added":[],"removed":["c"]})");
}

TEST(YamlBlocks, TopLevelAndNestedKeys) {
  const std::string yaml =
      "listen: 1\n"
      "limits:\n"
      "  a: 1\n"
      "  b:\n"
      "    - x\n"
      "routes:\n"
      "  - name: r\n";
  auto top = yaml_blocks(yaml, 0);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[1].first, "limits");
  EXPECT_EQ(top[1].second, "limits:\n  a: 1\n  b:\n    - x\n");
  EXPECT_EQ(top[2].second, "routes:\n  - name: r\n");
  auto nested = yaml_blocks(top[1].second, 2);
  ASSERT_EQ(nested.size(), 2u);
  EXPECT_EQ(nested[0], (std::pair<std::string, std::string>{"a", "  a: 1\n"}));
  EXPECT_EQ(nested[1].second, "  b:\n    - x\n");
}

TEST(RestartNeeded, ReloadableChangesPass) {
  auto running = load(kBase + kRoutes);
  auto next = load(
      kBase + "limits: {max_body_bytes: 1MiB}\ncors: {origins: [\"https://a.test\"]}\n" + kRoutes);
  EXPECT_EQ(restart_needed(running, next, filters::config_sections()), "");
  // Routes may change their definition.
  auto other = kRoutes;
  other.replace(other.find("100/hour"), 8, "200/hour");
  EXPECT_EQ(restart_needed(running, load(kBase + other), filters::config_sections()), "");
  // Turning rate limiting on from off is a reload (its store is the memory one either way).
  auto off = load(kBase + "rate_limit: null\n" + kRoutes);
  EXPECT_EQ(restart_needed(off, running, filters::config_sections()), "");
}

TEST(RestartNeeded, NamesTheKey) {
  auto running = load(kBase + kRoutes);
  auto refused = [&](const std::string& yaml) {
    return restart_needed(running, load(yaml), filters::config_sections());
  };
  EXPECT_EQ(refused(kBase + "listen: 127.0.0.1:9999\n" + kRoutes),
            "listen: changing it needs a restart; the running configuration stays in place");
  EXPECT_EQ(refused(kBase + "workers: 7\n" + kRoutes),
            "workers: changing it needs a restart; the running configuration stays in place");
  EXPECT_EQ(refused(kBase + "limits: {max_connections: 10}\n" + kRoutes),
            "limits.max_connections: changing it needs a restart; the running configuration "
            "stays in place");
  EXPECT_EQ(refused(kBase + "rate_limit: {limits: \"1/second\", max_keys: 10}\n" + kRoutes),
            "rate_limit.max_keys: changing it needs a restart; the running configuration stays "
            "in place");
  // Upstreams' targets are not among them (a reload builds a unit for a new definition).
  EXPECT_EQ(refused("upstreams:\n  app:\n    targets: [\"127.0.0.1:8001\"]\n" + kRoutes), "");
  EXPECT_EQ(refused(kBase + "log: {access: off}\n" + kRoutes),
            "log: changing it needs a restart; the running configuration stays in place");
}

// Upstreams reload whole: the cluster keys rebuild the workers' clusters, the unit fields pick
// (or build) another unit, and upstreams may be added, renamed, removed and reordered.
TEST(RestartNeeded, UpstreamsReload) {
  const std::string two =
      "upstreams:\n"
      "  app: {targets: [\"127.0.0.1:8000\"]}\n"
      "  other: {targets: [\"127.0.0.1:8002\"]}\n";
  auto running = load(two + kRoutes);
  auto check = [&](const std::string& upstreams) {
    return restart_needed(running, load(upstreams + kRoutes), filters::config_sections());
  };
  EXPECT_EQ(check("upstreams:\n"
                  "  app: {targets: [\"127.0.0.1:8000\"], timeout: 5s, per_try_timeout: 1s,\n"
                  "        max_connections: 10, queue_timeout: 1s, max_queued: 5,\n"
                  "        balance: least_request, keepalive_timeout: 5s, max_idle_per_target: 2,\n"
                  "        retry: {attempts: 3}}\n"
                  "  other: {targets: [\"127.0.0.1:8002\"]}\n"),
            "");
  for (const std::string change :
       {"connect_timeout: 1s", "health_check: {path: /healthz}", "outlier: {consecutive_5xx: 3}",
        "circuit_breaker: {failure_ratio: 0.5}", "targets: [\"127.0.0.1:8009\"]"}) {
    EXPECT_EQ(
        check("upstreams:\n  app: {targets: [\"127.0.0.1:8000\"]}\n  other: {" + change +
              (change.starts_with("targets") ? "" : ", targets: [\"127.0.0.1:8002\"]") + "}\n"),
        "")
        << change;
  }
  EXPECT_EQ(check("upstreams:\n  app: {targets: [\"127.0.0.1:8000\"]}\n"), "");
  EXPECT_EQ(check(two + "  extra: {targets: [\"127.0.0.1:8003\"]}\n"), "");
}

// A unit key is the name and the unit fields: what the cluster reads does not change it, each of
// the unit fields does, and the position in the file does not matter.
TEST(UpstreamUnitKeys, NameAndUnitFields) {
  auto keys = [](const std::string& upstreams) {
    return upstream_unit_keys(load(upstreams + kRoutes), filters::config_sections());
  };
  const auto base = keys(
      "upstreams:\n  app: {targets: [\"127.0.0.1:8000\"]}\n"
      "  other: {targets: [\"127.0.0.1:8002\"]}\n");
  ASSERT_EQ(base.size(), 2u);
  EXPECT_TRUE(base[0].starts_with("app\n"));
  EXPECT_TRUE(base[1].starts_with("other\n"));
  EXPECT_NE(base[0].find("127.0.0.1:8000"), std::string::npos);
  // Reordered, and cluster keys changed: the same keys.
  const auto moved = keys(
      "upstreams:\n  other: {targets: [\"127.0.0.1:8002\"], timeout: 3s, retry: {attempts: 2}}\n"
      "  app: {targets: [\"127.0.0.1:8000\"], balance: least_request}\n");
  EXPECT_EQ(moved, (std::vector<std::string>{base[1], base[0]}));
  // Each unit field makes another key.
  std::vector<std::string> seen{base[1]};
  for (const std::string change :
       {"connect_timeout: 1s", "health_check: {path: /healthz}", "outlier: {consecutive_5xx: 3}",
        "circuit_breaker: {failure_ratio: 0.5}", "resolve_interval: 5s", "max_addresses: 4"}) {
    auto k = keys("upstreams:\n  app: {targets: [\"127.0.0.1:8000\"]}\n  other: {" + change +
                  ", targets: [\"127.0.0.1:8002\"]}\n");
    ASSERT_EQ(k.size(), 2u);
    EXPECT_EQ(k[0], base[0]) << change;
    EXPECT_EQ(std::find(seen.begin(), seen.end(), k[1]), seen.end()) << change;
    seen.push_back(k[1]);
  }
  EXPECT_NE(keys("upstreams:\n  app: {targets: [\"127.0.0.1:8001\"]}\n"
                 "  other: {targets: [\"127.0.0.1:8002\"]}\n")[0],
            base[0]);
  // A renamed upstream with the same fields is another unit (its series carry its name).
  EXPECT_NE(keys("upstreams:\n  app: {targets: [\"127.0.0.1:8000\"]}\n"
                 "  other2: {targets: [\"127.0.0.1:8002\"]}\n")[1],
            base[1]);
}

// Route metrics are keyed by name (the gateway's slots), so the route list itself is reloadable.
TEST(RestartNeeded, RoutesMayBeAddedRemovedRenamedReordered) {
  auto running = load(kBase + kRoutes);
  auto passes = [&](const std::string& yaml) {
    return restart_needed(running, load(yaml), filters::config_sections());
  };
  auto api = kRoutes.substr(0, kRoutes.find("  - name: default"));
  auto fallback = kRoutes.substr(kRoutes.find("  - name: default"));
  EXPECT_EQ(passes(kBase + api), "");  // removed
  auto renamed = kRoutes;
  renamed.replace(renamed.find("name: api"), 9, "name: v2");
  EXPECT_EQ(passes(kBase + renamed), "");
  auto more = kRoutes;
  more.insert(more.find("  - name: default"),
              "  - name: extra\n    match: {path_prefix: /extra}\n    upstream: app\n");
  EXPECT_EQ(passes(kBase + more), "");
  auto d = diff_definitions(route_definitions(running, filters::config_sections()),
                            route_definitions(load(kBase + more), filters::config_sections()));
  EXPECT_EQ(d.added, std::vector<std::string>{"extra"});
  EXPECT_EQ(d.kept, (std::vector<std::string>{"api", "default"}));
  // Reordered: both definitions are kept (a route's block does not depend on its position).
  auto reordered = "routes:\n" + fallback + api.substr(std::string("routes:\n").size());
  EXPECT_EQ(passes(kBase + reordered), "");
  d = diff_definitions(route_definitions(running, filters::config_sections()),
                       route_definitions(load(kBase + reordered), filters::config_sections()));
  EXPECT_EQ(d.kept, (std::vector<std::string>{"default", "api"}));
  EXPECT_TRUE(d.same());
}

TEST(RouteDefinitions, OneBlockPerRoute) {
  auto defs = route_definitions(load(kBase + kRoutes), filters::config_sections());
  ASSERT_EQ(defs.size(), 2u);
  EXPECT_EQ(defs[0].first, "api");
  EXPECT_NE(defs[0].second.find("100/hour"), std::string::npos);
  EXPECT_EQ(defs[1].first, "default");
  EXPECT_EQ(defs[1].second.find("100/hour"), std::string::npos);
  auto up = upstream_definitions(load(kBase + kRoutes), filters::config_sections());
  ASSERT_EQ(up.size(), 1u);
  EXPECT_EQ(up[0].first, "app");
}

TEST(ParseConfigError, FileLineColumnKey) {
  auto p = parse_config_error("/etc/gh/a:b.yaml:12:5: routes[1].rate_limit.limits: bad \"x\": y");
  EXPECT_EQ(p.file, "/etc/gh/a:b.yaml");
  EXPECT_EQ(p.line, 12u);
  EXPECT_EQ(p.column, 5u);
  EXPECT_EQ(p.key, "routes[1].rate_limit.limits");
  EXPECT_EQ(p.message, "bad \"x\": y");
  auto yaml = parse_config_error("t.yaml:3:1: invalid YAML: end of map not found");
  EXPECT_EQ(yaml.line, 3u);
  EXPECT_EQ(yaml.key, "");
  EXPECT_EQ(yaml.message, "invalid YAML: end of map not found");
  auto plain = parse_config_error("t.yaml: cannot read: No such file or directory");
  EXPECT_EQ(plain.line, 0u);
  EXPECT_EQ(plain.message, "t.yaml: cannot read: No such file or directory");
}

// The limiter's definitions are what counters are keyed by: an unchanged block keeps its
// definition whatever else changes; changing its rate changes it.
TEST(RuleDefinitions, FollowTheLimiterKeys) {
  auto defs = [](const std::string& yaml) {
    auto cfg = load(yaml);
    filters::rate_limit::RateLimiter limiter(
        cfg, 1, std::make_shared<filters::rate_limit::SharedState>(100),
        std::make_shared<ratelimit::SteadyClock>());
    return limiter.rule_definitions();
  };
  auto before = defs(kBase + "rate_limit: {limits: \"5/second\"}\n" + kRoutes);
  auto other = kRoutes;
  other.replace(other.find("100/hour"), 8, "100/hour; 7/second");
  auto after = defs(kBase + "rate_limit: {limits: \"5/second\"}\n" + other);
  auto d = diff_definitions(before, after);
  EXPECT_EQ(d.kept, std::vector<std::string>{"defaults"});
  EXPECT_EQ(d.changed, std::vector<std::string>{"route:api#0"});
  // The unchanged rate of the changed policy keeps its definition (and so its counter).
  EXPECT_EQ(before[1], after[1]);
}

}  // namespace
}  // namespace gatehouse::config
