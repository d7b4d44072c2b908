// cache.shared and cache.shared_channel (issue 14): read inside the cache section, written back
// by `gatehouse check` with the password redacted, rejections with file:line:col and key.
#include <gtest/gtest.h>

#include <string>

#include "config/config.hpp"
#include "config/config_test_util.hpp"
#include "filters/cache_bus/config.hpp"
#include "filters/registry.hpp"

namespace gatehouse::filters::cache_bus {
namespace {

using config::testing::expect_errors;
using config::testing::kBase;

config::Config load(const std::string& yaml) {
  return config::load_config_string(kBase + yaml, "t.yaml", config_sections());
}

TEST(CacheBusConfig, OffByDefault) {
  EXPECT_FALSE(settings(config::Config{}).url);
  EXPECT_FALSE(settings(load("")).url);
  EXPECT_FALSE(settings(load("cache: {header: X-Cache}\n")).url);
  EXPECT_FALSE(settings(load("cache: {shared: off}\n")).url);
  auto emitted = config::to_yaml(load("cache: {header: X-Cache}\n"), config_sections());
  EXPECT_NE(emitted.find("  shared: off\n"), std::string::npos) << emitted;
}

TEST(CacheBusConfig, UrlChannelAndRoundTrip) {
  auto c = load("cache: {shared: \"redis://:s3cret@10.0.0.5:6380/3\"}\n");
  const auto& s = settings(c);
  ASSERT_TRUE(s.url);
  EXPECT_EQ(s.url->host, "10.0.0.5");
  EXPECT_EQ(s.url->port, 6380);
  EXPECT_EQ(s.url->db, 3u);
  EXPECT_EQ(s.url->password, "s3cret");
  EXPECT_EQ(s.channel, "gatehouse:cache:invalidate:3");  // pub/sub ignores the database
  auto emitted = config::to_yaml(c, config_sections());
  EXPECT_NE(emitted.find("  shared: redis://:***@10.0.0.5:6380/3\n  shared_channel: "
                         "gatehouse:cache:invalidate:3\n"),
            std::string::npos)
      << emitted;
  EXPECT_EQ(emitted.find("s3cret"), std::string::npos);

  auto named = load("cache:\n  shared: redis://127.0.0.1\n  shared_channel: app1:purge\n");
  EXPECT_EQ(settings(named).channel, "app1:purge");
  auto again = config::load_config_string(config::to_yaml(named, config_sections()), "check.yaml",
                                          config_sections());
  EXPECT_EQ(settings(again), settings(named));
}

TEST(CacheBusConfig, Rejections) {
  expect_errors({
      {kBase + "cache: {shared: \"http://127.0.0.1\"}\n",
       "t.yaml:4:17: cache.shared: expected off or redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]"},
      {kBase + "cache: {shared: \"redis://127.0.0.1:99999\"}\n",
       "t.yaml:4:17: cache.shared: invalid port \"99999\" (expected 1-65535)"},
      {kBase + "cache: {shared_channel: x}\n",
       "t.yaml:4:25: cache.shared_channel: needs shared: redis://HOST:PORT/DB"},
      {kBase + "cache: {shared: redis://127.0.0.1, shared_channel: \"a b\"}\n",
       "t.yaml:4:52: cache.shared_channel: must be printable ASCII without blanks (got \"a b\")"},
      {kBase + "cache: {shared: redis://127.0.0.1, shared_channel: \"\"}\n",
       "t.yaml:4:52: cache.shared_channel: must be 1 to 128 characters"},
      {kBase + "cache: {sharde: redis://127.0.0.1}\n",
       "t.yaml:4:9: cache.sharde: unknown key \"sharde\" (did you mean \"shared\"?); allowed keys: "
       "max_memory, max_object, header, shared, shared_channel"},
  });
}

}  // namespace
}  // namespace gatehouse::filters::cache_bus
