// The circuit breaker's transitions, with an injected clock.
#include "upstream/circuit_breaker.hpp"

#include <gtest/gtest.h>

namespace gatehouse::upstream {
namespace {

using namespace std::chrono_literals;
using State = CircuitBreaker::State;
using Transition = CircuitBreaker::Transition;
using Clock = CircuitBreaker::Clock;

class BreakerTest : public ::testing::Test {
 protected:
  explicit BreakerTest(config::CircuitBreakerConfig cfg = {.failure_ratio = 0.5,
                                                           .min_requests = 10,
                                                           .window = 10s,
                                                           .open_for = 15s,
                                                           .half_open_probes = 1})
      : cb_(cfg, 2) {}

  // `n` tries, alternating shards (two workers); the last transition.
  Transition tries(int n, bool failed, bool probe = false) {
    Transition last = Transition::none;
    for (int i = 0; i < n; ++i) {
      auto t = cb_.record(static_cast<unsigned>(i % 2), failed, probe, now_);
      if (t != Transition::none) {
        last = t;
      }
    }
    return last;
  }
  void open_it() {
    ASSERT_EQ(tries(10, true), Transition::opened);
    ASSERT_EQ(cb_.state(), State::open);
  }

  Clock::time_point now_ = Clock::time_point{} + 10'000s;
  CircuitBreaker cb_;
};

TEST_F(BreakerTest, StaysClosedBelowMinRequests) {
  EXPECT_EQ(tries(9, true), Transition::none);
  EXPECT_EQ(cb_.state(), State::closed);
  EXPECT_EQ(tries(1, true), Transition::opened);  // the 10th: 10/10 failed
  EXPECT_EQ(cb_.state(), State::open);
  EXPECT_EQ(cb_.opened_total(), 1u);
}

TEST_F(BreakerTest, StaysClosedBelowTheRatio) {
  tries(11, false);
  EXPECT_EQ(tries(10, true), Transition::none);  // 10/21 < 0.5
  EXPECT_EQ(cb_.state(), State::closed);
  EXPECT_EQ(tries(1, true), Transition::opened);  // 11/22
}

TEST_F(BreakerTest, AnOutcomeOlderThanTheWindowDoesNotWipeCurrentCounts) {
  // 9 failures now; then an outcome stamped a full window earlier (a try reported with its start
  // time) must neither count nor reset the bucket it maps to: the 10th failure still opens.
  tries(9, true);
  EXPECT_EQ(cb_.record(0, false, false, now_ - 10s), Transition::none);
  EXPECT_EQ(cb_.window(now_).requests, 9u);
  EXPECT_EQ(tries(1, true), Transition::opened);
}

TEST_F(BreakerTest, SuccessesNeverOpen) {
  EXPECT_EQ(tries(1000, false), Transition::none);
  EXPECT_EQ(cb_.state(), State::closed);
}

TEST_F(BreakerTest, OldFailuresLeaveTheWindow) {
  tries(9, true);
  now_ += 11s;  // past the window: those nine no longer count
  EXPECT_EQ(tries(9, true), Transition::none);
  EXPECT_EQ(cb_.state(), State::closed);
  EXPECT_EQ(cb_.window(now_).requests, 9u);
  EXPECT_EQ(cb_.window(now_).failures, 9u);
}

TEST_F(BreakerTest, CountsEveryShard) {
  tries(6, false);  // shards 0 and 1
  auto w = cb_.window(now_);
  EXPECT_EQ(w.requests, 6u);
  EXPECT_EQ(w.failures, 0u);
}

TEST_F(BreakerTest, OpenRejectsWithTheRemainingTime) {
  open_it();
  now_ += 5s;
  auto a = cb_.admit(now_);
  EXPECT_FALSE(a.allowed);
  EXPECT_EQ(a.retry_after, 10s);
  EXPECT_EQ(cb_.open_remaining(now_), 10s);
}

TEST_F(BreakerTest, HalfOpenAfterOpenForLetsOneProbeThrough) {
  open_it();
  now_ += 15s;
  auto a = cb_.admit(now_);
  EXPECT_TRUE(a.allowed);
  EXPECT_TRUE(a.probe);
  EXPECT_EQ(a.transition, Transition::half_opened);
  EXPECT_EQ(cb_.state(), State::half_open);
  auto b = cb_.admit(now_);  // the probe is out: others wait
  EXPECT_FALSE(b.allowed);
  EXPECT_GE(b.retry_after, 1ns);
}

TEST_F(BreakerTest, TickMovesToHalfOpenWithoutARequest) {
  open_it();
  now_ += 14s;
  EXPECT_EQ(cb_.tick(now_), Transition::none);
  now_ += 1s;
  EXPECT_EQ(cb_.tick(now_), Transition::half_opened);
  EXPECT_EQ(cb_.tick(now_), Transition::none);
  EXPECT_EQ(cb_.state(), State::half_open);
}

TEST_F(BreakerTest, ProbeSuccessCloses) {
  open_it();
  now_ += 15s;
  auto a = cb_.admit(now_);
  ASSERT_TRUE(a.probe);
  EXPECT_EQ(cb_.record(0, false, true, now_), Transition::closed);
  EXPECT_EQ(cb_.state(), State::closed);
  // The failures that opened it do not count any more: a fresh window.
  EXPECT_EQ(cb_.window(now_).failures, 0u);
  EXPECT_EQ(tries(5, true), Transition::none);
  EXPECT_EQ(cb_.state(), State::closed);
}

TEST_F(BreakerTest, ProbeFailureReopens) {
  open_it();
  now_ += 15s;
  ASSERT_TRUE(cb_.admit(now_).probe);
  EXPECT_EQ(cb_.record(1, true, true, now_), Transition::opened);
  EXPECT_EQ(cb_.state(), State::open);
  EXPECT_EQ(cb_.opened_total(), 2u);
  EXPECT_EQ(cb_.open_remaining(now_), 15s);
  EXPECT_FALSE(cb_.admit(now_).allowed);
}

TEST_F(BreakerTest, ALostProbeIsWrittenOffAfterOpenFor) {
  open_it();
  now_ += 15s;
  ASSERT_TRUE(cb_.admit(now_).probe);  // its client goes away: no outcome ever
  now_ += 14s;
  EXPECT_FALSE(cb_.admit(now_).allowed);
  now_ += 1s;
  auto a = cb_.admit(now_);
  EXPECT_TRUE(a.allowed);
  EXPECT_TRUE(a.probe);
  EXPECT_FALSE(cb_.admit(now_).allowed);
}

TEST_F(BreakerTest, AReleasedProbeLetsTheNextRequestProbe) {
  open_it();
  now_ += 15s;
  ASSERT_TRUE(cb_.admit(now_).probe);
  cb_.release_probe();  // it found every target out: no try, no verdict
  auto a = cb_.admit(now_);
  EXPECT_TRUE(a.allowed);
  EXPECT_TRUE(a.probe);
  EXPECT_FALSE(cb_.admit(now_).allowed);
}

TEST_F(BreakerTest, LateResultsOfNonProbesDoNotDecide) {
  open_it();
  now_ += 15s;
  ASSERT_TRUE(cb_.admit(now_).probe);
  // A request admitted before the breaker opened finishes now: not a probe.
  EXPECT_EQ(cb_.record(0, false, false, now_), Transition::none);
  EXPECT_EQ(cb_.record(0, true, false, now_), Transition::none);
  EXPECT_EQ(cb_.state(), State::half_open);
}

class BreakerProbesTest : public BreakerTest {
 protected:
  BreakerProbesTest()
      : BreakerTest({.min_requests = 4, .window = 1s, .open_for = 2s, .half_open_probes = 3}) {}
};

TEST_F(BreakerProbesTest, SeveralProbesThenClosed) {
  ASSERT_EQ(tries(4, true), Transition::opened);
  now_ += 2s;
  EXPECT_TRUE(cb_.admit(now_).probe);
  EXPECT_TRUE(cb_.admit(now_).probe);
  EXPECT_TRUE(cb_.admit(now_).probe);
  EXPECT_FALSE(cb_.admit(now_).allowed);
  EXPECT_EQ(cb_.record(0, false, true, now_), Transition::closed);
  EXPECT_TRUE(cb_.admit(now_).allowed);
}

TEST(CircuitBreakerNames, States) {
  EXPECT_STREQ(to_string(CircuitBreaker::State::closed), "closed");
  EXPECT_STREQ(to_string(CircuitBreaker::State::open), "open");
  EXPECT_STREQ(to_string(CircuitBreaker::State::half_open), "half_open");
}

}  // namespace
}  // namespace gatehouse::upstream
