// max_connections and the queue in front of it, and the per-target counts least_request reads,
// over real loopback listeners (connects complete into the backlog; nothing is accepted).
#include <gtest/gtest.h>

#include <optional>
#include <vector>

#include "loopback.hpp"
#include "upstream/cluster.hpp"

namespace gatehouse::upstream {
namespace {

using namespace std::chrono_literals;

class ClusterQueueTest : public ::testing::Test {
 protected:
  void make(std::size_t targets, std::size_t max_connections,
            config::Millis queue_timeout = config::Millis(20'000), std::size_t max_queued = 16) {
    config::Upstream u;
    u.name = "app";
    u.max_connections = max_connections;
    u.queue_timeout = queue_timeout;
    u.max_queued = max_queued;
    std::vector<tcp::endpoint> eps;
    for (std::size_t i = 0; i < targets; ++i) {
      acceptors_.emplace_back(ioc_, tcp::endpoint(io::net::ip::address_v4::loopback(), 0));
      eps.push_back(acceptors_.back().local_endpoint());
      u.targets.push_back({"127.0.0.1", eps.back().port()});
    }
    cfg_.upstreams = {u};
    cfg_.log.access = cfg_.log.error = cfg_.log.security = "off";
    health_ = std::make_unique<observability::Health>(cfg_, 1, "test");
    logs_ = std::make_unique<observability::Logs>(cfg_.log);
    stats_.size_targets(targets);
    cluster_ = std::make_unique<Cluster>(ioc_.get_executor(), deadlines_, 0, cfg_.upstreams[0], eps,
                                         stats_, *health_, *logs_);
  }

  Acquired acquire(Pick pick = {}) {
    return test::run(ioc_, cluster_->acquire(false, "r", kNoTarget, 0, pick));
  }

  // An acquire left running in the background; its result lands in the returned slot.
  std::shared_ptr<std::optional<Acquired>> start(Pick pick = {}) {
    auto slot = std::make_shared<std::optional<Acquired>>();
    io::net::co_spawn(ioc_, cluster_->acquire(false, "r", kNoTarget, 0, pick),
                      [slot](std::exception_ptr, Acquired a) { *slot = std::move(a); });
    settle();
    return slot;
  }
  // Runs what is ready now (no waiting on timers).
  void settle() {
    ioc_.restart();
    for (int i = 0; i < 20; ++i) {
      ioc_.poll();
    }
  }
  // Runs until `slot` is filled (a watchdog, not a timing check).
  void finish(const std::shared_ptr<std::optional<Acquired>>& slot) {
    ioc_.restart();
    for (int i = 0; i < 2000 && !*slot; ++i) {
      ioc_.run_for(10ms);
    }
    ASSERT_TRUE(slot->has_value());
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

TEST_F(ClusterQueueTest, UnderTheCapNothingWaits) {
  make(1, 2);
  auto a = acquire();
  auto b = acquire();
  ASSERT_NE(a.conn, nullptr);
  ASSERT_NE(b.conn, nullptr);
  EXPECT_EQ(cluster_->load().open, 2u);
  EXPECT_EQ(cluster_->load().active[0], 2u);
  EXPECT_EQ(stats_.queued.get(), 0);
}

TEST_F(ClusterQueueTest, AtTheCapARequestWaitsForTheReleasedConnection) {
  make(1, 1);
  auto a = acquire();
  ASSERT_NE(a.conn, nullptr);
  auto* held = a.conn.get();
  auto b = start();
  EXPECT_FALSE(*b) << "queued, not answered";
  EXPECT_EQ(cluster_->queued(), 1u);
  EXPECT_EQ(stats_.queued.get(), 1);
  cluster_->release(std::move(a.conn));
  finish(b);
  ASSERT_NE((*b)->conn, nullptr);
  EXPECT_EQ((*b)->conn.get(), held) << "the released connection is reused, none opened";
  EXPECT_EQ(stats_.opened.get(), 1);
  EXPECT_EQ(cluster_->queued(), 0u);
  EXPECT_EQ(stats_.queued.get(), 0);
  EXPECT_EQ(cluster_->load().open, 1u);
}

TEST_F(ClusterQueueTest, AClosedConnectionLetsTheNextOneOpen) {
  make(1, 1);
  auto a = acquire();
  auto b = start();
  EXPECT_FALSE(*b);
  a.conn.reset();  // the request ended with the connection closed (not reusable)
  finish(b);
  ASSERT_NE((*b)->conn, nullptr);
  EXPECT_EQ(stats_.opened.get(), 2);
  EXPECT_EQ(cluster_->load().open, 1u);
}

TEST_F(ClusterQueueTest, FirstInFirstOut) {
  make(1, 1);
  auto a = acquire();
  auto b = start();
  auto c = start();
  EXPECT_EQ(cluster_->queued(), 2u);
  a.conn.reset();
  finish(b);
  EXPECT_FALSE(*c) << "the second in line still waits";
  ASSERT_NE((*b)->conn, nullptr);
  (*b)->conn.reset();
  finish(c);
  EXPECT_NE((*c)->conn, nullptr);
}

TEST_F(ClusterQueueTest, TheWokenRequestGetsTheConnectionBeforeALaterArrival) {
  make(1, 1);
  auto a = acquire();
  auto b = start();
  cluster_->release(std::move(a.conn));  // b is woken
  auto c = start();
  finish(b);
  ASSERT_NE((*b)->conn, nullptr);
  EXPECT_FALSE(*c);
  EXPECT_EQ(cluster_->queued(), 1u);
  (*b)->conn.reset();
  finish(c);
}

TEST_F(ClusterQueueTest, QueueTimeoutIs503Busy) {
  make(1, 1, config::Millis(50));
  auto a = acquire();
  auto b = start();
  finish(b);
  EXPECT_EQ((*b)->conn, nullptr);
  EXPECT_EQ((*b)->status, 503u);
  EXPECT_NE((*b)->detail.find("queue_timeout"), std::string::npos) << (*b)->detail;
  EXPECT_EQ(stats_.busy.get(), 1);
  EXPECT_EQ(cluster_->queued(), 0u);
  EXPECT_EQ(stats_.queued.get(), 0);
}

TEST_F(ClusterQueueTest, AFullQueueIs503AtOnce) {
  make(1, 1, config::Millis(20'000), /*max_queued=*/1);
  auto a = acquire();
  auto b = start();
  EXPECT_FALSE(*b);
  auto c = start();  // answered without any release: the queue is full
  ASSERT_TRUE(*c);
  EXPECT_EQ((*c)->conn, nullptr);
  EXPECT_EQ((*c)->status, 503u);
  EXPECT_NE((*c)->detail.find("queue is full"), std::string::npos) << (*c)->detail;
  a.conn.reset();
  finish(b);
  EXPECT_NE((*b)->conn, nullptr);
}

TEST_F(ClusterQueueTest, AClientThatLeavesLeavesTheQueue) {
  make(1, 1);
  auto a = acquire();
  auto [client, peer] = test::socket_pair(ioc_);
  auto b = start(Pick{0, &client});
  EXPECT_EQ(cluster_->queued(), 1u);
  peer.close();
  finish(b);
  EXPECT_TRUE((*b)->client_gone);
  EXPECT_EQ((*b)->conn, nullptr);
  EXPECT_EQ(cluster_->queued(), 0u);
  EXPECT_EQ(stats_.busy.get(), 0);
}

TEST_F(ClusterQueueTest, BytesFromTheClientAreNotALeave) {
  make(1, 1);
  auto a = acquire();
  auto [client, peer] = test::socket_pair(ioc_);
  auto b = start(Pick{0, &client});
  io::net::write(peer, io::net::buffer(std::string_view("GET /next HTTP/1.1\r\n")));
  settle();
  EXPECT_FALSE(*b);
  EXPECT_EQ(cluster_->queued(), 1u);
  a.conn.reset();
  finish(b);
  EXPECT_NE((*b)->conn, nullptr);
  EXPECT_FALSE((*b)->client_gone);
}

TEST_F(ClusterQueueTest, AtTheCapAnIdleConnectionOfAnotherTargetIsClosedForANewOne) {
  make(2, 1);
  auto a = acquire();  // round robin: target 0
  ASSERT_NE(a.conn, nullptr);
  EXPECT_EQ(a.conn->target, 0u);
  cluster_->release(std::move(a.conn));
  EXPECT_EQ(cluster_->pool().idle(0), 1u);
  auto b = acquire();  // target 1's turn: 0's idle connection makes room
  ASSERT_NE(b.conn, nullptr);
  EXPECT_EQ(b.conn->target, 1u);
  EXPECT_EQ(cluster_->pool().idle(0), 0u);
  EXPECT_EQ(cluster_->load().open, 1u);
  EXPECT_EQ(stats_.idle.get(), 0);
}

TEST_F(ClusterQueueTest, FailedConnectsKeepTheirPlaceAndGiveItBack) {
  make(2, 1);
  acceptors_[0].close();  // target 0 refuses
  auto a = acquire();
  ASSERT_NE(a.conn, nullptr);
  EXPECT_EQ(a.conn->target, 1u);
  EXPECT_EQ(cluster_->load().open, 1u);
  acceptors_[1].close();
  a.conn.reset();
  auto b = acquire();
  EXPECT_EQ(b.conn, nullptr);
  EXPECT_EQ(b.status, 502u);
  EXPECT_EQ(cluster_->load().open, 0u) << "no place leaked by the failed walk";
  EXPECT_EQ(cluster_->load().active[0], 0u);
  EXPECT_EQ(cluster_->load().active[1], 0u);
}

TEST_F(ClusterQueueTest, PerTargetCountsFollowRequests) {
  make(2, 0);
  auto a = acquire();
  auto b = acquire();
  EXPECT_EQ(cluster_->load().active[0], 1u);
  EXPECT_EQ(cluster_->load().active[1], 1u);
  cluster_->release(std::move(a.conn));
  EXPECT_EQ(cluster_->load().active[0], 0u);
  EXPECT_EQ(cluster_->load().open, 2u) << "idle still counts as open";
  EXPECT_EQ(stats_.target(0)->requests.get(), 1);
  EXPECT_EQ(stats_.target(1)->requests.get(), 1);
}

TEST_F(ClusterQueueTest, LeastRequestAvoidsTheBusyTarget) {
  make(2, 0);
  // Rebuild with least_request over the same targets.
  cfg_.upstreams[0].balance.policy = config::BalancePolicy::least_request;
  std::vector<tcp::endpoint> eps{acceptors_[0].local_endpoint(), acceptors_[1].local_endpoint()};
  cluster_ = std::make_unique<Cluster>(ioc_.get_executor(), deadlines_, 0, cfg_.upstreams[0], eps,
                                       stats_, *health_, *logs_);
  std::vector<Acquired> held;
  for (int i = 0; i < 10; ++i) {
    held.push_back(acquire());
    ASSERT_NE(held.back().conn, nullptr);
  }
  // Two targets: both are drawn every time, so in-flight counts never differ by more than one.
  auto diff =
      static_cast<int>(cluster_->load().active[0]) - static_cast<int>(cluster_->load().active[1]);
  EXPECT_LE(std::abs(diff), 1);
}

TEST_F(ClusterQueueTest, HashPinsAKey) {
  make(3, 0);
  cfg_.upstreams[0].balance.policy = config::BalancePolicy::hash;
  std::vector<tcp::endpoint> eps;
  for (auto& a : acceptors_) {
    eps.push_back(a.local_endpoint());
  }
  cluster_ = std::make_unique<Cluster>(ioc_.get_executor(), deadlines_, 0, cfg_.upstreams[0], eps,
                                       stats_, *health_, *logs_);
  auto key = hash_key("user-7");
  auto first = acquire(Pick{key, nullptr});
  ASSERT_NE(first.conn, nullptr);
  for (int i = 0; i < 5; ++i) {
    auto again = acquire(Pick{key, nullptr});
    ASSERT_NE(again.conn, nullptr);
    EXPECT_EQ(again.conn->target, first.conn->target);
  }
}

}  // namespace
}  // namespace gatehouse::upstream
