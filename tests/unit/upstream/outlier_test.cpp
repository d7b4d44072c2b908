// Outlier ejection: triggers, the max_ejected cap, expiry and growth, with an injected clock.
#include "upstream/outlier.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

namespace gatehouse::upstream {
namespace {

using namespace std::chrono_literals;
using observability::TargetHealth;
using Clock = OutlierDetector::Clock;

class OutlierTest : public ::testing::Test {
 protected:
  void make(std::size_t n, config::OutlierConfig cfg = {}) {
    for (std::size_t i = 0; i < n; ++i) {
      owned_.push_back(std::make_unique<TargetHealth>(std::string(1, char('a' + i))));
      views_.push_back(owned_.back().get());
    }
    det_ = std::make_unique<OutlierDetector>(cfg, views_);
  }
  // `n` outcomes at target t; the last report's ejection, if any.
  std::optional<Ejection> repeat(std::size_t t, TryOutcome o, int n) {
    std::optional<Ejection> last;
    for (int i = 0; i < n; ++i) {
      last = det_->report(t, o, now_);
    }
    return last;
  }
  bool ejected(std::size_t t) const { return (owned_[t]->flags() & TargetHealth::kEjected) != 0; }

  Clock::time_point now_ = Clock::time_point{} + 1000s;  // a fake clock: tests move it
  std::vector<std::unique_ptr<TargetHealth>> owned_;
  std::vector<TargetHealth*> views_;
  std::unique_ptr<OutlierDetector> det_;
};

TEST_F(OutlierTest, EjectsAfterConsecutive5xxOnly) {
  make(3);
  EXPECT_FALSE(repeat(0, TryOutcome::http_5xx, 4));
  EXPECT_FALSE(ejected(0));
  auto e = det_->report(0, TryOutcome::http_5xx, now_);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->target, 0u);
  EXPECT_STREQ(e->reason, "consecutive_5xx");
  EXPECT_EQ(e->duration, 30s);
  EXPECT_TRUE(ejected(0));
  EXPECT_FALSE(owned_[0]->reachable());
  EXPECT_TRUE(owned_[0]->out());
  EXPECT_EQ(owned_[0]->passive.ejections.load(), 1u);
  EXPECT_EQ(det_->ejected(), 1u);
}

TEST_F(OutlierTest, ASuccessResetsTheCount) {
  make(3);
  repeat(0, TryOutcome::http_5xx, 4);
  det_->report(0, TryOutcome::success, now_);
  EXPECT_FALSE(repeat(0, TryOutcome::http_5xx, 4));
  EXPECT_EQ(owned_[0]->passive.consecutive_5xx.load(), 4u);
  EXPECT_FALSE(ejected(0));
}

TEST_F(OutlierTest, TimeoutsAndResetsCountAs5xx) {
  make(3);
  repeat(0, TryOutcome::timeout, 2);
  repeat(0, TryOutcome::reset, 2);
  auto e = det_->report(0, TryOutcome::http_5xx, now_);
  ASSERT_TRUE(e);
}

TEST_F(OutlierTest, ConsecutiveConnectFailures) {
  make(3);
  EXPECT_FALSE(repeat(1, TryOutcome::connect_failure, 2));
  auto e = det_->report(1, TryOutcome::connect_failure, now_);
  ASSERT_TRUE(e);
  EXPECT_STREQ(e->reason, "consecutive_connect_failures");
}

TEST_F(OutlierTest, A5xxResetsTheConnectFailureCount) {
  make(3);
  repeat(1, TryOutcome::connect_failure, 2);
  det_->report(1, TryOutcome::http_5xx, now_);
  EXPECT_FALSE(repeat(1, TryOutcome::connect_failure, 2));
  EXPECT_FALSE(ejected(1));
}

TEST_F(OutlierTest, ZeroTurnsATriggerOff) {
  make(3, {.consecutive_5xx = 0, .consecutive_connect_failures = 0});
  EXPECT_FALSE(repeat(0, TryOutcome::http_5xx, 100));
  EXPECT_FALSE(repeat(0, TryOutcome::connect_failure, 100));
  EXPECT_FALSE(ejected(0));
}

TEST_F(OutlierTest, NeverMoreThanMaxEjected) {
  make(4, {.max_ejected_percent = 50});  // 2 of 4
  EXPECT_EQ(det_->max_ejected(), 2u);
  EXPECT_TRUE(repeat(0, TryOutcome::http_5xx, 5));
  EXPECT_TRUE(repeat(1, TryOutcome::http_5xx, 5));
  EXPECT_FALSE(repeat(2, TryOutcome::http_5xx, 20));
  EXPECT_FALSE(ejected(2));
  EXPECT_EQ(det_->ejected(), 2u);
  // Once a slot frees, the next failure of the still-failing target ejects it.
  now_ += 30s;
  EXPECT_EQ(det_->sweep(now_), (std::vector<std::size_t>{0, 1}));
  EXPECT_TRUE(det_->report(2, TryOutcome::http_5xx, now_));
}

TEST_F(OutlierTest, CapRoundsDownButAllowsOneOfTwoOrMore) {
  make(3, {.max_ejected_percent = 10});
  EXPECT_EQ(det_->max_ejected(), 1u);
  owned_.clear();
  views_.clear();
  make(1, {.max_ejected_percent = 50});  // a lone target stays: nowhere to move traffic to
  EXPECT_EQ(det_->max_ejected(), 0u);
  EXPECT_FALSE(repeat(0, TryOutcome::http_5xx, 10));
  owned_.clear();
  views_.clear();
  make(1, {.max_ejected_percent = 100});
  EXPECT_EQ(det_->max_ejected(), 1u);
  owned_.clear();
  views_.clear();
  make(2, {.max_ejected_percent = 0});
  EXPECT_EQ(det_->max_ejected(), 0u);
}

TEST_F(OutlierTest, ReturnsAfterEjectForNotBefore) {
  make(2, {.eject_for = 30s});
  ASSERT_TRUE(repeat(0, TryOutcome::http_5xx, 5));
  now_ += 29s;
  EXPECT_TRUE(det_->sweep(now_).empty());
  EXPECT_TRUE(ejected(0));
  now_ += 1s;
  EXPECT_EQ(det_->sweep(now_), (std::vector<std::size_t>{0}));
  EXPECT_FALSE(ejected(0));
  EXPECT_TRUE(owned_[0]->reachable());
  EXPECT_EQ(det_->ejected(), 0u);
  EXPECT_EQ(owned_[0]->passive.consecutive_5xx.load(), 0u);
  EXPECT_TRUE(det_->sweep(now_).empty());  // returned once
}

TEST_F(OutlierTest, EjectionTimeGrowsWithRepeatsAndIsForgivenOverTime) {
  make(2, {.eject_for = 10s});
  auto e1 = repeat(0, TryOutcome::http_5xx, 5);
  ASSERT_TRUE(e1);
  EXPECT_EQ(e1->duration, 10s);
  now_ += 10s;
  det_->sweep(now_);
  auto e2 = repeat(0, TryOutcome::http_5xx, 5);  // at once again: twice as long
  ASSERT_TRUE(e2);
  EXPECT_EQ(e2->duration, 20s);
  now_ += 20s;
  det_->sweep(now_);
  now_ += 10s;  // one eject_for back in service forgives one
  auto e3 = repeat(0, TryOutcome::http_5xx, 5);
  ASSERT_TRUE(e3);
  EXPECT_EQ(e3->duration, 20s);
  now_ += 20s;
  det_->sweep(now_);
  now_ += 1h;  // long healthy: back to eject_for
  auto e4 = repeat(0, TryOutcome::http_5xx, 5);
  ASSERT_TRUE(e4);
  EXPECT_EQ(e4->duration, 10s);
}

TEST_F(OutlierTest, GrowthIsCapped) {
  make(2, {.eject_for = 1s});
  std::chrono::nanoseconds last{};
  for (int i = 0; i < 20; ++i) {
    auto e = repeat(0, TryOutcome::http_5xx, 5);
    ASSERT_TRUE(e);
    last = e->duration;
    now_ += e->duration;
    det_->sweep(now_);
  }
  EXPECT_EQ(last, 10s);  // kMaxMultiplier x eject_for
}

TEST_F(OutlierTest, AlreadyEjectedIsNotEjectedAgain) {
  make(3);
  ASSERT_TRUE(repeat(0, TryOutcome::http_5xx, 5));
  EXPECT_FALSE(repeat(0, TryOutcome::http_5xx, 10));
  EXPECT_EQ(owned_[0]->passive.ejections.load(), 1u);
  EXPECT_EQ(det_->ejected(), 1u);
}

}  // namespace
}  // namespace gatehouse::upstream
