// i12-resolve: a re-resolved host name's addresses as target slots. diff_slots (pure: which slot
// each address keeps, takes or frees; capacity overflow), Resolver::apply on the process-wide
// state (health, outlier cap, counts, /health/detailed) and a worker's Cluster following the
// slots over real loopback listeners (removed addresses get no request, added ones do, a
// connection to a removed address is not pooled).
#include "upstream/resolver.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "loopback.hpp"
#include "upstream/cluster.hpp"

namespace gatehouse::upstream {
namespace {

using namespace std::chrono_literals;
using observability::TargetHealth;
using Strings = std::vector<std::string>;
using Added = std::vector<std::pair<std::size_t, std::string>>;

// --- diff_slots ------------------------------------------------------------------------------

TEST(DiffSlots, FirstResolutionFillsSlotsInOrder) {
  Strings slots(4);
  auto c = diff_slots(slots, Strings{"10.0.0.1:80", "10.0.0.2:80"});
  EXPECT_TRUE(c.removed.empty());
  EXPECT_EQ(c.added, (Added{{0, "10.0.0.1:80"}, {1, "10.0.0.2:80"}}));
  EXPECT_TRUE(c.overflow.empty());
}

TEST(DiffSlots, SameAddressesInAnotherOrderChangeNothing) {
  Strings slots{"10.0.0.1:80", "10.0.0.2:80", ""};
  EXPECT_TRUE(diff_slots(slots, Strings{"10.0.0.2:80", "10.0.0.1:80"}).empty());
}

TEST(DiffSlots, AVanishedAddressFreesItsSlotAndTheOthersKeepTheirs) {
  Strings slots{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"};
  auto c = diff_slots(slots, Strings{"10.0.0.3:80", "10.0.0.1:80"});
  EXPECT_EQ(c.removed, (std::vector<std::size_t>{1}));
  EXPECT_TRUE(c.added.empty());
}

TEST(DiffSlots, ANewAddressTakesASlotThatWasFreeBeforeAJustFreedOne) {
  // Slot 0 is freed by this resolution; slot 2 was free already: the new address goes to 2, so a
  // worker still connecting to the old address of slot 0 for a moment finds no one else there.
  Strings slots{"10.0.0.1:80", "10.0.0.2:80", ""};
  auto c = diff_slots(slots, Strings{"10.0.0.2:80", "10.0.0.9:80"});
  EXPECT_EQ(c.removed, (std::vector<std::size_t>{0}));
  EXPECT_EQ(c.added, (Added{{2, "10.0.0.9:80"}}));
  // With no slot free before, the freed one is reused.
  Strings full{"10.0.0.1:80", "10.0.0.2:80"};
  auto d = diff_slots(full, Strings{"10.0.0.2:80", "10.0.0.9:80"});
  EXPECT_EQ(d.removed, (std::vector<std::size_t>{0}));
  EXPECT_EQ(d.added, (Added{{0, "10.0.0.9:80"}}));
}

TEST(DiffSlots, DuplicatesCountOnce) {
  Strings slots(3);
  auto c = diff_slots(slots, Strings{"10.0.0.1:80", "10.0.0.1:80", "[::1]:80", "10.0.0.1:80"});
  EXPECT_EQ(c.added, (Added{{0, "10.0.0.1:80"}, {1, "[::1]:80"}}));
}

TEST(DiffSlots, MoreAddressesThanSlotsOverflowWithoutMovingTheKeptOnes) {
  Strings slots{"10.0.0.1:80", ""};
  auto c = diff_slots(slots, Strings{"10.0.0.7:80", "10.0.0.8:80", "10.0.0.1:80", "10.0.0.9:80"});
  EXPECT_TRUE(c.removed.empty());
  EXPECT_EQ(c.added, (Added{{1, "10.0.0.7:80"}}));
  EXPECT_EQ(c.overflow, (Strings{"10.0.0.8:80", "10.0.0.9:80"}));
  // Later, when one of the kept addresses goes, an overflowed one gets its slot.
  Strings now{"10.0.0.1:80", "10.0.0.7:80"};
  auto d = diff_slots(now, Strings{"10.0.0.7:80", "10.0.0.8:80"});
  EXPECT_EQ(d.removed, (std::vector<std::size_t>{0}));
  EXPECT_EQ(d.added, (Added{{0, "10.0.0.8:80"}}));
  EXPECT_TRUE(d.overflow.empty());
}

// --- Resolver::apply ---------------------------------------------------------------------------

tcp::endpoint ep(const char* ip, std::uint16_t port) {
  return {io::net::ip::make_address(ip), port};
}

class ResolverTest : public ::testing::Test {
 protected:
  // Upstream "app": an address target, then host name "app.test" with `max` slots.
  void make(std::size_t max, std::uint16_t port = 8000, std::uint16_t address_port = 7000) {
    config::Upstream u;
    u.name = "app";
    u.targets = {config::Endpoint{"127.0.0.1", address_port}, config::Endpoint{"app.test", port}};
    u.resolve_interval = 30s;
    u.max_addresses = max;
    u.outlier = config::OutlierConfig{.consecutive_5xx = 2, .max_ejected_percent = 50};
    cfg_.upstreams = {u};
    cfg_.health.cache_ttl = config::Millis{0};
    cfg_.log.access = cfg_.log.error = cfg_.log.security = "off";
    health_ = std::make_unique<observability::Health>(cfg_, 1, "test");
    shared_ = std::make_unique<UpstreamHealth>(cfg_.upstreams[0], 0, *health_, 1, nullptr);
    resolver_ = std::make_unique<Resolver>(ioc_, cfg_, *health_, nullptr, nullptr);
    resolver_->attach(0, shared_.get());
  }
  TargetHealth& slot(std::size_t t) { return health_->target(0, t); }

  io::net::io_context ioc_;
  config::Config cfg_;
  std::unique_ptr<observability::Health> health_;
  std::unique_ptr<UpstreamHealth> shared_;
  std::unique_ptr<Resolver> resolver_;
};

TEST_F(ResolverTest, NameSlotsStartRetiredAndTheAddressTargetDoesNot) {
  make(4);
  ASSERT_EQ(health_->target_count(0), 5u);
  EXPECT_FALSE(slot(0).retired());
  EXPECT_EQ(slot(0).address(), "127.0.0.1:7000");
  for (std::size_t t = 1; t < 5; ++t) {
    EXPECT_TRUE(slot(t).retired());
    EXPECT_TRUE(slot(t).out());
    EXPECT_FALSE(slot(t).reachable());
    EXPECT_EQ(health_->target_name(0, t), "app.test:8000");
  }
  ASSERT_NE(resolver_->slots(0), nullptr);
  EXPECT_EQ(resolver_->slots(0)->view()->addresses[0], "127.0.0.1:7000");
}

TEST_F(ResolverTest, AddressesFillSlotsThenLeaveThem) {
  make(4);
  const auto v0 = resolver_->slots(0)->version();
  auto c = resolver_->apply(0, 0, {ep("10.0.0.1", 8000), ep("::1", 8000)});
  EXPECT_EQ(c.added.size(), 2u);
  EXPECT_GT(resolver_->slots(0)->version(), v0);
  EXPECT_EQ(slot(1).address(), "10.0.0.1:8000");
  EXPECT_EQ(slot(2).address(), "[::1]:8000");
  EXPECT_TRUE(slot(1).reachable());
  EXPECT_TRUE(slot(2).reachable());
  EXPECT_TRUE(slot(3).retired());
  auto view = resolver_->slots(0)->view();
  EXPECT_EQ(view->endpoints[2], ep("::1", 8000));
  EXPECT_EQ(resolver_->counts(0).added.load(), 2u);

  // ::1 goes, 10.0.0.2 comes: ::1's slot retires, 10.0.0.2 takes slot 3 (free before).
  slot(2).set(TargetHealth::kUnhealthy, true);
  const auto gen2 = view->generations[2];
  c = resolver_->apply(0, 0, {ep("10.0.0.1", 8000), ep("10.0.0.2", 8000)});
  EXPECT_EQ(c.removed, (std::vector<std::size_t>{1}));  // within the block
  EXPECT_TRUE(slot(2).retired());
  EXPECT_TRUE(slot(2).out());
  EXPECT_EQ(slot(3).address(), "10.0.0.2:8000");
  EXPECT_TRUE(slot(3).reachable());
  view = resolver_->slots(0)->view();
  EXPECT_NE(view->generations[2], gen2);
  EXPECT_TRUE(view->addresses[2].empty());
  EXPECT_EQ(resolver_->counts(0).removed.load(), 1u);

  // Reused later for another address: fresh state (the unhealthy mark was the old address's).
  c = resolver_->apply(0, 0, {ep("10.0.0.1", 8000), ep("10.0.0.2", 8000), ep("10.0.0.3", 8000)});
  EXPECT_EQ(slot(2).address(), "10.0.0.3:8000");
  EXPECT_TRUE(slot(2).reachable());
  EXPECT_EQ(slot(2).state(), std::string("healthy"));
}

TEST_F(ResolverTest, OverflowIsCountedAndTheOutlierCapFollowsTheLiveTargets) {
  make(8);
  // 1 address target + 8 slots: before any resolution the cap is a share of the slots.
  resolver_->apply(0, 0, {ep("10.0.0.1", 8000), ep("10.0.0.2", 8000), ep("10.0.0.3", 8000)});
  // 4 live targets, 50%: 2 (not 4 of the 9 slots).
  EXPECT_EQ(shared_->outlier()->max_ejected(), 2u);
  make(2);
  resolver_->apply(0, 0, {ep("10.0.0.1", 8000), ep("10.0.0.2", 8000), ep("10.0.0.3", 8000)});
  EXPECT_EQ(resolver_->counts(0).overflow.load(), 1u);
  EXPECT_EQ(resolver_->counts(0).added.load(), 2u);
  EXPECT_EQ(shared_->outlier()->max_ejected(), 1u);  // 3 live
}

TEST_F(ResolverTest, ARetiredEjectedSlotGivesItsEjectionBack) {
  make(2);
  resolver_->apply(0, 0, {ep("10.0.0.1", 8000), ep("10.0.0.2", 8000)});
  auto now = UpstreamHealth::Clock::now();
  shared_->report(0, 1, TryOutcome::http_5xx, false, now, "r1");
  shared_->report(0, 1, TryOutcome::http_5xx, false, now, "r2");
  ASSERT_EQ(shared_->outlier()->ejected(), 1u);
  resolver_->apply(0, 0, {ep("10.0.0.2", 8000)});
  EXPECT_EQ(shared_->outlier()->ejected(), 0u);
  EXPECT_TRUE(slot(1).retired());
  EXPECT_EQ(slot(1).flags() & TargetHealth::kEjected, 0);
}

TEST_F(ResolverTest, AFailureKeepsTheAddressesAndShowsInHealth) {
  make(2);
  resolver_->apply(0, 0, {ep("10.0.0.1", 8000)});
  resolver_->failed(0, 0, "Host not found (authoritative)");
  EXPECT_EQ(slot(1).address(), "10.0.0.1:8000");
  EXPECT_TRUE(slot(1).reachable());
  EXPECT_EQ(resolver_->counts(0).failures.load(), 1u);
  observability::ComponentReport r;
  resolver_->report(0, r);
  EXPECT_EQ(r.status, observability::Status::degraded);
  EXPECT_EQ(r.detail["resolve"]["names"][0]["name"], "app.test:8000");
  EXPECT_EQ(r.detail["resolve"]["names"][0]["addresses"], 1);
  EXPECT_EQ(r.detail["resolve"]["names"][0]["last_error"], "Host not found (authoritative)");
  // /health/detailed lists the slots with an address only, each with its name.
  auto d = health_->detailed();
  auto targets = d["components"]["upstream:app"]["targets"];
  ASSERT_EQ(targets.size(), 2u) << d.dump();
  EXPECT_EQ(targets[1]["address"], "10.0.0.1:8000");
  EXPECT_EQ(targets[1]["name"], "app.test:8000");
  // The next success clears the error.
  resolver_->apply(0, 0, {ep("10.0.0.1", 8000)});
  observability::ComponentReport ok;
  resolver_->report(0, ok);
  EXPECT_EQ(ok.status, observability::Status::ok);
}

TEST(ResolvedTargetMetrics, ASlotsSeriesFollowItsAddressAndStartFromZero) {
  observability::Metrics m(1, {"r"}, {"app"}, {{"127.0.0.1:7000", "", ""}});
  auto& slot1 = m.worker(0).upstreams[0].targets[1];
  auto text = m.render();
  EXPECT_EQ(text.find("target=\"\""), std::string::npos) << "an empty slot has no series";
  m.set_target_name(0, 1, "10.0.0.1:8000");
  slot1.requests.add(5);
  slot1.record_head(1000);
  text = m.render();
  EXPECT_NE(text.find("gatehouse_upstream_target_requests_total{upstream=\"app\",target=\"10.0.0.1:"
                      "8000\"} 5\n"),
            std::string::npos)
      << text;
  // The slot goes to another address: its series starts from 0, the old one is gone.
  m.set_target_name(0, 1, "10.0.0.2:8000");
  slot1.requests.add(2);
  text = m.render();
  EXPECT_EQ(text.find("10.0.0.1:8000"), std::string::npos);
  EXPECT_NE(text.find("gatehouse_upstream_target_requests_total{upstream=\"app\",target=\"10.0.0.2:"
                      "8000\"} 2\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("gatehouse_upstream_target_response_head_seconds_count{upstream=\"app\","
                      "target=\"10.0.0.2:8000\"} 0\n"),
            std::string::npos)
      << text;
}

// --- a worker's Cluster following the slots ----------------------------------------------------

class FollowTest : public ResolverTest {
 protected:
  // Listeners on 127.0.0.1:P and 127.0.0.2:P (the name's port) and on the address target's port.
  void listen() {
    tcp::acceptor a(ioc_, ep("127.0.0.1", 0));
    port_ = a.local_endpoint().port();
    acceptors_.push_back(std::move(a));
    acceptors_.emplace_back(ioc_, ep("127.0.0.2", port_));
    tcp::acceptor b(ioc_, ep("127.0.0.1", 0));
    address_port_ = b.local_endpoint().port();
    acceptors_.push_back(std::move(b));
    make(2, port_, address_port_);
    logs_ = std::make_unique<observability::Logs>(cfg_.log);
    resolver_->apply(0, 0, {ep("127.0.0.1", port_)});
    stats_.size_targets(health_->target_count(0));
    cluster_ =
        std::make_unique<Cluster>(ioc_.get_executor(), deadlines_, 0, cfg_.upstreams[0],
                                  resolver_->slots(0)->view()->endpoints, stats_, *health_, *logs_);
    cluster_->follow(resolver_->slots(0));
  }
  Acquired acquire() { return test::run(ioc_, cluster_->acquire(false, "req")); }
  std::string peer(const Acquired& a) {
    return a.conn->socket.remote_endpoint().address().to_string();
  }

  std::uint16_t port_ = 0;
  std::uint16_t address_port_ = 0;
  io::DeadlineList deadlines_;
  std::vector<tcp::acceptor> acceptors_;
  observability::UpstreamStats stats_;
  std::unique_ptr<observability::Logs> logs_;
  std::unique_ptr<Cluster> cluster_;
};

TEST_F(FollowTest, RequestsFollowTheAddressesAndIdleConnectionsOfARemovedOneClose) {
  listen();
  // Two live targets: the address target (slot 0) and 127.0.0.1:P (slot 1); never empty slot 2.
  std::vector<std::size_t> got;
  for (int i = 0; i < 4; ++i) {
    auto a = acquire();
    ASSERT_NE(a.conn, nullptr) << a.detail;
    got.push_back(a.conn->target);
    cluster_->release(std::move(a.conn));
  }
  EXPECT_EQ(got, (std::vector<std::size_t>{0, 1, 0, 1}));
  EXPECT_EQ(cluster_->pool().idle(1), 1u);
  EXPECT_EQ(cluster_->address(1), "127.0.0.1:" + std::to_string(port_));

  // 127.0.0.1 goes, 127.0.0.2 comes (slot 2): the next acquire sees it.
  resolver_->apply(0, 0, {ep("127.0.0.2", port_)});
  got.clear();
  for (int i = 0; i < 4; ++i) {
    auto a = acquire();
    ASSERT_NE(a.conn, nullptr) << a.detail;
    got.push_back(a.conn->target);
    if (a.conn->target == 2) {
      EXPECT_EQ(peer(a), "127.0.0.2");
    }
    cluster_->release(std::move(a.conn));
  }
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<std::size_t>{0, 0, 2, 2}));
  EXPECT_EQ(cluster_->pool().idle(1), 0u) << "the removed address's idle connection closed";
  EXPECT_EQ(cluster_->address(2), "127.0.0.2:" + std::to_string(port_));
  EXPECT_EQ(cluster_->address(1), "");
  // A retry after a 429 looks for another target that holds an address, not another slot.
  EXPECT_EQ(cluster_->target_count(), 3u);
  EXPECT_TRUE(cluster_->has_other_target(target_bit(0)));
  EXPECT_FALSE(cluster_->has_other_target(target_bit(0) | target_bit(2)));
}

TEST_F(FollowTest, AConnectionInUseWhenItsAddressGoesFinishesAndIsNotPooled) {
  listen();
  auto a = acquire();  // slot 0 (address target)
  auto b = acquire();  // slot 1: 127.0.0.1:P
  ASSERT_NE(b.conn, nullptr) << b.detail;
  ASSERT_EQ(b.conn->target, 1u);
  resolver_->apply(0, 0, {ep("127.0.0.2", port_)});
  // The request on it carries on (the socket is still open); released, it is closed.
  EXPECT_TRUE(b.conn->socket.is_open());
  auto c = acquire();  // refreshes this worker's view
  cluster_->release(std::move(b.conn));
  EXPECT_EQ(cluster_->pool().idle(1), 0u);
  cluster_->release(std::move(a.conn));
  cluster_->release(std::move(c.conn));
  EXPECT_EQ(cluster_->pool().idle_total(), 2u);
}

TEST_F(FollowTest, WhenEveryAddressIsRemovedOnlyTheOtherTargetsServe) {
  listen();
  health_->target(0, 0).set(TargetHealth::kUnhealthy, true);  // the address target is out too
  auto a = acquire();
  ASSERT_NE(a.conn, nullptr) << a.detail;
  EXPECT_EQ(a.conn->target, 1u);
  cluster_->release(std::move(a.conn));
  // A resolution that finds nothing is a failure (addresses kept); an empty answer to diff_slots
  // would retire everything: then nothing is left, and the answer is 503 without a connect.
  resolver_->apply(0, 0, {});
  auto b = acquire();
  EXPECT_EQ(b.conn, nullptr);
  EXPECT_EQ(b.status, 503u);
  EXPECT_TRUE(b.unavailable);
}

}  // namespace
}  // namespace gatehouse::upstream
