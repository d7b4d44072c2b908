#include "core/router.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace gatehouse::core {
namespace {

config::Route route(std::string name, std::string prefix, std::vector<std::string> methods = {},
                    std::string host = {}) {
  config::Route r;
  r.name = std::move(name);
  r.match.path_prefix = std::move(prefix);
  r.match.methods = std::move(methods);
  r.match.host = std::move(host);
  r.upstream = "app";
  return r;
}

config::Config config_with(std::vector<config::Route> routes) {
  config::Config cfg;
  cfg.routes = std::move(routes);
  return cfg;
}

TEST(Router, FirstMatchInFileOrderWins) {
  auto cfg = config_with(
      {route("generate", "/api/generate"), route("api", "/api"), route("default", "/")});
  Router router(cfg);
  EXPECT_EQ(router.match("GET", "/api/generate/x", "h"), std::optional<std::size_t>(0));
  EXPECT_EQ(router.match("GET", "/api/other", "h"), std::optional<std::size_t>(1));
  EXPECT_EQ(router.match("GET", "/", "h"), std::optional<std::size_t>(2));
  EXPECT_EQ(router.match("GET", "/static/a.css", "h"), std::optional<std::size_t>(2));
}

TEST(Router, BroadRouteFirstShadowsLaterOnes) {
  auto cfg = config_with({route("default", "/"), route("api", "/api")});
  Router router(cfg);
  EXPECT_EQ(router.match("GET", "/api/x", "h"), std::optional<std::size_t>(0));
}

TEST(Router, PrefixIsPlainStringPrefix) {
  auto cfg = config_with({route("api", "/api")});
  Router router(cfg);
  EXPECT_EQ(router.match("GET", "/api", "h"), std::optional<std::size_t>(0));
  EXPECT_EQ(router.match("GET", "/apix", "h"), std::optional<std::size_t>(0));
  EXPECT_EQ(router.match("GET", "/ap", "h"), std::nullopt);
  EXPECT_EQ(router.match("GET", "/API", "h"), std::nullopt);  // paths are case-sensitive
  EXPECT_EQ(router.match("GET", "", "h"), std::nullopt);
}

TEST(Router, MethodsFilter) {
  auto cfg =
      config_with({route("generate", "/api/generate", {"POST", "PUT"}), route("fallback", "/api")});
  Router router(cfg);
  EXPECT_EQ(router.match("POST", "/api/generate", "h"), std::optional<std::size_t>(0));
  EXPECT_EQ(router.match("PUT", "/api/generate", "h"), std::optional<std::size_t>(0));
  EXPECT_EQ(router.match("GET", "/api/generate", "h"), std::optional<std::size_t>(1));
  // Methods are case-sensitive tokens (RFC 9110 section 9.1).
  EXPECT_EQ(router.match("post", "/api/generate", "h"), std::optional<std::size_t>(1));
}

TEST(Router, MethodsFilterWithoutFallbackIsNoMatch) {
  auto cfg = config_with({route("generate", "/api/generate", {"POST"})});
  Router router(cfg);
  EXPECT_EQ(router.match("GET", "/api/generate", "h"), std::nullopt);
}

TEST(Router, HostFilterIgnoresPortAndCase) {
  auto cfg = config_with({route("example", "/", {}, "example.com"), route("v6", "/", {}, "[::1]")});
  Router router(cfg);
  EXPECT_EQ(router.match("GET", "/", "example.com"), std::optional<std::size_t>(0));
  EXPECT_EQ(router.match("GET", "/", "example.com:8080"), std::optional<std::size_t>(0));
  EXPECT_EQ(router.match("GET", "/", "EXAMPLE.com"), std::optional<std::size_t>(0));
  EXPECT_EQ(router.match("GET", "/", "Example.COM:443"), std::optional<std::size_t>(0));
  EXPECT_EQ(router.match("GET", "/", "[::1]:8080"), std::optional<std::size_t>(1));
  EXPECT_EQ(router.match("GET", "/", "[::1]"), std::optional<std::size_t>(1));
  EXPECT_EQ(router.match("GET", "/", "other.com"), std::nullopt);
  EXPECT_EQ(router.match("GET", "/", "www.example.com"), std::nullopt);
  EXPECT_EQ(router.match("GET", "/", "example.com.evil"), std::nullopt);
  EXPECT_EQ(router.match("GET", "/", ""), std::nullopt);
}

TEST(Router, AllConditionsMustMatch) {
  auto cfg =
      config_with({route("gen", "/api/generate", {"POST"}, "example.com"), route("default", "/")});
  Router router(cfg);
  EXPECT_EQ(router.match("POST", "/api/generate", "example.com:80"), std::optional<std::size_t>(0));
  EXPECT_EQ(router.match("GET", "/api/generate", "example.com"), std::optional<std::size_t>(1));
  EXPECT_EQ(router.match("POST", "/api/generate", "other.com"), std::optional<std::size_t>(1));
  EXPECT_EQ(router.match("POST", "/api/other", "example.com"), std::optional<std::size_t>(1));
}

TEST(Router, QueryStringIgnored) {
  auto cfg = config_with({route("exact", "/search"), route("q", "/x?debug")});
  Router router(cfg);
  EXPECT_EQ(router.match("GET", "/search?q=1", "h"), std::optional<std::size_t>(0));
  EXPECT_EQ(router.match("GET", "/search?", "h"), std::optional<std::size_t>(0));
  // The query is cut before matching, so a prefix containing '?' never matches.
  EXPECT_EQ(router.match("GET", "/x?debug=1", "h"), std::nullopt);
  // A '?' that starts the query must not let the prefix match inside the query.
  EXPECT_EQ(router.match("GET", "/?/search", "h"), std::nullopt);
}

TEST(Router, NoRoutesNoMatch) {
  auto cfg = config_with({});
  Router router(cfg);
  EXPECT_EQ(router.match("GET", "/", "h"), std::nullopt);
}

TEST(Router, NoMatchIsNullopt) {
  auto cfg = config_with({route("api", "/api"), route("admin", "/admin", {"GET"})});
  Router router(cfg);
  EXPECT_EQ(router.match("GET", "/other", "h"), std::nullopt);
  EXPECT_EQ(router.match("POST", "/admin", "h"), std::nullopt);
}

TEST(HostWithoutPort, Forms) {
  EXPECT_EQ(host_without_port("example.com:8080"), "example.com");
  EXPECT_EQ(host_without_port("example.com"), "example.com");
  EXPECT_EQ(host_without_port("[::1]:80"), "[::1]");
  EXPECT_EQ(host_without_port("[::1]"), "[::1]");
  EXPECT_EQ(host_without_port("127.0.0.1:9"), "127.0.0.1");
  EXPECT_EQ(host_without_port(""), "");
  EXPECT_EQ(host_without_port("[::1"), "[::1");
}

}  // namespace
}  // namespace gatehouse::core
