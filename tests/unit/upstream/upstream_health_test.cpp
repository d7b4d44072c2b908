// UpstreamHealth: the per-upstream glue (all out, Retry-After, health detail, metrics lines),
// without sockets or logs.
#include "upstream/upstream_health.hpp"

#include <gtest/gtest.h>

namespace gatehouse::upstream {
namespace {

using namespace std::chrono_literals;
using observability::TargetHealth;
using Clock = UpstreamHealth::Clock;

class UpstreamHealthTest : public ::testing::Test {
 protected:
  UpstreamHealthTest() {
    config::Upstream u;
    u.name = "app";
    u.targets = {config::Endpoint{"127.0.0.1", 8000}, config::Endpoint{"127.0.0.1", 8001}};
    u.health_check = config::HealthCheckConfig{};  // 5s x healthy_after 2 = 10s
    u.outlier = config::OutlierConfig{.consecutive_5xx = 2, .eject_for = 30s};
    u.circuit_breaker = config::CircuitBreakerConfig{.min_requests = 2, .open_for = 15s};
    cfg_.upstreams.push_back(u);
    cfg_.health.cache_ttl = config::Millis{0};
    health_ = std::make_unique<observability::Health>(cfg_, 2, "0");
    shared_ = std::make_unique<UpstreamHealth>(cfg_.upstreams[0], 0, *health_, 2, nullptr);
  }

  config::Config cfg_;
  std::unique_ptr<observability::Health> health_;
  std::unique_ptr<UpstreamHealth> shared_;
  Clock::time_point now_ = Clock::time_point{} + 5000s;
};

TEST_F(UpstreamHealthTest, AllOutAndWhenToComeBack) {
  EXPECT_FALSE(shared_->all_out());
  shared_->report(0, 0, TryOutcome::http_5xx, false, now_, "r1");
  shared_->report(0, 0, TryOutcome::http_5xx, false, now_, "r2");
  EXPECT_EQ(shared_->target(0).state(), std::string("ejected"));
  EXPECT_FALSE(shared_->all_out());
  shared_->target(1).set(TargetHealth::kUnhealthy, true);
  EXPECT_TRUE(shared_->all_out());
  // The soonest back: the unhealthy one after healthy_after checks (10s), before the ejection.
  EXPECT_EQ(shared_->unavailable_retry_after_s(now_), 10);
  shared_->target(1).set(TargetHealth::kUnhealthy, false);
  shared_->target(1).set(TargetHealth::kEjected, true);  // (as if ejected too, ending now+0)
  shared_->target(1).passive.ejected_until_ns = 0;
  EXPECT_EQ(shared_->unavailable_retry_after_s(now_), 1);  // never below 1
  now_ += 12s;
  shared_->target(1).set(TargetHealth::kEjected, false);
  shared_->target(1).set(TargetHealth::kUnhealthy, true);
  EXPECT_EQ(shared_->unavailable_retry_after_s(now_), 10);  // ejection: 18s left
}

TEST_F(UpstreamHealthTest, SweepReturnsEjectedTargets) {
  shared_->report(1, 1, TryOutcome::reset, false, now_, "r1");
  shared_->report(1, 1, TryOutcome::timeout, false, now_, "r2");
  EXPECT_TRUE(shared_->target(1).out());
  shared_->sweep(now_ + 29s);
  EXPECT_TRUE(shared_->target(1).out());
  shared_->sweep(now_ + 30s);
  EXPECT_FALSE(shared_->target(1).out());
  EXPECT_TRUE(shared_->target(1).reachable());
}

TEST_F(UpstreamHealthTest, ConnectFailuresOnlyCountOnce) {
  // acquire reports each failed connect; the proxy's report of the failed try has no target.
  shared_->connect_failed(0, now_, "r1");
  shared_->report(0, UpstreamHealth::kNoTarget, TryOutcome::connect_failure, false, now_, "r1");
  EXPECT_EQ(shared_->target(0).passive.consecutive_connect_failures.load(), 1u);
}

TEST_F(UpstreamHealthTest, BreakerInHealthAndMetrics) {
  auto r = shared_->health_report(now_);
  EXPECT_EQ(r.status, observability::Status::ok);
  EXPECT_EQ(r.detail["circuit_breaker"]["state"], "closed");
  EXPECT_EQ(r.detail["max_ejected"], 1);
  shared_->report(0, UpstreamHealth::kNoTarget, TryOutcome::connect_failure, false, now_, "a");
  shared_->report(1, UpstreamHealth::kNoTarget, TryOutcome::connect_failure, false, now_, "b");
  EXPECT_EQ(shared_->breaker()->state(), CircuitBreaker::State::open);
  auto a = shared_->admit(now_ + 5s);
  EXPECT_FALSE(a.allowed);
  EXPECT_EQ(shared_->circuit_rejected.load(), 1u);
  r = shared_->health_report(now_ + 5s);
  EXPECT_EQ(r.status, observability::Status::down);
  EXPECT_EQ(r.detail["circuit_breaker"]["state"], "open");
  EXPECT_EQ(r.detail["circuit_breaker"]["open_for_s"], 10);
  EXPECT_EQ(r.detail["circuit_breaker"]["rejected"], 1);
  std::string out;
  shared_->render_metrics(out, now_);
  EXPECT_NE(out.find("gatehouse_upstream_circuit_breaker_state{upstream=\"app\"} 1\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("gatehouse_upstream_circuit_open_rejections_total{upstream=\"app\"} 1\n"),
            std::string::npos);
  EXPECT_NE(
      out.find("gatehouse_upstream_target_ejected{upstream=\"app\",target=\"127.0.0.1:8000\"} 0\n"),
      std::string::npos);
  // Health::detailed carries it through the probe the Gateway registers.
  health_->set_upstream_probe(0, [this] { return shared_->health_report(now_ + 5s); });
  EXPECT_EQ(health_->detailed()["components"]["upstream:app"]["circuit_breaker"]["state"], "open");
  shared_->sweep(now_ + 15s);
  EXPECT_EQ(shared_->breaker()->state(), CircuitBreaker::State::half_open);
  EXPECT_EQ(shared_->health_report(now_ + 15s).status, observability::Status::degraded);
}

}  // namespace
}  // namespace gatehouse::upstream
