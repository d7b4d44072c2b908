#include "upstream/cluster.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "loopback.hpp"

namespace gatehouse::upstream {
namespace {

// A cluster over real loopback listeners (the tests accept nothing: the backlog completes the
// connects), or over a port nobody listens on.
class ClusterTest : public ::testing::Test {
 protected:
  // `listening[i]`: whether target i accepts connections.
  void make(std::vector<bool> listening) {
    config::Upstream u;
    u.name = "app";
    std::vector<tcp::endpoint> eps;
    for (bool on : listening) {
      tcp::acceptor a(ioc_, tcp::endpoint(io::net::ip::address_v4::loopback(), 0));
      eps.push_back(a.local_endpoint());
      u.targets.push_back({"127.0.0.1", eps.back().port()});
      if (on) {
        acceptors_.push_back(std::move(a));
      }  // else closed here: connects are refused
    }
    cfg_.upstreams = {u};
    cfg_.log.access = cfg_.log.error = cfg_.log.security = "off";
    health_ = std::make_unique<observability::Health>(cfg_, 1, "test");
    logs_ = std::make_unique<observability::Logs>(cfg_.log);
    cluster_ = std::make_unique<Cluster>(ioc_.get_executor(), deadlines_, 0, cfg_.upstreams[0], eps,
                                         stats_, *health_, *logs_);
  }

  Acquired acquire(bool fresh = false) {
    return test::run(ioc_, cluster_->acquire(fresh, "req-1"));
  }
  std::size_t target_of_next() {
    auto a = acquire();
    EXPECT_NE(a.conn, nullptr) << a.detail;
    return a.conn ? a.conn->target : 99;
  }

  io::net::io_context ioc_;
  io::DeadlineList deadlines_;
  std::vector<tcp::acceptor> acceptors_;
  config::Config cfg_;
  observability::UpstreamStats stats_;
  std::unique_ptr<observability::Health> health_;
  std::unique_ptr<observability::Logs> logs_;
  std::unique_ptr<Cluster> cluster_;
};

TEST_F(ClusterTest, RoundRobinAcrossTargets) {
  make({true, true, true});
  std::vector<std::size_t> got;
  for (int i = 0; i < 4; ++i) {
    got.push_back(target_of_next());
  }
  EXPECT_EQ(got, (std::vector<std::size_t>{0, 1, 2, 0}));
  EXPECT_EQ(stats_.opened.get(), 4);
}

TEST_F(ClusterTest, SkipsTargetsMarkedUnreachable) {
  make({true, true, true});
  health_->target(0, 1).report(false, "check failed");
  std::vector<std::size_t> got;
  for (int i = 0; i < 4; ++i) {
    got.push_back(target_of_next());
  }
  EXPECT_EQ(got, (std::vector<std::size_t>{0, 2, 0, 2}));
}

TEST_F(ClusterTest, AFailedConnectMovesOnAndMarksTheTargetUnreachable) {
  make({false, true});
  EXPECT_EQ(target_of_next(), 1u);
  EXPECT_EQ(stats_.connect_errors.get(), 1);
  EXPECT_FALSE(health_->target(0, 0).reachable());
  EXPECT_TRUE(health_->target(0, 1).reachable());
  // Marked down by real traffic: the next requests go to target 1 without trying 0.
  EXPECT_EQ(target_of_next(), 1u);
  EXPECT_EQ(stats_.connect_errors.get(), 1);
}

TEST_F(ClusterTest, AConnectToATargetMarkedDownMarksItUpAgain) {
  make({true});
  health_->target(0, 0).report(false, "check failed");
  EXPECT_EQ(target_of_next(), 0u);
  EXPECT_TRUE(health_->target(0, 0).reachable());
}

TEST_F(ClusterTest, EveryTargetFailingIs502WithTheLastError) {
  make({false, false});
  auto a = acquire();
  EXPECT_EQ(a.conn, nullptr);
  EXPECT_EQ(a.status, 502u);
  EXPECT_NE(a.detail.find("connect to 127.0.0.1:"), std::string::npos) << a.detail;
  // Each target twice: both are reachable in the first pass, and marked down by their failure
  // they come up again in the second (today's behaviour, kept as it is).
  EXPECT_EQ(stats_.connect_errors.get(), 4);
  EXPECT_FALSE(health_->target(0, 0).reachable());
  EXPECT_FALSE(health_->target(0, 1).reachable());
}

TEST_F(ClusterTest, ReleasedConnectionIsReusedUnlessFreshIsAsked) {
  make({true});
  auto a = acquire();
  ASSERT_NE(a.conn, nullptr);
  auto* first = a.conn.get();
  EXPECT_FALSE(a.conn->reused);
  cluster_->release(std::move(a.conn));
  EXPECT_EQ(stats_.idle.get(), 1);
  auto b = acquire();
  EXPECT_EQ(b.conn.get(), first);
  EXPECT_TRUE(b.conn->reused);
  cluster_->release(std::move(b.conn));
  auto c = acquire(/*fresh=*/true);
  ASSERT_NE(c.conn, nullptr);
  EXPECT_NE(c.conn.get(), first);
  EXPECT_FALSE(c.conn->reused);
  EXPECT_EQ(cluster_->pool().idle(0), 1u) << "a fresh acquire leaves the idle one alone";
}

TEST_F(ClusterTest, TheBalancerPicksTheTargetBeforeTheIdleList) {
  make({true, true});
  auto a = acquire();  // target 0
  cluster_->release(std::move(a.conn));
  // Target 0 has an idle connection, but it is target 1's turn: a new connection to 1.
  auto b = acquire();
  ASSERT_NE(b.conn, nullptr);
  EXPECT_EQ(b.conn->target, 1u);
  EXPECT_FALSE(b.conn->reused);
  EXPECT_EQ(target_of_next(), 0u);
}

// A retry: the failed try's target comes last; a target that answered 429 never comes.
TEST_F(ClusterTest, AvoidAndNeverSteerTheRetry) {
  make({true, true, true});
  for (int i = 0; i < 3; ++i) {
    auto a = test::run(ioc_, cluster_->acquire(false, "req-1", 1));
    ASSERT_NE(a.conn, nullptr);
    EXPECT_NE(a.conn->target, 1u);
  }
  for (int i = 0; i < 3; ++i) {
    auto a = test::run(ioc_, cluster_->acquire(false, "req-1", 0, target_bit(1) | target_bit(2)));
    ASSERT_NE(a.conn, nullptr) << "the avoided target is still offered when it is the last";
    EXPECT_EQ(a.conn->target, 0u);
  }
  auto none = test::run(ioc_, cluster_->acquire(false, "req-1", kNoTarget, 0b111));
  EXPECT_EQ(none.conn, nullptr);
  // Nothing left to try is not a connect failure: 503, and nothing reported to the breaker.
  EXPECT_EQ(none.status, 503u);
  EXPECT_TRUE(none.unavailable);
}

TEST_F(ClusterTest, AvoidedTargetIsTriedWhenTheOthersFailToConnect) {
  make({true, false});
  auto a = test::run(ioc_, cluster_->acquire(false, "req-1", 0));
  ASSERT_NE(a.conn, nullptr);
  EXPECT_EQ(a.conn->target, 0u);
}

}  // namespace
}  // namespace gatehouse::upstream

