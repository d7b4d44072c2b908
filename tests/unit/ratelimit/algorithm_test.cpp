// The four algorithms as pure functions of (params, state, now): window edges to the nanosecond,
// idle gaps, a clock going backwards, extreme counts and periods, and exact retry/reset values
// checked by evaluating at the moment they name.
#include "ratelimit/algorithm.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace gatehouse::ratelimit {
namespace {

constexpr Nanos kMs = 1'000'000;
constexpr Nanos kSec = 1'000'000'000;
constexpr Nanos kMin = 60 * kSec;
constexpr Nanos kDay = 86'400 * kSec;
constexpr Nanos kT0 = 1'234'567'891'011;  // an arbitrary first-request time

constexpr Algorithm kAll[] = {Algorithm::fixed_window, Algorithm::sliding_window,
                              Algorithm::token_bucket, Algorithm::gcra};

// One key under one limit, storing `next` only when the request is admitted (what MemoryStore
// does for a single check).
struct Key {
  Algorithm algorithm;
  Params params;
  State state = State::fresh();

  Outcome hit(Nanos now) {
    auto e = evaluate(algorithm, params, state, now);
    if (e.outcome.allowed) {
      state = e.next;
    }
    return e.outcome;
  }
  Outcome peek(Nanos now) const { return evaluate(algorithm, params, state, now).outcome; }
  // Admissions of `n` requests at `now`.
  int burst(Nanos now, int n) {
    int admitted = 0;
    for (int i = 0; i < n; ++i) {
      admitted += hit(now).allowed ? 1 : 0;
    }
    return admitted;
  }
};

std::string name_of(Algorithm a) {
  return algorithm_name(a);
}

// The requests a key may still make at once: what `remaining` promises.
std::uint64_t full_remaining(const Key& k) {
  return (k.algorithm == Algorithm::token_bucket || k.algorithm == Algorithm::gcra)
             ? k.params.effective_burst() - 1
             : k.params.count - 1;
}

// Whether the key is back to a full quota at `now`.
bool restored(const Key& k, Nanos now) {
  auto o = k.peek(now);
  return o.allowed && o.remaining == full_remaining(k);
}

TEST(AlgorithmName, Names) {
  EXPECT_STREQ(algorithm_name(Algorithm::sliding_window), "sliding_window");
  EXPECT_STREQ(algorithm_name(Algorithm::fixed_window), "fixed_window");
  EXPECT_STREQ(algorithm_name(Algorithm::token_bucket), "token_bucket");
  EXPECT_STREQ(algorithm_name(Algorithm::gcra), "gcra");
}

TEST(Evaluate, NeverMutatesAndFreshKeyAdmits) {
  for (auto a : kAll) {
    SCOPED_TRACE(name_of(a));
    const State fresh = State::fresh();
    auto e = evaluate(a, Params{3, kMin, 0}, fresh, kT0);
    EXPECT_TRUE(fresh.is_fresh());
    EXPECT_TRUE(e.outcome.allowed);
    EXPECT_EQ(e.outcome.limit, 3u);
    EXPECT_EQ(e.outcome.remaining, 2u);
    EXPECT_EQ(e.outcome.retry_after, 0);
    EXPECT_FALSE(e.next.is_fresh());
  }
}

// ---- fixed window ----

TEST(FixedWindow, ExactAtWindowEdge) {
  Key k{Algorithm::fixed_window, Params{3, kMin, 0}};
  auto first = k.hit(kT0);
  EXPECT_TRUE(first.allowed);
  EXPECT_EQ(first.remaining, 2u);
  EXPECT_EQ(first.reset_after, kMin);
  EXPECT_EQ(k.hit(kT0 + 1).remaining, 1u);
  auto third = k.hit(kT0 + 20 * kSec);
  EXPECT_TRUE(third.allowed);
  EXPECT_EQ(third.remaining, 0u);
  EXPECT_EQ(third.reset_after, 40 * kSec);

  auto rejected = k.hit(kT0 + 30 * kSec);
  EXPECT_FALSE(rejected.allowed);
  EXPECT_EQ(rejected.remaining, 0u);
  EXPECT_EQ(rejected.retry_after, 30 * kSec);
  EXPECT_EQ(rejected.reset_after, 30 * kSec);

  // The window is [first request, first request + P).
  EXPECT_FALSE(k.hit(kT0 + kMin - 1).allowed);
  auto next = k.hit(kT0 + kMin);
  EXPECT_TRUE(next.allowed);
  EXPECT_EQ(next.remaining, 2u);
  EXPECT_EQ(next.reset_after, kMin);
}

TEST(FixedWindow, OneNanosecondResolution) {
  Key k{Algorithm::fixed_window, Params{1, 1, 0}};
  for (Nanos t = kT0; t < kT0 + 100; ++t) {
    EXPECT_TRUE(k.hit(t).allowed) << t;
    auto again = k.hit(t);
    EXPECT_FALSE(again.allowed) << t;
    EXPECT_EQ(again.retry_after, 1);
  }
}

TEST(FixedWindow, IdleGapKeepsWindowsAnchoredToFirstRequest) {
  Key k{Algorithm::fixed_window, Params{2, kMin, 0}};
  EXPECT_EQ(k.burst(kT0, 3), 2);
  // 7 windows and 5 s later: in the window that started at kT0 + 7 min.
  auto o = k.hit(kT0 + 7 * kMin + 5 * kSec);
  EXPECT_TRUE(o.allowed);
  EXPECT_EQ(o.remaining, 1u);
  EXPECT_EQ(o.reset_after, kMin - 5 * kSec);
  EXPECT_TRUE(k.hit(kT0 + 8 * kMin - 1).allowed);
  EXPECT_FALSE(k.hit(kT0 + 8 * kMin - 1).allowed);
  EXPECT_TRUE(k.hit(kT0 + 8 * kMin).allowed);
}

// ---- sliding window ----

TEST(SlidingWindow, FirstWindowIsAFixedWindow) {
  Key k{Algorithm::sliding_window, Params{3, kMin, 0}};
  auto first = k.hit(kT0);
  EXPECT_EQ(first.remaining, 2u);
  // Until the request has slid out of the next window too.
  EXPECT_EQ(first.reset_after, 2 * kMin);
  EXPECT_EQ(k.burst(kT0 + kSec, 5), 2);
  auto rejected = k.hit(kT0 + 10 * kSec);
  EXPECT_FALSE(rejected.allowed);
  EXPECT_EQ(rejected.remaining, 0u);
  // Three requests in the previous window weigh 3 at its end: the next fits only once one third
  // of the window has passed (3 * (P - e) / P + 1 <= 3).
  EXPECT_EQ(rejected.retry_after, kMin - 10 * kSec + 20 * kSec);
  EXPECT_EQ(rejected.reset_after, 2 * kMin - 10 * kSec);
  EXPECT_FALSE(k.peek(kT0 + kMin).allowed);
  EXPECT_FALSE(k.peek(kT0 + kMin + 20 * kSec - 1).allowed);
  EXPECT_TRUE(k.peek(kT0 + kMin + 20 * kSec).allowed);
}

// The documented approximation: the previous window counts with the weight of the part of it
// the sliding window still covers, as if its requests were spread evenly.
TEST(SlidingWindow, PreviousWindowWeighted) {
  // All 10 at the start of the first window: at the middle of the second, a true sliding log
  // would see 0 requests in the last minute and admit 10; the approximation admits 5.
  Key early{Algorithm::sliding_window, Params{10, kMin, 0}};
  EXPECT_EQ(early.burst(kT0, 10), 10);
  EXPECT_EQ(early.burst(kT0 + kMin, 1), 0);  // weight 1 at the window edge
  auto half = early.peek(kT0 + kMin + 30 * kSec);
  EXPECT_TRUE(half.allowed);
  EXPECT_EQ(half.remaining, 4u);  // 10 * 0.5 + 1 used, 4 left
  EXPECT_EQ(early.burst(kT0 + kMin + 30 * kSec, 10), 5);

  // 1 at the start, 9 at the very end of the first window: at the middle of the second a true
  // sliding log still sees 9 requests and admits 1; the approximation admits 5.
  Key late{Algorithm::sliding_window, Params{10, kMin, 0}};
  EXPECT_EQ(late.burst(kT0, 1), 1);
  EXPECT_EQ(late.burst(kT0 + kMin - 1, 9), 9);
  EXPECT_EQ(late.burst(kT0 + kMin + 30 * kSec, 10), 5);

  // At three quarters: 10 * 0.25 = 2.5 plus 5 current -> 2 more fit (2.5 + 7 <= 10).
  EXPECT_EQ(late.burst(kT0 + kMin + 45 * kSec, 10), 2);
  // Two windows later nothing is left of either.
  auto clean = late.peek(kT0 + 3 * kMin);
  EXPECT_TRUE(clean.allowed);
  EXPECT_EQ(clean.remaining, 9u);
}

TEST(SlidingWindow, GapOfTwoWindowsForgetsEverything) {
  Key k{Algorithm::sliding_window, Params{4, kMin, 0}};
  EXPECT_EQ(k.burst(kT0, 4), 4);
  // Exactly two windows later the previous window is empty.
  auto o = k.peek(kT0 + 2 * kMin);
  EXPECT_TRUE(o.allowed);
  EXPECT_EQ(o.remaining, 3u);
  // 1 ns earlier the first window still weighs 4 * 1/P (rounded up to a whole request).
  auto before = k.peek(kT0 + 2 * kMin - 1);
  EXPECT_TRUE(before.allowed);
  EXPECT_EQ(before.remaining, 2u);
  // 100 windows later, windows still start at kT0 + k*P.
  auto far = k.hit(kT0 + 100 * kMin + 10 * kSec);
  EXPECT_TRUE(far.allowed);
  EXPECT_EQ(far.reset_after, 2 * kMin - 10 * kSec);
}

TEST(SlidingWindow, OneNanosecondPeriod) {
  Key k{Algorithm::sliding_window, Params{1, 1, 0}};
  EXPECT_TRUE(k.hit(kT0).allowed);
  auto r = k.hit(kT0);
  EXPECT_FALSE(r.allowed);
  // At kT0+1 the previous window weighs 1 * (1 - 0) / 1: full. Free at kT0 + 2.
  EXPECT_EQ(r.retry_after, 2);
  EXPECT_FALSE(k.hit(kT0 + 1).allowed);
  EXPECT_TRUE(k.hit(kT0 + 2).allowed);
}

// ---- token bucket ----

TEST(TokenBucket, BurstThenSteadyRate) {
  // 100/second burst 20: 20 at once, then exactly one per 10 ms.
  Key k{Algorithm::token_bucket, Params{100, kSec, 20}};
  auto first = k.hit(kT0);
  EXPECT_EQ(first.limit, 100u);
  EXPECT_EQ(first.remaining, 19u);
  EXPECT_EQ(first.reset_after, 10 * kMs);
  EXPECT_EQ(k.burst(kT0, 30), 19);
  auto empty = k.hit(kT0);
  EXPECT_FALSE(empty.allowed);
  EXPECT_EQ(empty.retry_after, 10 * kMs);
  EXPECT_EQ(empty.reset_after, 200 * kMs);

  for (int i = 1; i <= 100; ++i) {
    Nanos t = kT0 + i * 10 * kMs;
    SCOPED_TRACE(i);
    EXPECT_FALSE(k.hit(t - 1).allowed);
    EXPECT_TRUE(k.hit(t).allowed);
    auto after = k.hit(t);
    EXPECT_FALSE(after.allowed);
    EXPECT_EQ(after.retry_after, 10 * kMs);
  }
  // Idle for long: back to a full burst of 20, not more.
  EXPECT_EQ(k.burst(kT0 + 10 * kDay, 100), 20);
}

TEST(TokenBucket, ThirdsOfASecondAreExact) {
  // 3/second: one token every 333,333,333.3 ns, with no rounding carried from one to the next.
  Key k{Algorithm::token_bucket, Params{3, kSec, 0}};
  EXPECT_EQ(k.burst(0, 3), 3);
  auto r = k.hit(0);
  EXPECT_EQ(r.retry_after, 333'333'334);  // ceil(1e9 / 3)
  EXPECT_FALSE(k.hit(333'333'333).allowed);
  EXPECT_TRUE(k.hit(333'333'334).allowed);
  EXPECT_FALSE(k.hit(666'666'666).allowed);
  EXPECT_TRUE(k.hit(666'666'667).allowed);
  EXPECT_FALSE(k.hit(999'999'999).allowed);
  EXPECT_TRUE(k.hit(1'000'000'000).allowed);
  EXPECT_FALSE(k.hit(1'000'000'000).allowed);
}

TEST(TokenBucket, BurstDefaultsToCount) {
  Key k{Algorithm::token_bucket, Params{5, kMin, 0}};
  EXPECT_EQ(k.burst(kT0, 10), 5);
}

// ---- GCRA ----

TEST(Gcra, BurstThenSteadyRate) {
  Key k{Algorithm::gcra, Params{100, kSec, 20}};
  EXPECT_EQ(k.burst(kT0, 30), 20);
  auto empty = k.hit(kT0);
  EXPECT_EQ(empty.retry_after, 10 * kMs);
  EXPECT_EQ(empty.reset_after, 200 * kMs);
  for (int i = 1; i <= 100; ++i) {
    Nanos t = kT0 + i * 10 * kMs;
    EXPECT_FALSE(k.hit(t - 1).allowed) << i;
    EXPECT_TRUE(k.hit(t).allowed) << i;
    EXPECT_FALSE(k.hit(t).allowed) << i;
  }
}

// Token bucket and GCRA are the same limiter written two ways: on any schedule (the clock going
// back now and then included) they admit the same requests and report the same numbers.
TEST(Gcra, SameAsTokenBucketOnRandomSchedules) {
  std::mt19937_64 rng(20240601);
  for (int round = 0; round < 200; ++round) {
    std::uint64_t count = 1 + rng() % 50;
    Nanos period = std::vector<Nanos>{1, 7, kMs, kSec, kMin, 7 * kSec + 3}[rng() % 6];
    std::uint64_t burst = rng() % 3 == 0 ? 0 : 1 + rng() % 30;
    Params p{count, period, burst};
    Key tb{Algorithm::token_bucket, p};
    Key g{Algorithm::gcra, p};
    Nanos t = (1LL << 50) + static_cast<Nanos>(rng() % (1LL << 50));
    SCOPED_TRACE(testing::Message() << "round " << round << " count " << count << " period "
                                    << period << " burst " << burst);
    for (int i = 0; i < 300; ++i) {
      switch (rng() % 5) {
        case 0:
          break;  // same instant
        case 4:
          t -= static_cast<Nanos>(rng() % static_cast<std::uint64_t>(period));  // clock went back
          break;
        case 1:
          t += 1;
          break;
        case 2:
          t += static_cast<Nanos>(rng() % static_cast<std::uint64_t>(period / count + 1));
          break;
        default:
          t += static_cast<Nanos>(rng() % static_cast<std::uint64_t>(2 * period));
      }
      auto a = tb.hit(t);
      auto b = g.hit(t);
      ASSERT_EQ(a.allowed, b.allowed) << "step " << i;
      ASSERT_EQ(a.limit, b.limit) << "step " << i;
      ASSERT_EQ(a.remaining, b.remaining) << "step " << i;
      ASSERT_EQ(a.retry_after, b.retry_after) << "step " << i;
      ASSERT_EQ(a.reset_after, b.reset_after) << "step " << i;
    }
  }
}

// ---- every algorithm ----

// On random schedules: a rejection's retry_after is exact (still rejected 1 ns before, admitted
// at it), reset_after is exact (the key is fully restored at it and not 1 ns before),
// `remaining` more requests fit at the same instant and not one more.
TEST(AllAlgorithms, RetryResetAndRemainingAreExact) {
  std::mt19937_64 rng(7);
  for (auto a : kAll) {
    for (int round = 0; round < 60; ++round) {
      std::uint64_t count = 1 + rng() % 12;
      Nanos period = std::vector<Nanos>{1, 3, 1000, kSec, kMin, 13 * kSec + 7}[rng() % 6];
      std::uint64_t burst =
          (a == Algorithm::token_bucket || a == Algorithm::gcra) && rng() % 2 ? 1 + rng() % 8 : 0;
      Key k{a, Params{count, period, burst}};
      SCOPED_TRACE(testing::Message() << name_of(a) << " round " << round << " count " << count
                                      << " period " << period << " burst " << burst);
      Nanos t = kT0;
      for (int i = 0; i < 120; ++i) {
        t += rng() % 3 == 0 ? 0 : static_cast<Nanos>(rng() % static_cast<std::uint64_t>(period));
        auto o = k.hit(t);
        ASSERT_GE(o.reset_after, 0);
        ASSERT_GE(o.retry_after, 0);
        if (!o.allowed) {
          ASSERT_EQ(o.remaining, 0u);
          ASSERT_GT(o.retry_after, 0) << "step " << i;
          ASSERT_FALSE(k.peek(t + o.retry_after - 1).allowed) << "step " << i;
          ASSERT_TRUE(k.peek(t + o.retry_after).allowed) << "step " << i;
        } else {
          ASSERT_EQ(o.retry_after, 0);
          Key copy = k;
          for (std::uint64_t r = 0; r < o.remaining; ++r) {
            ASSERT_TRUE(copy.hit(t).allowed) << "step " << i << " extra " << r;
          }
          ASSERT_FALSE(copy.hit(t).allowed) << "step " << i;
        }
        ASSERT_TRUE(restored(k, t + o.reset_after)) << "step " << i;
        if (o.reset_after > 0) {
          ASSERT_FALSE(restored(k, t + o.reset_after - 1)) << "step " << i;
        }
      }
    }
  }
}

// Rejected evaluations are not stored; the counts come out right anyway: hammering a key admits
// exactly what the limit allows, whatever the number of rejected attempts in between.
TEST(AllAlgorithms, RejectionsConsumeNothing) {
  for (auto a : kAll) {
    SCOPED_TRACE(name_of(a));
    Key quiet{a, Params{10, kMin, 0}};
    Key hammered{a, Params{10, kMin, 0}};
    int quiet_admitted = 0;
    int hammered_admitted = 0;
    for (Nanos t = kT0; t < kT0 + 10 * kMin; t += 3 * kSec) {
      if ((t - kT0) % (12 * kSec) == 0) {
        quiet_admitted += quiet.burst(t, 1);
      }
      hammered_admitted += hammered.burst(t, 50);
    }
    // One attempt every 12 s is well under 10/minute: every one admitted.
    EXPECT_EQ(quiet_admitted, 50);
    // 50 per 3 s: the limit caps it, at exactly what the algorithm lets through.
    switch (a) {
      case Algorithm::fixed_window:
        EXPECT_EQ(hammered_admitted, 100);  // 10 per window, 10 windows
        break;
      case Algorithm::token_bucket:
      case Algorithm::gcra:
        // 10 at once, then one per 6 s over 597 s: 99 more.
        EXPECT_EQ(hammered_admitted, 10 + 99);
        break;
      case Algorithm::sliding_window:
        // At most 10 counted in any window; the previous window's weight holds it under.
        EXPECT_LE(hammered_admitted, 100);
        EXPECT_GE(hammered_admitted, 90);

        break;
    }
  }
}

TEST(AllAlgorithms, ClockGoingBackwardsGivesNoRefill) {
  for (auto a : kAll) {
    SCOPED_TRACE(name_of(a));
    const Params p{5, kMin, 0};
    Key k{a, p};
    EXPECT_EQ(k.burst(kT0 + 30 * kSec, 10), 5);
    const auto at_now = k.peek(kT0 + 30 * kSec);
    ASSERT_FALSE(at_now.allowed);
    for (Nanos back : {Nanos{1}, kSec, kMin, 10 * kMin, kT0 + 30 * kSec, kT0 + 30 * kSec + kDay}) {
      SCOPED_TRACE(back);
      auto o = k.peek(kT0 + 30 * kSec - back);
      EXPECT_FALSE(o.allowed);
      EXPECT_EQ(o.remaining, 0u);
      EXPECT_GT(o.retry_after, 0);
      EXPECT_GE(o.reset_after, 0);
      // No time passing: never asked to wait longer than at the latest time seen.
      EXPECT_LE(o.retry_after, at_now.retry_after);
      EXPECT_LE(o.reset_after, std::max(at_now.reset_after, 2 * kMin));
    }
    // A request admitted by a clock that went back does not give anything back either.
    Key j{a, p};
    EXPECT_EQ(j.burst(kT0, 3), 3);
    EXPECT_EQ(j.burst(kT0 - 10 * kSec, 1), 1);
    EXPECT_EQ(j.burst(kT0, 10), 1);
  }
}

// 1e9 requests per 366 days (the largest limit the config accepts), at clock values far from
// zero: no overflow anywhere.
TEST(AllAlgorithms, HugeCountsAndPeriods) {
  const Nanos year = kMaxPeriodSeconds * kSec;
  const Nanos far = 4'000'000'000'000'000'000;  // ~127 years of uptime
  for (auto a : kAll) {
    SCOPED_TRACE(name_of(a));
    Key k{a, Params{kMaxCount, year, 0}};
    auto first = k.hit(far);
    EXPECT_TRUE(first.allowed);
    EXPECT_EQ(first.limit, kMaxCount);
    EXPECT_EQ(first.remaining, kMaxCount - 1);
    EXPECT_GT(first.reset_after, 0);
    EXPECT_LE(first.reset_after, 2 * year);
    EXPECT_EQ(k.burst(far + year / 2, 1000), 1000);
    auto later = k.hit(far + 10 * year + 5);
    EXPECT_TRUE(later.allowed);
    EXPECT_EQ(later.remaining, kMaxCount - 1);

    // One per year: the second waits a whole year, to the nanosecond.
    Key one{a, Params{1, year, 0}};
    EXPECT_TRUE(one.hit(far).allowed);
    auto r = one.hit(far);
    EXPECT_FALSE(r.allowed);
    EXPECT_EQ(r.retry_after, a == Algorithm::sliding_window ? 2 * year : year);
    EXPECT_FALSE(one.peek(far + r.retry_after - 1).allowed);
    EXPECT_TRUE(one.peek(far + r.retry_after).allowed);
  }

  // Buckets: 1e9 per year is one per 31,622,400 ns exactly.
  for (auto a : {Algorithm::token_bucket, Algorithm::gcra}) {
    SCOPED_TRACE(name_of(a));
    Key k{a, Params{kMaxCount, year, 1}};
    EXPECT_TRUE(k.hit(far).allowed);
    auto r = k.hit(far);
    EXPECT_EQ(r.retry_after, year / static_cast<Nanos>(kMaxCount));
    EXPECT_EQ(r.retry_after, 31'622'400);
    // A bucket of a billion: one request takes one 31.6 ms token out of it.
    Key big{a, Params{kMaxCount, year, kMaxCount}};
    auto o = big.hit(far);
    EXPECT_EQ(o.remaining, kMaxCount - 1);
    EXPECT_EQ(o.reset_after, 31'622'400);
  }

  // The windows, with a nearly full quota in the state (1e9 requests cannot be made one by one).
  {
    State s{0, far, static_cast<std::int64_t>(kMaxCount) - 1};  // fixed: start, count
    auto o = evaluate(Algorithm::fixed_window, Params{kMaxCount, year, 0}, s, far + year - 1);
    EXPECT_TRUE(o.outcome.allowed);
    EXPECT_EQ(o.outcome.remaining, 0u);
    auto r = evaluate(Algorithm::fixed_window, Params{kMaxCount, year, 0}, o.next, far + year - 1);
    EXPECT_FALSE(r.outcome.allowed);
    EXPECT_EQ(r.outcome.retry_after, 1);
  }
  {
    // Sliding: 1e9 in the previous window, none in this one, half way through.
    State s{static_cast<__int128>(kMaxCount), far, 0};
    auto o = evaluate(Algorithm::sliding_window, Params{kMaxCount, year, 0}, s, far + year / 2);
    EXPECT_TRUE(o.outcome.allowed);
    EXPECT_EQ(o.outcome.remaining, kMaxCount / 2 - 1);
    State full{static_cast<__int128>(kMaxCount), far, static_cast<std::int64_t>(kMaxCount) / 2};
    auto r = evaluate(Algorithm::sliding_window, Params{kMaxCount, year, 0}, full, far + year / 2);
    EXPECT_FALSE(r.outcome.allowed);
    // prev * (P - e) <= (L - curr - 1) * P  ->  e >= P / 2 + P / L.
    EXPECT_EQ(r.outcome.retry_after, year / static_cast<Nanos>(kMaxCount));
    EXPECT_EQ(r.outcome.reset_after, 2 * year - year / 2);
  }
}

}  // namespace
}  // namespace gatehouse::ratelimit
