// upstreams.<name>.retry, per_try_timeout, routes[].timeout and buffer_request (issue 12).
#include <gtest/gtest.h>

#include "config/config.hpp"
#include "config_test_util.hpp"
#include "filters/registry.hpp"

namespace gatehouse::config {
namespace {

using namespace std::chrono_literals;
using testing::Case;
using testing::expect_errors;
using testing::kBase;

Config load(const std::string& yaml) {
  return load_config_string(yaml, "t.yaml", filters::config_sections());
}

TEST(RetryConfig, WithoutABlockOnlyTheStaleRetryHappens) {
  auto c = load(kBase);
  const auto& r = c.upstreams[0].retry;
  EXPECT_EQ(r.attempts, 1u);
  EXPECT_EQ(c.upstreams[0].per_try_timeout, 0ms);
  EXPECT_EQ(c.routes[0].timeout, 0ms);
  EXPECT_FALSE(c.routes[0].buffer_request);
}

TEST(RetryConfig, ABlockRetriesThreeTimesByDefault) {
  auto c = load(kBase + "    retry: {}\n");
  const auto& r = c.upstreams[0].retry;
  EXPECT_EQ(r.attempts, 3u);
  EXPECT_EQ(r.backoff_base, 100ms);
  EXPECT_EQ(r.backoff_max, 1s);
  EXPECT_EQ(r.jitter, Jitter::full);
  EXPECT_EQ(r.on, retry_connect_failure | retry_reset);
  EXPECT_EQ(r.on_status, (std::vector<unsigned>{502, 503, 504}));
  EXPECT_EQ(r.methods,
            (std::vector<std::string>{"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}));
  EXPECT_EQ(r.budget_percent, 20u);
  EXPECT_EQ(r.budget_floor, 3u);
  EXPECT_EQ(r.buffer_body, 64u * 1024);
}

TEST(RetryConfig, ReadsTheIssueExample) {
  auto c = load(R"(
upstreams:
  app:
    targets: ["10.0.0.5:8000", "10.0.0.6:8000"]
    retry:
      attempts: 3
      backoff: {base: 1s, max: 4s, jitter: full}
      on: [connect_failure, reset, 502, 503, 504, 429, invalid_json, timeout, 503]
      methods: [GET, HEAD, OPTIONS, PUT, DELETE, GET]
      budget: 20%
      buffer_body: 64KiB
    per_try_timeout: 20s
    timeout: 60s
routes:
  - name: generate
    match: {path_prefix: /api/generate}
    upstream: app
    timeout: 90s
    buffer_request: true
)");
  const auto& u = c.upstreams[0];
  EXPECT_EQ(u.retry.backoff_base, 1s);
  EXPECT_EQ(u.retry.backoff_max, 4s);
  EXPECT_EQ(u.retry.on, retry_connect_failure | retry_reset | retry_invalid_json | retry_timeout);
  EXPECT_EQ(u.retry.on_status, (std::vector<unsigned>{502, 503, 504, 429})) << "deduplicated";
  EXPECT_EQ(u.retry.methods, (std::vector<std::string>{"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}));
  EXPECT_EQ(u.per_try_timeout, 20s);
  EXPECT_EQ(c.routes[0].timeout, 90s);
  EXPECT_TRUE(c.routes[0].buffer_request);
}

TEST(RetryConfig, BackoffMaxFollowsBaseUnlessGiven) {
  EXPECT_EQ(load(kBase + "    retry: {backoff: {base: 2s}}\n").upstreams[0].retry.backoff_max, 20s);
  EXPECT_EQ(load(kBase + "    retry: {backoff: {base: 300d}}\n").upstreams[0].retry.backoff_max,
            std::chrono::days(365))
      << "no longer than a duration may be";
  EXPECT_EQ(load(kBase + "    retry: {backoff: {jitter: none}}\n").upstreams[0].retry.jitter,
            Jitter::none);
}

TEST(RetryConfig, CheckOutputLoadsBack) {
  for (const char* block : {"    retry: {backoff: {base: 300d}}\n", "    retry: {on: []}\n",
                            "    retry: {methods: [], budget: 0%, buffer_body: 0}\n", ""}) {
    auto c = load(kBase + block);
    auto printed = to_yaml(c, filters::config_sections());
    auto again = load_config_string(printed, "printed.yaml", filters::config_sections());
    EXPECT_EQ(to_yaml(again, filters::config_sections()), printed) << block;
    const auto& a = c.upstreams[0].retry;
    const auto& b = again.upstreams[0].retry;
    EXPECT_EQ(a.attempts, b.attempts) << block;
    EXPECT_EQ(a.backoff_base, b.backoff_base) << block;
    EXPECT_EQ(a.backoff_max, b.backoff_max) << block;
    EXPECT_EQ(a.on, b.on) << block;
    EXPECT_EQ(a.on_status, b.on_status) << block;
    EXPECT_EQ(a.methods, b.methods) << block;
    EXPECT_EQ(a.budget_percent, b.budget_percent) << block;
    EXPECT_EQ(a.buffer_body, b.buffer_body) << block;
  }
}

TEST(RetryConfig, Rejections) {
  expect_errors({
      {kBase + "    retry: {attempts: 0}\n",
       "t.yaml:4:23: upstreams.app.retry.attempts: invalid value \"0\" (expected an integer from 1 "
       "to 10)"},
      {kBase + "    retry: {attempts: 11}\n",
       "t.yaml:4:23: upstreams.app.retry.attempts: invalid value \"11\" (expected an integer from "
       "1 to 10)"},
      {kBase + "    retry: {on: [502, 404]}\n",
       "t.yaml:4:23: upstreams.app.retry.on[1]: invalid value \"404\" (expected connect_failure, "
       "reset, timeout, invalid_json, 429 or a status from 500 to 563)"},
      {kBase + "    retry: {on: [resets]}\n",
       "t.yaml:4:18: upstreams.app.retry.on[0]: invalid value \"resets\" (expected "
       "connect_failure, reset, timeout, invalid_json, 429 or a status from 500 to 563)"},
      {kBase + "    retry: {budget: 20}\n",
       "t.yaml:4:21: upstreams.app.retry.budget: invalid value \"20\" (expected a percentage from "
       "0% to 1000%, e.g. 20%)"},
      {kBase + "    retry: {budget: 1001%}\n",
       "t.yaml:4:21: upstreams.app.retry.budget: invalid value \"1001%\" (expected a percentage "
       "from 0% to 1000%, e.g. 20%)"},
      {kBase + "    retry: {backoff: {base: 2s, max: 1s}}\n",
       "t.yaml:4:38: upstreams.app.retry.backoff.max: must not be less than backoff.base (2s)"},
      {kBase + "    retry: {backoff: {jitter: half}}\n",
       "t.yaml:4:31: upstreams.app.retry.backoff.jitter: invalid value \"half\" (expected one of: "
       "full, none)"},
      {kBase + "    retry: {methods: [get]}\n",
       "t.yaml:4:23: upstreams.app.retry.methods[0]: invalid method \"get\" (expected an "
       "upper-case "
       "token such as GET or POST)"},
      {kBase + "    per_try_timeout: 5\n",
       "t.yaml:4:22: upstreams.app.per_try_timeout: invalid duration \"5\": a unit is required, "
       "e.g. \"5s\" (units: ms, s, m, h, d)"},
      {kBase + "routes:\n  - {name: r, upstream: app, buffer_request: maybe}\n",
       "t.yaml:5:46: routes[0].buffer_request: expected true or false, got \"maybe\""},
      {kBase + "    retry: {attempt: 3}\n",
       "t.yaml:4:13: upstreams.app.retry.attempt: unknown key \"attempt\" (did you mean "
       "\"attempts\"?); allowed keys: attempts, backoff, on, methods, budget, budget_floor, "
       "buffer_body"},
  });
}

}  // namespace
}  // namespace gatehouse::config
