// issue 15 (routes): match.path, `path:NAME` rate-limit key parts, log level in any case, and the
// memory store accepting (and ignoring) redis settings.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "config/config_test_util.hpp"
#include "filters/rate_limit/config.hpp"
#include "filters/registry.hpp"

namespace gatehouse::config {
namespace {

using filters::rate_limit::KeyPart;
using filters::rate_limit::OnStoreFailure;
using testing::expect_errors;
using testing::kBase;

Config load(const std::string& yaml) {
  return load_config_string(yaml, "t.yaml", filters::config_sections());
}

TEST(RoutesConfig, MatchPathIsStoredCanonical) {
  auto c = load(kBase + R"(routes:
  - {name: revise, match: {path: "/api/%73tories/{id}/revise", methods: [POST]}, upstream: app}
  - {name: landing, match: {path: /}, upstream: app}
  - {name: files, match: {path: "/files/{rest...}"}, upstream: app}
  - {name: default, match: {path_prefix: /}, upstream: app}
)");
  ASSERT_EQ(c.routes.size(), 4u);
  EXPECT_EQ(c.routes[0].match.path, "/api/stories/{id}/revise");
  EXPECT_EQ(c.routes[1].match.path, "/");
  EXPECT_EQ(c.routes[2].match.path, "/files/{rest...}");
  EXPECT_EQ(c.routes[3].match.path, "");
  EXPECT_EQ(c.routes[3].match.path_prefix, "/");
  // `gatehouse check` writes path instead of path_prefix, and its output loads the same.
  auto yaml = to_yaml(c, filters::config_sections());
  EXPECT_NE(yaml.find("path: /api/stories/{id}/revise\n"), std::string::npos) << yaml;
  auto again = load(yaml);
  for (std::size_t i = 0; i < c.routes.size(); ++i) {
    EXPECT_EQ(again.routes[i].match.path, c.routes[i].match.path);
    EXPECT_EQ(again.routes[i].match.path_prefix, c.routes[i].match.path_prefix);
  }
}

TEST(RoutesConfig, ShadowedTemplateGetsANote) {
  auto c = load(kBase + R"(routes:
  - {name: api, match: {path_prefix: /api/}, upstream: app}
  - {name: revise, match: {path: "/api/stories/{id}/revise"}, upstream: app}
  - {name: post-only, match: {path_prefix: /files/, methods: [POST]}, upstream: app}
  - {name: files, match: {path: "/files/{rest...}"}, upstream: app}
  - {name: health, match: {path: /health}, upstream: app}
)");
  // files is reached by GET: not shadowed; health is outside /api/.
  EXPECT_EQ(c.notes, (std::vector<std::string>{
                         "t.yaml:6:34: routes[1].match.path: never matches: routes[0] \"api\" "
                         "(path_prefix \"/api/\") comes first and takes every request it would "
                         "(the first match in file order wins: move this route above it)"}));
  auto fine = load(kBase + R"(routes:
  - {name: revise, match: {path: "/api/stories/{id}/revise"}, upstream: app}
  - {name: api, match: {path_prefix: /api/}, upstream: app}
)");
  EXPECT_TRUE(fine.notes.empty());
}

TEST(RoutesConfig, MatchPathErrors) {
  auto route = [](const std::string& match) {
    return kBase + "routes:\n  - name: r\n    upstream: app\n    match: " + match + "\n";
  };
  expect_errors({
      {route("{path: \"/a/{id\", methods: [GET]}"),
       "t.yaml:7:19: routes[0].match.path: unbalanced braces in segment \"{id\""},
      {route("{path: \"/a/{id}}\"}"),
       "t.yaml:7:19: routes[0].match.path: unbalanced braces in segment \"{id}}\""},
      {route("{path: \"/a/v{id}\"}"),
       "t.yaml:7:19: routes[0].match.path: a variable must fill a whole segment ({name} or "
       "{name...}), got \"v{id}\""},
      {route("{path: \"/a/{id}/b/{id}\"}"),
       "t.yaml:7:19: routes[0].match.path: duplicate variable \"id\""},
      {route("{path: \"/a/{rest...}/b\"}"),
       "t.yaml:7:19: routes[0].match.path: \"{rest...}\" must be the last segment"},
      {route("{path: \"/a/{}\"}"),
       "t.yaml:7:19: routes[0].match.path: invalid variable name \"\" (letters, digits and '_', "
       "not starting with a digit)"},
      {route("{path: \"/a/{my-id}\"}"),
       "t.yaml:7:19: routes[0].match.path: invalid variable name \"my-id\" (letters, digits and "
       "'_', not starting with a digit)"},
      {route("{path: /a//b}"),
       "t.yaml:7:19: routes[0].match.path: empty segment ('//') in \"/a//b\""},
      {route("{path: /a/../b}"),
       "t.yaml:7:19: routes[0].match.path: invalid path segment \"..\": dot segment in path"},
      {route("{path: api}"),
       "t.yaml:7:19: routes[0].match.path: must start with '/' (got \"api\")"},
      {route("{path_prefix: /api, path: /api/x}"),
       "t.yaml:7:38: routes[0].match.path: set either path or path_prefix, not both"},
      {route("{pth: /api}"),
       "t.yaml:7:13: routes[0].match.pth: unknown key \"pth\" (did you mean \"path\"?); allowed "
       "keys: path_prefix, path, methods, host"},
  });
}

TEST(RoutesConfig, PathKeyPart) {
  auto c = load(kBase + R"(routes:
  - name: revise
    match: {path: "/api/stories/{id}/revise"}
    upstream: app
    rate_limit: {key: [ip, "path:id"], limits: 20/hour}
  - {name: default, match: {path_prefix: /}, upstream: app}
)");
  const auto& limits = filters::rate_limit::route_limits(c.routes[0]);
  ASSERT_EQ(limits.blocks.size(), 1u);
  ASSERT_EQ(limits.blocks[0].key.size(), 2u);
  EXPECT_EQ(limits.blocks[0].key[1].kind, KeyPart::Kind::path);
  EXPECT_EQ(limits.blocks[0].key[1].text(), "path:id");
  auto again = load(to_yaml(c, filters::config_sections()));
  EXPECT_EQ(filters::rate_limit::route_limits(again.routes[0]).blocks[0].key, limits.blocks[0].key);
}

TEST(RoutesConfig, PathKeyPartErrors) {
  auto route = [](const std::string& path, const std::string& key) {
    return kBase + "routes:\n  - name: r\n    upstream: app\n    match: {path: \"" + path +
           "\"}\n    rate_limit: {limits: 1/second, key: " + key + "}\n";
  };
  expect_errors({
      {route("/api/stories/{id}", "[ip, \"path:story\"]"),
       "t.yaml:8:41: routes[0].rate_limit.key: key part \"path:story\": the route's match.path "
       "has no variable \"story\" (it has: id)"},
      {route("/api/health", "\"path:id\""),
       "t.yaml:8:41: routes[0].rate_limit.key: key part \"path:id\": the route's match.path has "
       "no variable \"id\" (it has no variables)"},
      {route("/a/{id}", "\"path:\""),
       "t.yaml:8:41: routes[0].rate_limit.key: invalid key \"path:\" (expected path:NAME, NAME a "
       "variable of the route's match.path)"},
      {route("/a/{id}", "[\"path:id\", \"path:id\"]"),
       "t.yaml:8:53: routes[0].rate_limit.key[1]: duplicate key part \"path:id\""},
      // A prefix route has no variables.
      {kBase + "routes:\n  - name: r\n    upstream: app\n    match: {path_prefix: /api}\n"
               "    rate_limit: {limits: 1/second, key: \"path:id\"}\n",
       "t.yaml:8:41: routes[0].rate_limit.key: key part \"path:id\": the route's match.path has "
       "no variable \"id\" (it has no variables)"},
      // The top-level block applies to routes whatever their paths: refused there.
      {kBase + "rate_limit: {limits: 1/second, key: [ip, \"path:id\"]}\n",
       "t.yaml:4:37: rate_limit.key: key part \"path:id\" is per route: set it in the rate_limit "
       "block of a route whose match.path has {id}"},
  });
}

TEST(RoutesConfig, LogLevelAnyCase) {
  for (auto [text, level] :
       std::vector<std::pair<std::string, std::string>>{{"INFO", "info"},
                                                        {"Warning", "warn"},
                                                        {"WARN", "warn"},
                                                        {"warning", "warn"},
                                                        {"Debug", "debug"},
                                                        {"CRITICAL", "critical"},
                                                        {"Off", "off"},
                                                        {"error", "error"}}) {
    SCOPED_TRACE(text);
    auto c = load(kBase + "log: {level: " + text + "}\n");
    EXPECT_EQ(c.log.level, level);
  }
}

TEST(RoutesConfig, MemoryStoreIgnoresRedisSettingsWithNotes) {
  auto yaml = kBase + R"(rate_limit:
  limits: 10/minute
  store: "${GH_TEST_REDIS_URL:-memory}"
  redis: {timeout: 20ms, pool: 2}
  on_store_failure: deny
)";
  ::unsetenv("GH_TEST_REDIS_URL");
  auto c = load(yaml);
  const auto& s = filters::rate_limit::settings(c);
  EXPECT_FALSE(s.redis.has_value());
  EXPECT_EQ(s.on_store_failure, OnStoreFailure::local);  // ignored: nothing to fail over from
  EXPECT_EQ(c.notes, (std::vector<std::string>{
                         "t.yaml:7:10: rate_limit.redis: redis settings ignored: the store is "
                         "memory",
                         "t.yaml:8:21: rate_limit.on_store_failure: on_store_failure ignored: the "
                         "store is memory"}));
  // check's output has no redis block, and loads again without notes.
  auto emitted = to_yaml(c, filters::config_sections());
  EXPECT_EQ(emitted.find("on_store_failure"), std::string::npos);
  EXPECT_TRUE(load(emitted).notes.empty());

  // The same file in production.
  ::setenv("GH_TEST_REDIS_URL", "redis://10.0.0.5:6380", 1);
  auto p = load(yaml);
  ::unsetenv("GH_TEST_REDIS_URL");
  const auto& ps = filters::rate_limit::settings(p);
  ASSERT_TRUE(ps.redis.has_value());
  EXPECT_EQ(ps.redis->pool, 2u);
  EXPECT_EQ(ps.on_store_failure, OnStoreFailure::deny);
  EXPECT_TRUE(p.notes.empty());
}

}  // namespace
}  // namespace gatehouse::config
