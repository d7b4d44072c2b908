// The `jobs` section and routes[].mode / hybrid_wait (issue 13): defaults, rejections naming
// file:line:col and key, `gatehouse check` round trip, and which changes a reload refuses.
#include <gtest/gtest.h>

#include <string>

#include "config/config.hpp"
#include "config/config_test_util.hpp"
#include "config/reload_plan.hpp"
#include "filters/jobs/config.hpp"
#include "filters/registry.hpp"

namespace gatehouse::config {
namespace {

using testing::expect_errors;
using testing::kBase;
namespace jobs = filters::jobs;

Config load(const std::string& yaml) {
  return load_config_string(kBase + yaml, "t.yaml", filters::config_sections());
}

TEST(JobsConfig, AbsentIsOffAndRoutesAreSync) {
  auto c = load("routes:\n  - {name: r, upstream: app}\n");
  EXPECT_FALSE(jobs::settings(c).enabled);
  EXPECT_EQ(c.routes[0].mode, Route::Mode::sync);
  EXPECT_EQ(to_yaml(c, filters::config_sections()).find("jobs"), std::string::npos);
}

TEST(JobsConfig, DefaultsAndValues) {
  auto c = load(R"(jobs: {}
routes:
  - {name: r, upstream: app, mode: async}
)");
  const auto& s = jobs::settings(c);
  EXPECT_TRUE(s.enabled);
  EXPECT_EQ(s.store, "sqlite://gatehouse-jobs.db");
  EXPECT_EQ(s.concurrency, 8U);
  EXPECT_EQ(s.retry.attempts, 3U);
  EXPECT_EQ(s.retry.on_status, (std::vector<unsigned>{429, 502, 503, 504}));
  EXPECT_EQ(s.path, "/jobs");
  EXPECT_EQ(s.owner_header, "Authorization");
  EXPECT_EQ(s.poll_rate.text(), "50/second");
  EXPECT_EQ(c.routes[0].mode, Route::Mode::async);

  auto d = load(R"(jobs:
  store: redis://127.0.0.1:6379/0
  concurrency: 32
  retry: {attempts: 5, backoff: {base: 2s, max: 1m, jitter: none}, on: [connect_failure, 5xx, 429]}
  max_body: 2MiB
  max_response: 16MiB
  result_ttl: 1h
  path: /tasks/
  max_queued: 500
  owner_header: X-API-Key
  poll_rate: 100 per 5 minutes
routes:
  - {name: g, upstream: app, mode: hybrid, hybrid_wait: 3s}
)");
  const auto& t = jobs::settings(d);
  EXPECT_EQ(t.store, "redis://127.0.0.1:6379/0");
  EXPECT_EQ(t.concurrency, 32U);
  EXPECT_EQ(t.retry.attempts, 5U);
  EXPECT_EQ(t.retry.backoff_base, std::chrono::seconds(2));
  EXPECT_EQ(t.retry.backoff_max, std::chrono::minutes(1));
  EXPECT_EQ(t.retry.jitter, Jitter::none);
  EXPECT_EQ(t.retry.on, static_cast<std::uint32_t>(retry_connect_failure));
  EXPECT_EQ(t.retry.on_status.size(), 65U);  // 500..563 and 429
  EXPECT_EQ(t.max_body, 2U * 1024 * 1024);
  EXPECT_EQ(t.max_response, 16U * 1024 * 1024);
  EXPECT_EQ(t.result_ttl, std::chrono::hours(1));
  EXPECT_EQ(t.path, "/tasks");
  EXPECT_EQ(t.max_queued, 500U);
  EXPECT_EQ(t.owner_header, "X-API-Key");
  EXPECT_EQ(t.poll_rate.count, 100U);
  EXPECT_EQ(t.poll_rate.period_s, 300);
  EXPECT_EQ(d.routes[0].mode, Route::Mode::hybrid);
  EXPECT_EQ(d.routes[0].hybrid_wait, std::chrono::seconds(3));

  auto emitted = to_yaml(d, filters::config_sections());
  EXPECT_NE(emitted.find("on: [connect_failure, 5xx, 429]"), std::string::npos) << emitted;
  EXPECT_NE(emitted.find("mode: hybrid"), std::string::npos) << emitted;
  auto again = load_config_string(emitted, "check.yaml", filters::config_sections());
  EXPECT_EQ(jobs::settings(again).retry.on_status, t.retry.on_status);
  EXPECT_EQ(jobs::settings(again).owner_header, t.owner_header);
  EXPECT_EQ(jobs::settings(again).poll_rate, t.poll_rate);
  EXPECT_EQ(jobs::settings(load("jobs: {poll_rate: off}\n")).poll_rate.count, 0U);
  auto off = to_yaml(load("jobs: {poll_rate: off}\n"), filters::config_sections());
  EXPECT_NE(off.find("poll_rate: off"), std::string::npos) << off;
  EXPECT_EQ(again.routes[0].mode, Route::Mode::hybrid);
  EXPECT_EQ(again.routes[0].hybrid_wait, std::chrono::seconds(3));
  EXPECT_EQ(to_yaml(again, filters::config_sections()), emitted);
}

TEST(JobsConfig, Rejections) {
  expect_errors({
      {kBase + "routes:\n  - {name: r, upstream: app, mode: async}\n",
       "t.yaml:5:36: routes[0].mode: async needs a top-level `jobs` section (where jobs are "
       "stored)"},
      {kBase + "jobs: {}\nroutes:\n  - {name: r, upstream: app, mode: later}\n",
       "t.yaml:6:36: routes[0].mode: invalid value \"later\" (expected one of: sync, async, "
       "hybrid)"},
      {kBase + "jobs: {store: postgres://x}\n",
       "t.yaml:4:15: jobs.store: invalid store \"postgres://x\" (expected sqlite://PATH, "
       "sqlite:///ABSOLUTE/PATH or redis://HOST:PORT/DB)"},
      {kBase + "jobs: {concurrency: 0}\n",
       "t.yaml:4:21: jobs.concurrency: invalid value \"0\" (expected an integer from 1 to 10000)"},
      {kBase + "jobs: {retry: {on: [4xx]}}\n",
       "t.yaml:4:21: jobs.retry.on[0]: invalid value \"4xx\" (expected connect_failure, reset, "
       "timeout, 5xx, 429 or a status from 500 to 563)"},
      {kBase + "jobs: {path: /}\n",
       "t.yaml:4:14: jobs.path: must not be / (every request would be a status request)"},
      {kBase + "jobs: {poll_rate: 10/fortnight}\n",
       "t.yaml:4:19: jobs.poll_rate: invalid rate \"10/fortnight\": unknown unit \"fortnight\" "
       "(expected second, minute, hour or day) (or off)"},
      {kBase + "jobs: {poll_rate: 10/second; 100/minute}\n",
       "t.yaml:4:19: jobs.poll_rate: expected one rate (\"20/second\") or off"},
      {kBase + "jobs: {retry: {methods: [POST]}}\n",
       "t.yaml:4:16: jobs.retry.methods: unknown key \"methods\"; allowed keys: attempts, backoff, "
       "on"},
  });
}

// `gatehouse check` notes job routes that would make jobs of reads, and an unused hybrid_wait.
TEST(JobsConfig, NotesJobRoutesThatTakeReads) {
  auto c = load(R"(jobs: {}
routes:
  - {name: a, match: {path_prefix: /a}, upstream: app, mode: async, hybrid_wait: 2s}
  - {name: b, match: {path_prefix: /b, methods: [GET, POST]}, upstream: app, mode: hybrid}
  - {name: c, match: {path_prefix: /c, methods: [POST]}, upstream: app, mode: async}
  - {name: d, match: {path_prefix: /d}, upstream: app}
)");
  ASSERT_EQ(c.notes.size(), 3U) << ::testing::PrintToString(c.notes);
  EXPECT_NE(c.notes[0].find("routes[0].mode: async makes a job of every request the route takes, "
                            "and it takes every method"),
            std::string::npos)
      << c.notes[0];
  EXPECT_NE(c.notes[1].find("routes[0].hybrid_wait: ignored"), std::string::npos) << c.notes[1];
  EXPECT_NE(c.notes[2].find("routes[1].mode: hybrid makes a job of every request the route takes, "
                            "and it takes GET:"),
            std::string::npos)
      << c.notes[2];
}

TEST(JobsConfig, ReloadRefusesStoreAndConcurrencyButNotModes) {
  auto a = load("jobs: {}\nroutes:\n  - {name: r, upstream: app, mode: async}\n");
  auto b = load("jobs: {}\nroutes:\n  - {name: r, upstream: app, mode: hybrid}\n");
  auto c = load("jobs: {concurrency: 9}\nroutes:\n  - {name: r, upstream: app}\n");
  auto d = load("jobs: {store: 'sqlite:///tmp/x.db'}\nroutes:\n  - {name: r, upstream: app}\n");
  auto e = load("jobs: {retry: {attempts: 7}}\nroutes:\n  - {name: r, upstream: app}\n");
  EXPECT_EQ(jobs::restart_needed(a, b), "");
  EXPECT_EQ(jobs::restart_needed(a, e), "");
  EXPECT_NE(jobs::restart_needed(a, c).find("jobs.concurrency: changing it needs a restart"),
            std::string::npos);
  EXPECT_NE(jobs::restart_needed(a, d).find("jobs.store"), std::string::npos);
}

}  // namespace
}  // namespace gatehouse::config