namespace gatehouse::upstream {
namespace {

using observability::TargetHealth;

// Targets that are out (unhealthy or ejected) get no connect at all, even as a last resort.
TEST_F(ClusterTest, OutTargetsAreNeverTried) {
  make({true, true, true});
  health_->target(0, 0).set(TargetHealth::kUnhealthy, true);
  health_->target(0, 2).set(TargetHealth::kEjected, true);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(target_of_next(), 1u);
  }
}

TEST_F(ClusterTest, EveryTargetOutIs503UnavailableWithoutAConnect) {
  make({true, true});
  UpstreamHealth shared(cfg_.upstreams[0], 0, *health_, 1, nullptr);
  cluster_->attach(&shared, 0);
  health_->target(0, 0).set(TargetHealth::kUnhealthy, true);
  health_->target(0, 1).set(TargetHealth::kEjected, true);
  health_->target(0, 1).passive.ejected_until_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(
          (Clock::now() + std::chrono::seconds(7)).time_since_epoch())
          .count();
  auto a = acquire();
  EXPECT_EQ(a.conn, nullptr);
  EXPECT_EQ(a.status, 503u);
  EXPECT_TRUE(a.unavailable);
  EXPECT_EQ(a.retry_after_s, 7);  // the ejection ends first (no health_check: no check time)
  EXPECT_EQ(stats_.opened.get(), 0);
  EXPECT_EQ(stats_.connect_errors.get(), 0);
  EXPECT_EQ(shared.unavailable.load(), 1u);
}

TEST_F(ClusterTest, UnreachableAndOutTogetherTriesOnlyTheUnreachable) {
  make({false, true});
  health_->target(0, 0).report(false, "refused");           // unreachable: last resort
  health_->target(0, 1).set(TargetHealth::kEjected, true);  // out
  auto a = acquire();
  EXPECT_EQ(a.conn, nullptr);
  EXPECT_EQ(a.status, 502u);  // tried (and refused), so a 502, not "unavailable"
  EXPECT_FALSE(a.unavailable);
  EXPECT_EQ(stats_.connect_errors.get(), 1);
}

}  // namespace
}  // namespace gatehouse::upstream
