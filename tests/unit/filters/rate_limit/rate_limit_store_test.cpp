// `rate_limit.store`, `redis` and `on_store_failure`: parsing, defaults, exact rejections and the
// redacted round trip of `gatehouse check`.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/config.hpp"
#include "config/config_test_util.hpp"
#include "filters/rate_limit/config.hpp"
#include "filters/registry.hpp"
#include "redis/url.hpp"

namespace gatehouse::config {
namespace {

using namespace std::chrono_literals;
using filters::rate_limit::OnStoreFailure;
using testing::error_of;
using testing::kBase;

Config load(const std::string& yaml) {
  return load_config_string(yaml, "t.yaml", filters::config_sections());
}

TEST(RateLimitStore, MemoryByDefault) {
  auto c = load(kBase + "rate_limit: {limits: 10/minute}\n");
  EXPECT_FALSE(filters::rate_limit::settings(c).redis.has_value());
  auto m = load(kBase + "rate_limit: {limits: 10/minute, store: memory}\n");
  EXPECT_FALSE(filters::rate_limit::settings(m).redis.has_value());
}

TEST(RateLimitStore, RedisWithOptions) {
  auto c = load(kBase + R"(rate_limit:
  limits: 100/minute
  store: "redis://:s3cret@10.0.0.5:6380/2"
  redis: {timeout: 20ms, pool: 4, key_prefix: "app1:", breaker_failures: 5, breaker_cooldown: 2s}
  on_store_failure: deny
)");
  ASSERT_TRUE(filters::rate_limit::settings(c).redis.has_value());
  const auto& r = *filters::rate_limit::settings(c).redis;
  EXPECT_EQ(r.url.host, "10.0.0.5");
  EXPECT_EQ(r.url.port, 6380);
  EXPECT_EQ(r.url.password, "s3cret");
  EXPECT_EQ(r.url.username, "");
  EXPECT_EQ(r.url.db, 2u);
  EXPECT_EQ(r.timeout, 20ms);
  EXPECT_EQ(r.pool, 4u);
  EXPECT_EQ(r.key_prefix, "app1:");
  EXPECT_FALSE(r.cluster);
  EXPECT_EQ(r.breaker_failures, 5u);
  EXPECT_EQ(r.breaker_cooldown, 2000ms);
  EXPECT_EQ(filters::rate_limit::settings(c).on_store_failure, OnStoreFailure::deny);
}

TEST(RateLimitStore, Defaults) {
  auto c = load(kBase + "rate_limit: {limits: 1/second, store: \"redis://127.0.0.1\"}\n");
  const auto& r = *filters::rate_limit::settings(c).redis;
  EXPECT_EQ(r.url.port, 6379);
  EXPECT_EQ(r.timeout, 50ms);
  EXPECT_EQ(r.pool, 1u);
  EXPECT_EQ(r.key_prefix, "gatehouse:");
  EXPECT_EQ(r.breaker_failures, 3u);
  EXPECT_EQ(r.breaker_cooldown, 1000ms);
  EXPECT_EQ(filters::rate_limit::settings(c).on_store_failure, OnStoreFailure::local);
}

TEST(RateLimitStore, PasswordFromTheEnvironment) {
  ::setenv("GH_TEST_REDIS_PASSWORD", "p@ss:word", 1);
  auto c = load(kBase +
                "rate_limit: {limits: 1/second, store: \"redis://:${GH_TEST_REDIS_PASSWORD}"
                "@127.0.0.1:6379/0\"}\n");
  // The last '@' ends the user information, so a password may contain '@' and ':'.
  EXPECT_EQ(filters::rate_limit::settings(c).redis->url.password, "p@ss:word");
  ::unsetenv("GH_TEST_REDIS_PASSWORD");
}

TEST(RateLimitStore, EmitHidesThePasswordAndRoundTrips) {
  auto c = load(kBase + R"(rate_limit:
  limits: 100/minute
  store: "redis://user:s3cret@127.0.0.1:6379/0"
  redis: {cluster: true}
)");
  auto text = to_yaml(c, filters::config_sections());
  EXPECT_EQ(text.find("s3cret"), std::string::npos) << text;
  EXPECT_NE(text.find("store: redis://user:***@127.0.0.1:6379/0"), std::string::npos) << text;
  EXPECT_NE(text.find("on_store_failure: local"), std::string::npos) << text;
  auto again = load_config_string(text, "emitted.yaml", filters::config_sections());
  EXPECT_EQ(to_yaml(again, filters::config_sections()), text);
  EXPECT_TRUE(filters::rate_limit::settings(again).redis->cluster);
}

TEST(RateLimitStore, Errors) {
  struct Case {
    std::string yaml;
    std::string message;
  };
  const std::vector<Case> cases{
      {kBase + "rate_limit: {limits: 1/second, store: redis}\n",
       "t.yaml:4:39: rate_limit.store: expected memory or "
       "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]"},
      {kBase + "rate_limit: {limits: 1/second, store: \"redis://127.0.0.1:99999\"}\n",
       "t.yaml:4:39: rate_limit.store: invalid port \"99999\" (expected 1-65535)"},
      {kBase + "rate_limit: {limits: 1/second, store: \"redis://127.0.0.1:6379/x\"}\n",
       "t.yaml:4:39: rate_limit.store: invalid database index \"x\" (expected a number)"},
      {kBase + "rate_limit: {limits: 1/second, store: \"redis://:6379\"}\n",
       "t.yaml:4:39: rate_limit.store: the host is missing"},
      // With the memory store they are ignored, but still read: a typo fails.
      {kBase + "rate_limit: {limits: 1/second, redis: {pool: 0}}\n",
       "t.yaml:4:46: rate_limit.redis.pool: invalid value \"0\" (expected an integer from 1 to "
       "64)"},
      {kBase + "rate_limit: {limits: 1/second, redis: {pol: 2}}\n",
       "t.yaml:4:40: rate_limit.redis.pol: unknown key \"pol\" (did you mean \"pool\"?); allowed "
       "keys: "
       "timeout, pool, key_prefix, cluster, breaker_failures, breaker_cooldown"},
      {kBase + "rate_limit: {limits: 1/second, on_store_failure: maybe}\n",
       "t.yaml:4:50: rate_limit.on_store_failure: invalid value \"maybe\" (expected one of: "
       "local, allow, deny)"},
      {kBase + "rate_limit: {limits: 1/second, store: \"redis://h\", on_store_failure: maybe}\n",
       "t.yaml:4:70: rate_limit.on_store_failure: invalid value \"maybe\" (expected one of: "
       "local, allow, deny)"},
      {kBase + "rate_limit: {limits: 1/second, store: \"redis://h\", redis: {pool: 0}}\n",
       "t.yaml:4:66: rate_limit.redis.pool: invalid value \"0\" (expected an integer from 1 to "
       "64)"},
      {kBase + "rate_limit: {limits: 1/second, store: \"redis://h\", redis: {timeout: 0s}}\n",
       "t.yaml:4:69: rate_limit.redis.timeout: must be greater than 0"},
      {kBase + "rate_limit: {limits: 1/second, store: \"redis://h\", redis: {timeout: 2m}}\n",
       "t.yaml:4:69: rate_limit.redis.timeout: at most 60s (a decision waits this long before "
       "falling back)"},
      {kBase + "rate_limit: {limits: 1/second, store: \"redis://h\", redis: {key_prefix: "
               "\"a{b}\"}}\n",
       "t.yaml:4:72: rate_limit.redis.key_prefix: must not contain { or } (they delimit Redis "
       "Cluster hash tags)"},
      {kBase + "rate_limit: {limits: 1/second, store: \"redis://h/3\", redis: {cluster: true}}\n",
       "t.yaml:4:39: rate_limit.store: Redis Cluster has only database 0"},
      {kBase + "rate_limit: {limits: 1/second, store: \"redis://h\", redis: {tiemout: 1s}}\n",
       "t.yaml:4:60: rate_limit.redis.tiemout: unknown key \"tiemout\" (did you mean "
       "\"timeout\"?); allowed keys: timeout, pool, key_prefix, cluster, breaker_failures, "
       "breaker_cooldown"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.yaml);
    EXPECT_EQ(error_of(c.yaml), c.message);
  }
}

}  // namespace
}  // namespace gatehouse::config
