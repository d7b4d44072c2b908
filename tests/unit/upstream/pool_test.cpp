#include "upstream/pool.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "loopback.hpp"

namespace gatehouse::upstream {
namespace {

using namespace std::chrono_literals;

class PoolTest : public ::testing::Test {
 protected:
  PoolTest() {
    cfg_.max_idle_per_target = 2;
    cfg_.keepalive_timeout = config::Millis(30'000);
  }

  // A live connection to `target`; its peer stays open until the test closes it.
  std::unique_ptr<Connection> conn(std::size_t target) {
    auto [ours, theirs] = test::socket_pair(ioc_);
    auto c = std::make_unique<Connection>(ioc_.get_executor());
    c->socket = std::move(ours);
    c->target = target;
    peers_.push_back(std::move(theirs));
    return c;
  }

  io::net::io_context ioc_;
  io::DeadlineList deadlines_;  // before the connections: they unlink from it
  config::Upstream cfg_;
  observability::Cell idle_;
  Pool pool_{deadlines_, cfg_, 2, idle_};
  std::vector<tcp::socket> peers_;
  const Clock::time_point t0_ = Clock::now();
};

TEST_F(PoolTest, ReusesTheNewestIdleConnectionFirst) {
  auto a = conn(0);
  auto b = conn(0);
  auto* pa = a.get();
  auto* pb = b.get();
  pool_.release(std::move(a), t0_);
  pool_.release(std::move(b), t0_);
  EXPECT_EQ(idle_.get(), 2);
  auto first = pool_.take(0, t0_);
  auto second = pool_.take(0, t0_);
  EXPECT_EQ(first.get(), pb);
  EXPECT_EQ(second.get(), pa);
  EXPECT_TRUE(first->reused);
  EXPECT_EQ(pool_.take(0, t0_), nullptr);
  EXPECT_EQ(idle_.get(), 0);
}

TEST_F(PoolTest, IdleListsArePerTarget) {
  pool_.release(conn(1), t0_);
  EXPECT_EQ(pool_.take(0, t0_), nullptr);
  auto c = pool_.take(1, t0_);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->target, 1u);
}

TEST_F(PoolTest, DetectsAConnectionTheUpstreamClosed) {
  auto live = conn(0);
  auto* plive = live.get();
  pool_.release(std::move(live), t0_);
  pool_.release(conn(0), t0_);
  peers_.back().close();  // the upstream closed the newest one while it was idle
  // Idle for more than a second: the socket is probed (the closed one is readable: EOF).
  auto c = pool_.take(0, t0_ + 2s);
  EXPECT_EQ(c.get(), plive);
  EXPECT_EQ(pool_.idle(0), 0u);
  EXPECT_EQ(idle_.get(), 0);
}

TEST_F(PoolTest, BytesWaitingOnAnIdleConnectionMakeItStale) {
  pool_.release(conn(0), t0_);
  io::net::write(peers_.back(), io::net::buffer(std::string_view("junk")));
  EXPECT_EQ(pool_.take(0, t0_ + 2s), nullptr);
}

TEST_F(PoolTest, JustReleasedConnectionsAreNotProbed) {
  pool_.release(conn(0), t0_);
  peers_.back().close();
  // Reused within a second (steady traffic): taken without a syscall; the proxy's retry covers a
  // connection that died in that second.
  EXPECT_NE(pool_.take(0, t0_ + 500ms), nullptr);
}

TEST_F(PoolTest, ConnectionsPastKeepaliveTimeoutAreNotReused) {
  pool_.release(conn(0), t0_);
  EXPECT_EQ(pool_.take(0, t0_ + 30s + 1ms), nullptr);
}

TEST_F(PoolTest, PruneClosesOnlyConnectionsIdlePastKeepaliveTimeout) {
  pool_.release(conn(0), t0_);
  pool_.release(conn(1), t0_ + 10s);
  pool_.prune(t0_ + 30s);
  EXPECT_EQ(pool_.idle(0), 1u);
  EXPECT_EQ(pool_.idle(1), 1u);
  pool_.prune(t0_ + 30s + 1ms);
  EXPECT_EQ(pool_.idle(0), 0u);
  EXPECT_EQ(pool_.idle(1), 1u);
  EXPECT_EQ(idle_.get(), 1);
  pool_.prune(t0_ + 41s);
  EXPECT_EQ(pool_.idle(1), 0u);
  EXPECT_EQ(idle_.get(), 0);
}

TEST_F(PoolTest, KeepsAtMostMaxIdlePerTarget) {
  for (int i = 0; i < 3; ++i) {
    pool_.release(conn(0), t0_);
  }
  pool_.release(conn(1), t0_);
  EXPECT_EQ(pool_.idle(0), 2u);
  EXPECT_EQ(pool_.idle(1), 1u);
  EXPECT_EQ(idle_.get(), 3);
}

TEST_F(PoolTest, AConnectionWithUnreadBytesIsClosedNotKept) {
  auto c = conn(0);
  auto b = c->buffer.prepare(3);
  std::memcpy(b.data(), "xyz", 3);
  c->buffer.commit(3);
  pool_.release(std::move(c), t0_);
  EXPECT_EQ(pool_.idle(0), 0u);
  EXPECT_EQ(idle_.get(), 0);
}

TEST_F(PoolTest, CloseAllEmptiesEveryList) {
  pool_.release(conn(0), t0_);
  pool_.release(conn(1), t0_);
  pool_.close_all();
  EXPECT_EQ(pool_.idle(0) + pool_.idle(1), 0u);
  EXPECT_EQ(idle_.get(), 0);
}

TEST_F(PoolTest, ATakenConnectionIsUnderTheWorkersDeadlines) {
  pool_.release(conn(0), t0_);
  EXPECT_TRUE(deadlines_.empty()) << "idle connections have no deadline";
  auto c = pool_.take(0, t0_);
  EXPECT_FALSE(deadlines_.empty());
}

}  // namespace
}  // namespace gatehouse::upstream
