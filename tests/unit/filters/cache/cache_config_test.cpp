// The cache section: defaults, routes[].cache, round trip, and rejections with file:line:col.
#include <gtest/gtest.h>

#include "config/config.hpp"
#include "config/config_test_util.hpp"
#include "filters/cache/config.hpp"
#include "filters/registry.hpp"

namespace gatehouse::filters::cache {
namespace {

using namespace std::chrono_literals;
using config::testing::error_of;
using config::testing::kBase;

// Each snippet (after kBase) must be rejected with a message that starts as given.
void expect_errors(const std::vector<config::testing::Case>& cases) {
  for (const auto& c : cases) {
    SCOPED_TRACE(c.yaml);
    auto e = error_of(kBase + c.yaml);
    EXPECT_EQ(e.substr(0, c.message.size()), c.message) << e;
  }
}

config::Config load(const std::string& yaml) {
  return config::load_config_string(kBase + yaml, "t.yaml", config_sections());
}

TEST(CacheConfig, OffWithoutAnyCache) {
  auto c = load("");
  EXPECT_FALSE(settings(c).enabled);
  EXPECT_EQ(route_cache(c.routes[0]), nullptr);
}

TEST(CacheConfig, ARouteCacheTurnsTheStoreOnWithDefaults) {
  auto c = load(
      "routes:\n"
      "  - {name: a, upstream: app, cache: {ttl: 60s}}\n");
  EXPECT_TRUE(settings(c).enabled);
  EXPECT_EQ(settings(c).max_memory, 256u << 20);
  EXPECT_EQ(settings(c).max_object, 8u << 20);
  EXPECT_EQ(settings(c).header, "X-Cache");
  const auto* rc = route_cache(c.routes[0]);
  ASSERT_NE(rc, nullptr);
  EXPECT_EQ(rc->ttl, 60s);
  EXPECT_EQ(rc->statuses, (std::vector<unsigned>{200, 203, 204, 301, 404}));
  EXPECT_EQ(rc->max_waiters, 100u);
  EXPECT_FALSE(rc->keys_body());
}

const std::string kFull =
    "cache: {max_memory: 64MiB, max_object: 1MiB, header: X-Gw-Cache}\n"
    "routes:\n"
    "  - name: slugs\n"
    "    match: {path_prefix: /api/slugs/, methods: [GET]}\n"
    "    upstream: app\n"
    "    cache: {ttl: 60s, stale_while_revalidate: 30s, stale_if_error: 10m,\n"
    "            statuses: [200, 404], ignore_cache_control: true, allow_client_bypass: true,\n"
    "            max_waiters: 5}\n"
    "  - name: complete\n"
    "    match: {path_prefix: /api/complete, methods: [POST]}\n"
    "    upstream: app\n"
    "    cache: {ttl: 1h, key: [method, path, query, body, \"header:X-Model\"]}\n";

TEST(CacheConfig, EveryKeyAndRoundTrip) {
  auto c = load(kFull);
  EXPECT_EQ(settings(c).max_memory, 64u << 20);
  EXPECT_EQ(settings(c).max_object, 1u << 20);
  EXPECT_EQ(settings(c).header, "X-Gw-Cache");
  const auto* slugs = route_cache(c.routes[0]);
  EXPECT_EQ(slugs->stale_while_revalidate, 30s);
  EXPECT_EQ(slugs->stale_if_error, 10min);
  EXPECT_TRUE(slugs->ignore_cache_control);
  EXPECT_TRUE(slugs->allow_client_bypass);
  EXPECT_EQ(slugs->max_waiters, 5u);
  const auto* complete = route_cache(c.routes[1]);
  EXPECT_TRUE(complete->keys_body());
  EXPECT_TRUE(complete->keys_header("x-model"));

  std::string emitted = config::to_yaml(c, config_sections());
  SCOPED_TRACE(emitted);
  auto again = config::load_config_string(emitted, "emitted.yaml", config_sections());
  EXPECT_EQ(settings(again), settings(c));
  EXPECT_EQ(*route_cache(again.routes[0]), *slugs);
  EXPECT_EQ(*route_cache(again.routes[1]), *complete);
  EXPECT_EQ(config::to_yaml(again, config_sections()), emitted);
}

TEST(CacheConfig, Rejections) {
  const std::string route =
      "routes:\n"
      "  - name: a\n"
      "    upstream: app\n";
  expect_errors({
      {route + "    cache: {}\n", "t.yaml:7:12: routes[0].cache.ttl: required key is missing"},
      {route + "    cache: {ttl: 0s}\n",
       "t.yaml:7:18: routes[0].cache.ttl: must be greater than 0"},
      {route + "    cache: {ttl: 1m, key: [method, cookie]}\n",
       "t.yaml:7:36: routes[0].cache.key[1]: unknown cache key part \"cookie\""},
      {route + "    cache: {ttl: 1m, key: [\"header:\"]}\n",
       "t.yaml:7:28: routes[0].cache.key[0]: invalid header name"},
      {route + "    cache: {ttl: 1m, statuses: [206]}\n",
       "t.yaml:7:33: routes[0].cache.statuses[0]: status 206 cannot be stored"},
      {route + "    cache: {ttl: 1m, colour: red}\n",
       "t.yaml:7:22: routes[0].cache.colour: unknown key \"colour\""},
      {"routes:\n  - name: a\n    upstream: app\n    match: {methods: [POST]}\n"
       "    cache: {ttl: 1m}\n",
       "t.yaml:8:12: routes[0].cache: a route matching POST must have `body` in its cache key"},
      {"cache: {max_memory: 1KiB}\n", "t.yaml:4:21: cache.max_memory: must be at least 64KiB"},
      {"cache: {max_memory: 1MiB, max_object: 1MiB}\n",
       "t.yaml:4:39: cache.max_object: must be at most max_memory / 16"},
      {"cache: {header: \"X Cache\"}\n", "t.yaml:4:17: cache.header: invalid header name"},
  });
}

}  // namespace
}  // namespace gatehouse::filters::cache
