// `paths` and the configured paths that are matched against canonical request paths: route
// prefixes, rate_limit.exempt_paths and health paths are canonicalised at load, with the same
// function as requests, and a path canonicalisation refuses is a config error.
#include <gtest/gtest.h>

#include <string>

#include "config/config.hpp"
#include "config_test_util.hpp"
#include "filters/rate_limit/config.hpp"
#include "filters/registry.hpp"

namespace gatehouse::config {
namespace {

using testing::error_of;
using testing::kBase;

TEST(PathsConfig, Defaults) {
  auto c = load_config_string(kBase, "t.yaml", filters::config_sections());
  EXPECT_TRUE(c.paths.merge_slashes);
  EXPECT_EQ(c.paths.forward, PathForward::canonical);
}

TEST(PathsConfig, Values) {
  auto c = load_config_string(kBase + "paths: {merge_slashes: false, forward: original}\n", "t",
                              filters::config_sections());
  EXPECT_FALSE(c.paths.merge_slashes);
  EXPECT_EQ(c.paths.forward, PathForward::original);
}

const std::string kPaths =
    "routes:\n"
    "  - {name: a, match: {path_prefix: \"/%61pi//v1/caf\xc3\xa9/%7e\"}, upstream: app}\n"
    "  - {name: b, match: {path_prefix: \"/x%3a%2B[y]\"}, upstream: app}\n"
    "rate_limit: {limits: 1/second, exempt_paths: [\"//st%61tic//\", \"/p%2525\"]}\n"
    "health: {live_path: \"//l%69ve\", ready_path: \"/r%c3%a9\", summary_path: \"/s\"}\n";

TEST(PathsConfig, ConfiguredPathsAreCanonical) {
  auto c = load_config_string(kBase + kPaths, "t.yaml", filters::config_sections());
  EXPECT_EQ(c.routes[0].match.path_prefix, "/api/v1/caf%C3%A9/~");
  EXPECT_EQ(c.routes[1].match.path_prefix, "/x:+%5By%5D");
  EXPECT_EQ(filters::rate_limit::settings(c).defaults->exempt_paths,
            (std::vector<std::string>{"/static/", "/p%2525"}));
  EXPECT_EQ(c.health.live_path, "/live");
  EXPECT_EQ(c.health.ready_path, "/r%C3%A9");
}

TEST(PathsConfig, SlashesKeptWhenNotMerged) {
  auto c = load_config_string(kBase + kPaths + "paths: {merge_slashes: false}\n", "t.yaml",
                              filters::config_sections());
  EXPECT_EQ(c.routes[0].match.path_prefix, "/api//v1/caf%C3%A9/~");
  EXPECT_EQ(filters::rate_limit::settings(c).defaults->exempt_paths,
            (std::vector<std::string>{"//static//", "/p%2525"}));
  EXPECT_EQ(c.health.live_path, "//live");
}

TEST(PathsConfig, RouteBlocksInheritCanonicalExemptions) {
  auto c =
      load_config_string(kBase +
                             "rate_limit: {limits: 1/second, exempt_paths: [\"/a//%62\"]}\n"
                             "routes:\n"
                             "  - name: r\n"
                             "    upstream: app\n"
                             "    rate_limit: {limits: 2/second}\n"
                             "  - name: s\n"
                             "    upstream: app\n"
                             "    rate_limit: {limits: 3/second, exempt_paths: [\"//c%2e\"]}\n",
                         "t.yaml", filters::config_sections());
  EXPECT_EQ(filters::rate_limit::route_limits(c.routes[0]).blocks.at(0).exempt_paths,
            std::vector<std::string>{"/a/b"});
  EXPECT_EQ(filters::rate_limit::route_limits(c.routes[1]).blocks.at(0).exempt_paths,
            std::vector<std::string>{"/c."});
}

TEST(PathsConfig, Rejections) {
  struct Case {
    std::string yaml;
    std::string message;
  };
  const Case kCases[] = {
      {kBase + "paths: {merge_slashes: maybe}\n",
       "t.yaml:4:24: paths.merge_slashes: expected true or false, got \"maybe\""},
      {kBase + "paths: {forward: raw}\n",
       "t.yaml:4:18: paths.forward: invalid value \"raw\" (expected one of: canonical, original)"},
      {kBase + "paths: {merge: true}\n",
       "t.yaml:4:9: paths.merge: unknown key \"merge\"; allowed keys: merge_slashes, forward"},
      {kBase + "routes:\n  - {name: x, upstream: app, match: {path_prefix: /a%2fb}}\n",
       "t.yaml:5:51: routes[0].match.path_prefix: invalid path \"/a%2fb\": encoded slash in path"},
      {kBase + "routes:\n  - {name: x, upstream: app, match: {path_prefix: /a/../b}}\n",
       "t.yaml:5:51: routes[0].match.path_prefix: invalid path \"/a/../b\": dot segment in path"},
      {kBase + "routes:\n  - {name: x, upstream: app, match: {path_prefix: /a%2}}\n",
       "t.yaml:5:51: routes[0].match.path_prefix: invalid path \"/a%2\": bad percent-escape in "
       "path"},
      {kBase + "rate_limit: {limits: 1/second, exempt_paths: [\"/a\\\\b\"]}\n",
       "t.yaml:4:47: rate_limit.exempt_paths[0]: invalid path \"/a\\b\": backslash in path"},
      {kBase + "health: {live_path: \"/a%00\"}\n",
       "t.yaml:4:21: health.live_path: invalid path \"/a%00\": NUL in path"},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.yaml);
    EXPECT_EQ(error_of(c.yaml), c.message);
  }
}

}  // namespace
}  // namespace gatehouse::config
