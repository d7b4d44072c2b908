// What the rate limiter tells the dashboard: refusals per route and the keys refused most often,
// recorded on the refusal paths (rate, ban, in-flight cap) and never for an allowed request.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include <gmock/gmock.h>

#include "config/config.hpp"
#include "filters/rate_limit/config.hpp"
#include "filters/rate_limit/rate_limit_filter.hpp"
#include "filters/registry.hpp"
#include "observability/logging.hpp"

namespace gatehouse::filters::rate_limit {
namespace {

constexpr ratelimit::Nanos kSec = 1'000'000'000;

class RateLimiterDashboardTest : public ::testing::Test {
 protected:
  std::shared_ptr<ratelimit::ManualClock> clock_ =
      std::make_shared<ratelimit::ManualClock>(kSec, 1'700'000'000);
  std::unique_ptr<RateLimiter> limiter_;
  std::shared_ptr<SharedState> state_;

  // A new limiter from `yaml`; `reload`: on the state of the one before (a configuration reload).
  void load(const std::string& yaml, const observability::ClientIpHasher* hasher = nullptr,
            bool reload = false) {
    auto cfg =
        config::load_config_string("upstreams:\n  app: {targets: [\"127.0.0.1:8000\"]}\n" + yaml,
                                   "test.yaml", filters::config_sections());
    if (!reload) {
      state_ = std::make_shared<SharedState>(settings(cfg).max_keys, 2);
    }
    limiter_ = std::make_unique<RateLimiter>(cfg, 2, state_, clock_, hasher);
  }
  std::string metrics() const {
    std::string out;
    limiter_->render_metrics(out);
    return out;
  }
  Verdict check(std::size_t route, const std::string& ip, unsigned worker = 0) {
    RequestInfo info;
    info.route = route;
    info.client_ip = ip;
    info.path = "/";
    Verdict v;
    limiter_->check(info, worker, v);
    return v;
  }
};

TEST_F(RateLimiterDashboardTest, RefusalsAreCountedPerRouteAndKeysRanked) {
  load(
      "routes:\n"
      "  - {name: api, upstream: app, match: {path_prefix: /api}, rate_limit: {limits: "
      "2/minute}}\n"
      "  - {name: open, upstream: app, rate_limit: off}\n");
  for (int i = 0; i < 5; ++i) {
    check(0, "203.0.113.7", i % 2);
  }
  for (int i = 0; i < 3; ++i) {
    check(0, "203.0.113.8");
  }
  check(1, "203.0.113.9");
  auto rejected = state_->decisions.rejected_by_route();
  EXPECT_EQ(rejected["api"], 3 + 1);
  EXPECT_EQ(rejected["open"], 0);
  auto top = limiter_->top_rejected(10);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].key, "ip=203.0.113.7");
  EXPECT_EQ(top[0].count, 3u);  // refusals from both workers
  EXPECT_EQ(top[1].key, "ip=203.0.113.8");
  EXPECT_EQ(top[1].count, 1u);
}

TEST_F(RateLimiterDashboardTest, AllowedRequestsRecordNoKey) {
  load("rate_limit: {limits: 100/minute}\n");
  for (int i = 0; i < 50; ++i) {
    EXPECT_TRUE(check(0, "203.0.113." + std::to_string(i)).allowed());
  }
  EXPECT_TRUE(limiter_->top_rejected(10).empty());
  EXPECT_EQ(state_->decisions.rejected_by_route()["default"], 0);
}

TEST_F(RateLimiterDashboardTest, BansAndInFlightRefusalsAreRecorded) {
  load("rate_limit: {limits: 1/hour, max_in_flight: 1, ban: {after: 1, within: 1m, for: 1m}}\n");
  auto first = check(0, "203.0.113.7");
  EXPECT_TRUE(first.allowed());
  EXPECT_EQ(check(0, "203.0.113.7").kind, Verdict::Kind::too_many_in_flight);
  limiter_->release(first);
  EXPECT_EQ(check(0, "203.0.113.7").kind, Verdict::Kind::limited);  // starts the ban
  EXPECT_EQ(check(0, "203.0.113.7").kind, Verdict::Kind::banned);
  auto top = limiter_->top_rejected(10);
  ASSERT_EQ(top.size(), 1u);
  EXPECT_EQ(top[0].key, "ip=203.0.113.7");
  EXPECT_EQ(top[0].count, 3u);
  EXPECT_EQ(state_->decisions.rejected_by_route()["default"], 3);
}

TEST_F(RateLimiterDashboardTest, KeysAreHashedLikeTheLogs) {
  observability::ClientIpHasher hasher(true, "0123456789abcdef-secret");
  load("rate_limit: {limits: 1/hour}\n", &hasher);
  check(0, "203.0.113.7");
  check(0, "203.0.113.7");
  auto top = limiter_->top_rejected(10);
  ASSERT_EQ(top.size(), 1u);
  EXPECT_EQ(top[0].key, "ip=" + hasher("203.0.113.7"));
  EXPECT_EQ(top[0].key.find("203.0.113.7"), std::string::npos);
}

// A reload builds a new limiter on the same SharedState: the refusal counts and decision series
// of unchanged rules, and the top refused keys, carry over; a changed rule's counters start
// fresh, while its route's refusal total (by name, every rule it had) never goes back.
TEST_F(RateLimiterDashboardTest, CountsAndTopKeysSurviveAReload) {
  const std::string api =
      "  - {name: api, upstream: app, match: {path_prefix: /api}, rate_limit: "
      "{limits: 2/minute}}\n";
  load("routes:\n" + api +
       "  - {name: web, upstream: app, match: {path_prefix: /web}, rate_limit: {limits: "
       "1/minute}}\n");
  for (int i = 0; i < 4; ++i) {
    check(0, "203.0.113.7", i % 2);  // api: 2 refused
    check(1, "203.0.113.8");         // web: 3 refused
  }
  // Reordered, "web" changed, a route added in front: api is now route 2.
  load(
      "routes:\n"
      "  - {name: new, upstream: app, match: {path_prefix: /new}, rate_limit: off}\n"
      "  - {name: web, upstream: app, match: {path_prefix: /web}, rate_limit: {limits: "
      "5/minute}}\n" +
          api,
      nullptr, true);
  // api's rule is unchanged: its count carried over; web's rule changed: a fresh counter.
  EXPECT_THAT(metrics(),
              ::testing::HasSubstr("gatehouse_ratelimit_decisions_total{route=\"api\","
                                   "limit=\"2/minute\",key=\"ip\",result=\"rejected\"} 2\n"));
  EXPECT_THAT(metrics(),
              ::testing::HasSubstr("gatehouse_ratelimit_decisions_total{route=\"web\","
                                   "limit=\"5/minute\",key=\"ip\",result=\"rejected\"} 0\n"));
  auto by_name = state_->decisions.rejected_by_route();
  EXPECT_EQ(by_name["api"], 2);
  EXPECT_EQ(by_name["web"], 3);  // the old rule's refusals still count for the route
  auto top = limiter_->top_rejected(10);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].key, "ip=203.0.113.8");
  EXPECT_EQ(top[0].count, 3u);
  // The counter keeps counting through the new limiter.
  check(2, "203.0.113.7");
  EXPECT_EQ(state_->decisions.rejected_by_route()["api"], 3);
  EXPECT_EQ(limiter_->top_rejected(10)[0].count, 3u);
  // Reloading the same file again adds no counter.
  const auto counters = state_->decisions.size();
  load("routes:\n" + api, nullptr, true);
  EXPECT_EQ(state_->decisions.size(), counters);
}

}  // namespace
}  // namespace gatehouse::filters::rate_limit
