#include "upstream/load_balancer.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace gatehouse::upstream {
namespace {

class RoundRobinTest : public ::testing::Test {
 protected:
  explicit RoundRobinTest(std::size_t n = 3) {
    for (std::size_t i = 0; i < n; ++i) {
      // (A literal name: "t" + to_string trips g++ 12's -Wstringop-overflow false positive.)
      owned_.push_back(
          std::make_unique<observability::TargetHealth>(std::string(1, char('a' + i))));
      views_.push_back(owned_.back().get());
    }
  }
  void down(std::size_t t) { owned_[t]->report(false, "refused"); }

  // The first pick of a new walk (one request whose first connect succeeds).
  std::size_t pick() {
    Walk w;
    auto c = rr_.next(w, views_);
    EXPECT_TRUE(c.has_value());
    return c ? c->target : 99;
  }
  // Every candidate of one walk, in order (a request whose connects all fail).
  std::vector<std::size_t> walk() {
    std::vector<std::size_t> out;
    Walk w;
    while (auto c = rr_.next(w, views_)) {
      out.push_back(c->target);
    }
    return out;
  }

  // Every candidate of one walk that avoids `avoid` (a retry after a failed try there).
  std::vector<std::size_t> walk_avoiding(std::size_t avoid) {
    std::vector<std::size_t> out;
    Walk w;
    w.avoid = avoid;
    while (auto c = rr_.next(w, views_)) {
      out.push_back(c->target);
    }
    return out;
  }

  std::vector<std::unique_ptr<observability::TargetHealth>> owned_;
  std::vector<observability::TargetHealth*> views_;
  RoundRobin rr_;
};

TEST_F(RoundRobinTest, TakesTurns) {
  std::vector<std::size_t> got;
  for (int i = 0; i < 7; ++i) {
    got.push_back(pick());
  }
  EXPECT_EQ(got, (std::vector<std::size_t>{0, 1, 2, 0, 1, 2, 0}));
}

TEST_F(RoundRobinTest, OffersTheAvoidedTargetLast) {
  // The cursor is at 0: the retry's walk would start there, but 0 failed the try before.
  EXPECT_EQ(walk_avoiding(0), (std::vector<std::size_t>{1, 2, 0}));
  down(2);
  // Unreachable targets still come before the avoided one: it just failed a real request.
  EXPECT_EQ(walk_avoiding(1), (std::vector<std::size_t>{0, 2, 1}));
}

class RoundRobinOneTarget : public RoundRobinTest {
 protected:
  RoundRobinOneTarget() : RoundRobinTest(1) {}
};

TEST_F(RoundRobinOneTarget, AvoidingTheOnlyTargetStillOffersIt) {
  EXPECT_EQ(walk_avoiding(0), (std::vector<std::size_t>{0}));
}

TEST_F(RoundRobinTest, SkipsUnreachableTargets) {
  down(1);
  std::vector<std::size_t> got;
  for (int i = 0; i < 4; ++i) {
    got.push_back(pick());
  }
  EXPECT_EQ(got, (std::vector<std::size_t>{0, 2, 0, 2}));
}

TEST_F(RoundRobinTest, AWalkOffersReachableFirstThenTheRest) {
  down(0);
  EXPECT_EQ(walk(), (std::vector<std::size_t>{1, 2, 0}));
  // The cursor is after the last candidate offered (0): the next walk starts at 1.
  EXPECT_EQ(walk(), (std::vector<std::size_t>{1, 2, 0}));
}

TEST_F(RoundRobinTest, AllUnreachableStillTriesEveryTargetInTurn) {
  down(0);
  down(1);
  down(2);
  EXPECT_EQ(pick(), 0u);
  EXPECT_EQ(pick(), 1u);
  EXPECT_EQ(walk(), (std::vector<std::size_t>{2, 0, 1}));
}

TEST_F(RoundRobinTest, CursorMovesPastTheChosenTargetNotTheStart) {
  EXPECT_EQ(pick(), 0u);
  down(1);
  EXPECT_EQ(pick(), 2u);  // 1 skipped; the cursor is now after 2
  owned_[1]->report(true);
  EXPECT_EQ(pick(), 0u);
  EXPECT_EQ(pick(), 1u);  // back in turn at once
}

TEST(RoundRobin, OneTarget) {
  observability::TargetHealth h("only");
  std::vector<observability::TargetHealth*> v{&h};
  RoundRobin rr;
  Walk w;
  auto c = rr.next(w, v);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->target, 0u);
  EXPECT_TRUE(c->reachable);
  EXPECT_FALSE(rr.next(w, v)) << "one candidate per target per walk";
  h.report(false);
  Walk w2;
  c = rr.next(w2, v);
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->reachable);
}

}  // namespace
}  // namespace gatehouse::upstream
