// match.path (exact paths and templates) beside path_prefix: issue 15, route matching.
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "config/path_template.hpp"
#include "core/router.hpp"
#include "http/canonical_path.hpp"

namespace gatehouse::core {
namespace {

using Idx = std::optional<std::size_t>;

config::Route prefix(std::string name, std::string p, std::vector<std::string> methods = {},
                     std::string host = {}) {
  config::Route r;
  r.name = std::move(name);
  r.match.path_prefix = std::move(p);
  r.match.methods = std::move(methods);
  r.match.host = std::move(host);
  r.upstream = "app";
  return r;
}

config::Route path(std::string name, std::string p, std::vector<std::string> methods = {},
                   std::string host = {}) {
  auto r = prefix(std::move(name), "/", std::move(methods), std::move(host));
  auto parsed = config::parse_path_template(p);
  EXPECT_EQ(parsed.error, "") << p;
  r.match.path = config::template_text(parsed);
  return r;
}

config::Config config_with(std::vector<config::Route> routes) {
  config::Config cfg;
  cfg.routes = std::move(routes);
  return cfg;
}

TEST(RouterPath, ExactPathMatchesOnlyItself) {
  auto cfg = config_with({path("health", "/api/health"), path("root", "/")});
  Router router(cfg);
  EXPECT_EQ(router.match("GET", "/api/health", "h"), Idx(0));
  EXPECT_EQ(router.match("GET", "/api/health?x=1", "h"), Idx(0));
  EXPECT_EQ(router.match("GET", "/api/health/", "h"), std::nullopt);
  EXPECT_EQ(router.match("GET", "/api/healthz", "h"), std::nullopt);
  EXPECT_EQ(router.match("GET", "/api/health/x", "h"), std::nullopt);
  EXPECT_EQ(router.match("GET", "/api", "h"), std::nullopt);
  EXPECT_EQ(router.match("GET", "/", "h"), Idx(1));
  EXPECT_EQ(router.match("GET", "/?q", "h"), Idx(1));
  EXPECT_EQ(router.match("GET", "/x", "h"), std::nullopt);
  EXPECT_EQ(router.match("GET", "", "h"), std::nullopt);
}

TEST(RouterPath, ExemptExactlyRootBeforeCatchAll) {
  // The case: `/` alone (a landing page) gets its own route, everything else the default.
  auto cfg = config_with({path("landing", "/"), prefix("default", "/")});
  Router router(cfg);
  EXPECT_EQ(router.match("GET", "/", "h"), Idx(0));
  EXPECT_EQ(router.match("GET", "/index.html", "h"), Idx(1));
  EXPECT_EQ(router.match("GET", "//", "h"), Idx(1));  // paths.merge_slashes: false
}

TEST(RouterPath, TemplateCapturesOneSegment) {
  auto cfg = config_with({path("revise", "/api/stories/{id}/revise"),
                          path("story", "/api/stories/{id}"), prefix("api", "/api/")});
  Router router(cfg);
  PathParams params;
  EXPECT_EQ(router.match("POST", "/api/stories/42/revise", "h", params), Idx(0));
  ASSERT_EQ(params.size, 1u);
  EXPECT_EQ(params.get("id"), std::optional<std::string_view>("42"));
  EXPECT_EQ(params.get("other"), std::nullopt);
  EXPECT_EQ(router.match("GET", "/api/stories/abc-1", "h", params), Idx(1));
  EXPECT_EQ(params.get("id"), std::optional<std::string_view>("abc-1"));
  // Not one segment: falls through to the prefix route, with no variables.
  EXPECT_EQ(router.match("GET", "/api/stories/1/2/revise", "h", params), Idx(2));
  EXPECT_EQ(params.size, 0u);
  EXPECT_EQ(router.match("GET", "/api/stories/42/revise/", "h", params), Idx(2));
  EXPECT_EQ(router.match("GET", "/api/stories", "h", params), Idx(2));
  EXPECT_EQ(router.match("GET", "/api/stories/", "h", params), Idx(2));  // {id} is never empty
  EXPECT_EQ(router.match("GET", "/api/stories//revise", "h", params), Idx(2));
  EXPECT_EQ(router.match("GET", "/apix/stories/1", "h", params), std::nullopt);
}

TEST(RouterPath, PercentEncodedAndDotSegmentsGoThroughTheCanonicalPath) {
  auto cfg = config_with({path("revise", "/api/stories/{id}/revise"), prefix("default", "/")});
  Router router(cfg);
  auto route_of = [&](std::string_view raw) -> Idx {
    auto c = http::canonical_path(raw, true);
    if (!c.reason.empty()) {
      return std::nullopt;  // refused with 400 before routing
    }
    return router.match("POST", c.view(raw), "h");
  };
  // What Flask sees as /api/stories/1/revise is routed as such.
  EXPECT_EQ(route_of("/api/stories/1/%72evise"), Idx(0));
  EXPECT_EQ(route_of("/api/%73tories/1/revise"), Idx(0));
  EXPECT_EQ(route_of("/api//stories/1/revise"), Idx(0));  // merged slashes
  // An encoded slash or a dot segment never reaches the router: the session refuses it.
  EXPECT_EQ(route_of("/api/stories/1%2F2/revise"), std::nullopt);
  EXPECT_EQ(route_of("/api/stories/../stories/1/revise"), std::nullopt);
  EXPECT_EQ(route_of("/api/stories/%2e%2e/revise"), std::nullopt);
  // A literal segment written encoded in the config is canonical too.
  auto cfg2 = config_with({path("revise", "/api/stories/{id}/%72evise")});
  Router router2(cfg2);
  EXPECT_EQ(router2.match("POST", "/api/stories/1/revise", "h"), Idx(0));
}

TEST(RouterPath, RestCapturesTheRemainderPossiblyEmpty) {
  auto cfg = config_with({path("files", "/files/{path...}"), path("all", "/{rest...}")});
  Router router(cfg);
  PathParams params;
  EXPECT_EQ(router.match("GET", "/files/a/b.txt", "h", params), Idx(0));
  EXPECT_EQ(params.get("path"), std::optional<std::string_view>("a/b.txt"));
  EXPECT_EQ(router.match("GET", "/files/", "h", params), Idx(0));
  EXPECT_EQ(params.get("path"), std::optional<std::string_view>(""));
  // "/files" has no segment for the rest: the catch-all template takes it.
  EXPECT_EQ(router.match("GET", "/files", "h", params), Idx(1));
  EXPECT_EQ(params.get("rest"), std::optional<std::string_view>("files"));
  EXPECT_EQ(router.match("GET", "/", "h", params), Idx(1));
  EXPECT_EQ(params.get("rest"), std::optional<std::string_view>(""));
}

TEST(RouterPath, SeveralVariablesAndLiteralsAtTheSameDepth) {
  auto cfg = config_with({path("a", "/u/{user}/posts/{post}"), path("b", "/u/me/posts/latest"),
                          path("c", "/u/{user}/{rest...}")});
  Router router(cfg);
  PathParams params;
  EXPECT_EQ(router.match("GET", "/u/ann/posts/7", "h", params), Idx(0));
  ASSERT_EQ(params.size, 2u);
  EXPECT_EQ(params.get("user"), std::optional<std::string_view>("ann"));
  EXPECT_EQ(params.get("post"), std::optional<std::string_view>("7"));
  // File order, not specificity: route a (earlier) wins over the literal route b.
  EXPECT_EQ(router.match("GET", "/u/me/posts/latest", "h", params), Idx(0));
  EXPECT_EQ(params.get("post"), std::optional<std::string_view>("latest"));
  EXPECT_EQ(router.match("GET", "/u/ann/likes/x", "h", params), Idx(2));
  EXPECT_EQ(params.get("rest"), std::optional<std::string_view>("likes/x"));
}

TEST(RouterPath, FileOrderAcrossKinds) {
  // A prefix that covers a later template shadows it; put the template first to win.
  auto shadowed = config_with({prefix("api", "/api/"), path("revise", "/api/stories/{id}/revise")});
  Router r1(shadowed);
  EXPECT_EQ(r1.match("POST", "/api/stories/1/revise", "h"), Idx(0));
  auto first = config_with({path("revise", "/api/stories/{id}/revise"), prefix("api", "/api/")});
  Router r2(first);
  EXPECT_EQ(r2.match("POST", "/api/stories/1/revise", "h"), Idx(0));
  EXPECT_EQ(r2.match("POST", "/api/stories/1", "h"), Idx(1));
}

TEST(RouterPath, MethodsAndHostsStillApply) {
  auto cfg = config_with({path("revise", "/api/stories/{id}/revise", {"POST"}, "example.com"),
                          path("revise-any", "/api/stories/{x}/revise")});
  Router router(cfg);
  PathParams params;
  EXPECT_EQ(router.match("POST", "/api/stories/1/revise", "example.com:80", params), Idx(0));
  EXPECT_EQ(params.get("id"), std::optional<std::string_view>("1"));
  EXPECT_EQ(router.match("GET", "/api/stories/1/revise", "example.com", params), Idx(1));
  EXPECT_EQ(params.get("id"), std::nullopt);
  EXPECT_EQ(params.get("x"), std::optional<std::string_view>("1"));
  EXPECT_EQ(router.match("POST", "/api/stories/1/revise", "other", params), Idx(1));
}

// The matcher before issue 15, kept as the reference: every config of prefixes must route as it
// did.
Idx linear(const std::vector<config::Route>& routes, std::string_view method, std::string_view p,
           std::string_view host) {
  p = p.substr(0, p.find('?'));
  for (std::size_t i = 0; i < routes.size(); ++i) {
    const auto& m = routes[i].match;
    if (!p.starts_with(m.path_prefix)) {
      continue;
    }
    if (!m.methods.empty() &&
        std::find(m.methods.begin(), m.methods.end(), method) == m.methods.end()) {
      continue;
    }
    if (!m.host.empty() && m.host != host_without_port(host)) {
      continue;
    }
    return i;
  }
  return std::nullopt;
}

TEST(RouterPath, PrefixConfigsRouteExactlyAsTheLinearScan) {
  std::mt19937 rng(15);
  const std::vector<std::string> pieces{"", "/", "a", "b", "ab", "/a", "/b", "/ab", "?", "x"};
  auto random_path = [&](bool leading_slash) {
    std::string out = leading_slash ? "/" : "";
    for (int n = static_cast<int>(rng() % 5); n > 0; --n) {
      out += pieces[rng() % pieces.size()];
    }
    return out;
  };
  for (int round = 0; round < 300; ++round) {
    std::vector<config::Route> routes;
    for (int n = 1 + static_cast<int>(rng() % 12); n > 0; --n) {
      std::vector<std::string> methods;
      if (rng() % 4 == 0) {
        methods.push_back(rng() % 2 ? "GET" : "POST");
      }
      std::string host = rng() % 5 == 0 ? "h1" : "";
      routes.push_back(
          prefix(std::to_string(routes.size()), random_path(rng() % 10 != 0), methods, host));
    }
    auto cfg = config_with(routes);
    Router router(cfg);
    for (int q = 0; q < 50; ++q) {
      std::string p = random_path(rng() % 20 != 0);
      std::string method = rng() % 2 ? "GET" : "POST";
      std::string host = rng() % 2 ? "h1:80" : "h2";
      ASSERT_EQ(router.match(method, p, host), linear(cfg.routes, method, p, host))
          << "round " << round << " path " << p;
    }
  }
}

TEST(PathTemplate, Errors) {
  auto error = [](std::string_view t) { return config::parse_path_template(t).error; };
  EXPECT_EQ(error("/api/stories/{id}/revise"), "");
  EXPECT_EQ(error("/"), "");
  EXPECT_EQ(error("/a/"), "");
  EXPECT_NE(error("api"), "");
  EXPECT_NE(error(""), "");
  EXPECT_NE(error("/a/{id"), "");
  EXPECT_NE(error("/a/id}"), "");
  EXPECT_NE(error("/a/{{id}}"), "");
  EXPECT_NE(error("/a/x{id}"), "");
  EXPECT_NE(error("/a/{}"), "");
  EXPECT_NE(error("/a/{1id}"), "");
  EXPECT_NE(error("/a/{id}/{id}"), "");
  EXPECT_NE(error("/a/{rest...}/b"), "");
  EXPECT_NE(error("/a//b"), "");
  EXPECT_NE(error("/a/../b"), "");
  EXPECT_NE(error("/a/%2F"), "");
  EXPECT_NE(error("/a b"), "");
  EXPECT_NE(error("/a?b"), "");
  EXPECT_NE(error("/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}"), "");
  EXPECT_EQ(error("/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}"), "");
}

TEST(PathTemplate, CanonicalTextReadsBackTheSame) {
  auto t = config::parse_path_template("/api/%73tories/{id}/{rest...}");
  ASSERT_EQ(t.error, "");
  EXPECT_EQ(config::template_text(t), "/api/stories/{id}/{rest...}");
  EXPECT_EQ(config::template_text(config::parse_path_template(config::template_text(t))),
            config::template_text(t));
  EXPECT_EQ(config::path_variables("/api/stories/{id}/{rest...}"),
            (std::vector<std::string>{"id", "rest"}));
  EXPECT_TRUE(config::path_variables("/api/health").empty());
}

}  // namespace
}  // namespace gatehouse::core
