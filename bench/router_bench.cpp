// Route matching (issue 15): 200 routes mixing prefixes, exact paths and templates, the way a
// large API gateway config looks; the request paths hit the first, a middle and the last routes,
// templates with captures, and a miss.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "config/config.hpp"
#include "config/path_template.hpp"
#include "core/router.hpp"

namespace {

using namespace gatehouse;

config::Config two_hundred_routes() {
  config::Config cfg;
  auto add = [&](std::string name, std::string prefix, std::string path) {
    config::Route r;
    r.name = std::move(name);
    r.upstream = "app";
    if (!path.empty()) {
      r.match.path = config::template_text(config::parse_path_template(path));
    } else {
      r.match.path_prefix = std::move(prefix);
    }
    if (cfg.routes.size() % 7 == 3) {
      r.match.methods = {"POST"};
    }
    cfg.routes.push_back(std::move(r));
  };
  for (int i = 0; i < 70; ++i) {
    auto n = std::to_string(i);
    add("tmpl" + n, "", "/api/v1/svc" + n + "/{id}/action" + n);
    add("exact" + n, "", "/api/v1/svc" + n + "/health");
    if (i < 59) {
      add("prefix" + n, "/api/v1/svc" + n + "/", "");
    }
  }
  add("files", "", "/static/{rest...}");
  add("default", "/", "");
  return cfg;  // 70 + 70 + 59 + 1 + 1 = 201 routes; the last one a catch-all
}

void BM_RouterMatch(benchmark::State& state, std::string path, std::string method) {
  static const config::Config cfg = two_hundred_routes();
  static const core::Router router(cfg);
  core::PathParams params;
  for (auto _ : state) {
    benchmark::DoNotOptimize(router.match(method, path, "example.com", params));
    benchmark::DoNotOptimize(params.size);
  }
}
BENCHMARK_CAPTURE(BM_RouterMatch, template_first, std::string("/api/v1/svc0/42/action0"),
                  std::string("GET"));
BENCHMARK_CAPTURE(BM_RouterMatch, template_last, std::string("/api/v1/svc69/42/action69"),
                  std::string("GET"));
BENCHMARK_CAPTURE(BM_RouterMatch, exact_middle, std::string("/api/v1/svc35/health"),
                  std::string("GET"));
BENCHMARK_CAPTURE(BM_RouterMatch, prefix_middle, std::string("/api/v1/svc40/items/7?x=1"),
                  std::string("GET"));
BENCHMARK_CAPTURE(BM_RouterMatch, rest, std::string("/static/css/app.css"), std::string("GET"));
BENCHMARK_CAPTURE(BM_RouterMatch, catch_all, std::string("/nothing/here/at/all"),
                  std::string("GET"));

// 200 prefix routes only (a config from before issue 15), the request for the last one: the
// linear scan this replaced tested all 200 prefixes.
void BM_RouterMatchPrefixesOnly(benchmark::State& state) {
  static const config::Config cfg = [] {
    config::Config c;
    for (int i = 0; i < 200; ++i) {
      config::Route r;
      r.name = std::to_string(i);
      r.upstream = "app";
      r.match.path_prefix = "/api/v1/svc" + std::to_string(i) + "/";
      c.routes.push_back(std::move(r));
    }
    return c;
  }();
  static const core::Router router(cfg);
  std::string path = "/api/v1/svc199/items/7";
  for (auto _ : state) {
    benchmark::DoNotOptimize(router.match("GET", path, "example.com"));
  }
}
BENCHMARK(BM_RouterMatchPrefixesOnly);

// The common small config: one `path_prefix: /` route (what compare.sh runs).
void BM_RouterMatchOneRoute(benchmark::State& state) {
  static const config::Config cfg = [] {
    config::Config c;
    config::Route r;
    r.name = "default";
    r.upstream = "app";
    c.routes.push_back(std::move(r));
    return c;
  }();
  static const core::Router router(cfg);
  std::string path = "/api/v1/items/7";
  core::PathParams params;
  for (auto _ : state) {
    benchmark::DoNotOptimize(router.match("GET", path, "example.com", params));
  }
}
BENCHMARK(BM_RouterMatchOneRoute);

}  // namespace
