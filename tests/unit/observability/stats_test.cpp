#include "observability/stats.hpp"

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <vector>

namespace gatehouse::observability {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

constexpr std::array<double, 3> kBounds = {0.1, 0.2, 0.4};

TEST(HistogramQuantile, EmptyHistogramHasNoQuantile) {
  std::array<std::int64_t, 4> counts{};
  EXPECT_FALSE(histogram_quantile(kBounds, counts, 0.5));
}

TEST(HistogramQuantile, InterpolatesWithinTheBucket) {
  // 10 below 0.1, 10 in (0.1, 0.2]: the median is the top of the first bucket, p75 halfway
  // through the second.
  std::array<std::int64_t, 4> counts = {10, 10, 0, 0};
  EXPECT_DOUBLE_EQ(*histogram_quantile(kBounds, counts, 0.5), 0.1);
  EXPECT_DOUBLE_EQ(*histogram_quantile(kBounds, counts, 0.75), 0.15);
  EXPECT_DOUBLE_EQ(*histogram_quantile(kBounds, counts, 0.25), 0.05);  // the first starts at 0
}

TEST(HistogramQuantile, SkipsEmptyBuckets) {
  std::array<std::int64_t, 4> counts = {0, 0, 4, 0};
  EXPECT_DOUBLE_EQ(*histogram_quantile(kBounds, counts, 0.5), 0.3);
  EXPECT_DOUBLE_EQ(*histogram_quantile(kBounds, counts, 0.99), 0.2 + 0.2 * 0.99);
}

TEST(HistogramQuantile, InfBucketGivesTheLargestFiniteBound) {
  std::array<std::int64_t, 4> counts = {1, 0, 0, 99};
  EXPECT_DOUBLE_EQ(*histogram_quantile(kBounds, counts, 0.99), 0.4);
  EXPECT_DOUBLE_EQ(*histogram_quantile(kBounds, counts, 0.005), 0.05);
}

RouteCounters counters(std::int64_t ok, std::int64_t server_errors, std::int64_t fast,
                       std::int64_t slow, std::int64_t rejected = 0) {
  RouteCounters c;
  c.by_class[1] = ok;
  c.by_class[4] = server_errors;
  c.buckets[0] = fast;  // <= 0.5 ms
  c.buckets[9] = slow;  // (0.25 s, 0.5 s]
  c.rejected = rejected;
  return c;
}

StatsSnapshot snapshot(Clock::time_point at, std::vector<RouteCounters> routes) {
  StatsSnapshot s;
  s.at = at;
  s.routes = std::move(routes);
  return s;
}

TEST(ComputeRates, RatesAreDeltasOverTheInterval) {
  const auto t0 = Clock::time_point{} + seconds(100);
  auto prev = snapshot(t0, {counters(100, 0, 100, 0, 5), counters(0, 0, 0, 0)});
  auto cur = snapshot(t0 + seconds(2), {counters(300, 10, 300, 10, 25), counters(0, 0, 0, 0)});
  auto r = compute_rates(prev, cur);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_DOUBLE_EQ(r[0].rps, 105.0);  // (200 + 10) / 2 s
  EXPECT_DOUBLE_EQ(r[0].class_rps[1], 100.0);
  EXPECT_DOUBLE_EQ(r[0].class_rps[4], 5.0);
  EXPECT_DOUBLE_EQ(r[0].rejected_ps, 10.0);
  EXPECT_EQ(r[0].class_totals[1], 300);
  EXPECT_EQ(r[0].rejected_total, 25);
  // Over the interval: 200 fast and 10 slow; p50 fast, p99 among the slow ones.
  ASSERT_TRUE(r[0].p50_s);
  EXPECT_LE(*r[0].p50_s, kDurationBuckets[0]);
  ASSERT_TRUE(r[0].p99_s);
  EXPECT_GT(*r[0].p99_s, kDurationBuckets[8]);
  EXPECT_LE(*r[0].p99_s, kDurationBuckets[9]);
  // A route without traffic: zero rates, no quantile.
  EXPECT_DOUBLE_EQ(r[1].rps, 0.0);
  EXPECT_FALSE(r[1].p50_s);
}

TEST(ComputeRates, LatencyIsTheIntervalsNotSinceStart) {
  const auto t0 = Clock::time_point{} + seconds(1);
  // Everything before was slow; everything in the interval fast.
  auto prev = snapshot(t0, {counters(1000, 0, 0, 1000)});
  auto cur = snapshot(t0 + seconds(1), {counters(1010, 0, 10, 1000)});
  auto r = compute_rates(prev, cur);
  ASSERT_TRUE(r[0].p99_s);
  EXPECT_LE(*r[0].p99_s, kDurationBuckets[0]);
}

TEST(ComputeRates, WithoutAUsablePreviousSnapshotRatesAreZero) {
  const auto t0 = Clock::time_point{} + seconds(1);
  auto cur = snapshot(t0, {counters(10, 1, 10, 1, 3)});
  for (const auto& prev :
       {StatsSnapshot{}, snapshot(t0, {counters(0, 0, 0, 0)}),
        snapshot(t0 - seconds(1), {counters(0, 0, 0, 0), counters(0, 0, 0, 0)})}) {
    auto r = compute_rates(prev, cur);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_DOUBLE_EQ(r[0].rps, 0.0);
    EXPECT_FALSE(r[0].p50_s);
    EXPECT_EQ(r[0].class_totals[1], 10);  // the totals are still known
    EXPECT_EQ(r[0].rejected_total, 3);
  }
}

TEST(ComputeRates, CounterGoingBackCountsAsZero) {
  const auto t0 = Clock::time_point{} + seconds(1);
  auto prev = snapshot(t0, {counters(50, 0, 50, 0)});
  auto cur = snapshot(t0 + seconds(1), {counters(10, 0, 10, 0)});
  auto r = compute_rates(prev, cur);
  EXPECT_DOUBLE_EQ(r[0].rps, 0.0);
  EXPECT_FALSE(r[0].p50_s);
}

TEST(Total, SumsEveryRoute) {
  auto t = total({counters(1, 2, 3, 4, 5), counters(10, 20, 30, 40, 50)});
  EXPECT_EQ(t.by_class[1], 11);
  EXPECT_EQ(t.by_class[4], 22);
  EXPECT_EQ(t.buckets[0], 33);
  EXPECT_EQ(t.buckets[9], 44);
  EXPECT_EQ(t.rejected, 55);
}

TEST(TakeSnapshot, SumsTheWorkersShards) {
  Metrics m(2, {"api", "static"}, {});
  m.worker(0).record_request(0, 200, 300);
  m.worker(1).record_request(0, 503, 2'000'000);
  m.worker(1).record_request(1, 304, 100);
  m.worker(0).record_request(m.none_route(), 404, 100);
  const auto at = Clock::time_point{} + seconds(5);
  std::vector<std::int64_t> rejected = {4, 0};
  auto s = take_snapshot(m, at, rejected);
  EXPECT_EQ(s.at, at);
  ASSERT_EQ(s.routes.size(), 3u);
  EXPECT_EQ(s.routes[0].by_class[1], 1);
  EXPECT_EQ(s.routes[0].by_class[4], 1);
  EXPECT_EQ(s.routes[0].buckets[0], 1);   // 0.3 ms
  EXPECT_EQ(s.routes[0].buckets[11], 1);  // 2 s: (1, 2.5]
  EXPECT_EQ(s.routes[0].rejected, 4);
  EXPECT_EQ(s.routes[1].by_class[2], 1);
  EXPECT_EQ(s.routes[2].by_class[3], 1);
}

// A reload added a route name: the rows both snapshots have keep their rates, "none" (last in
// each) is compared with "none", and the new row starts without rates.
TEST(ComputeRates, ARowAddedByAReload) {
  auto c = [](std::int64_t ok) {
    RouteCounters r;
    r.by_class[1] = ok;
    return r;
  };
  const auto t0 = Clock::time_point{} + seconds(10);
  auto prev = snapshot(t0, {c(10), c(3)});                    // api, none
  auto cur = snapshot(t0 + seconds(1), {c(20), c(7), c(5)});  // api, new, none
  auto rates = compute_rates(prev, cur);
  ASSERT_EQ(rates.size(), 3u);
  EXPECT_DOUBLE_EQ(rates[0].rps, 10.0);
  EXPECT_DOUBLE_EQ(rates[1].rps, 0.0);
  EXPECT_EQ(rates[1].class_totals[1], 7);
  EXPECT_DOUBLE_EQ(rates[2].rps, 2.0);
  // Fewer rows than before cannot happen (a name keeps its row); it measures nothing.
  EXPECT_DOUBLE_EQ(compute_rates(cur, snapshot(t0 + seconds(2), {c(30), c(9)}))[0].rps, 0.0);
}

// Route series by name: the snapshot's rows follow Metrics::route_names, wherever a generation
// puts the route in its file.
TEST(TakeSnapshot, RowsAreNameSlots) {
  Metrics m(1, {"a", "b"}, {});
  auto slots = m.route_slots({"c", "b"});
  ASSERT_TRUE(slots);
  m.add_route_names({"c", "b"});
  m.worker(0).record_request((*slots)[0], 200, 100);  // "c", first in the new file
  auto s = take_snapshot(m, Clock::time_point{} + seconds(1));
  ASSERT_EQ(s.routes.size(), 4u);  // a, b, c, none
  EXPECT_EQ(s.routes[2].by_class[1], 1);
  EXPECT_EQ(s.routes[0].by_class[1], 0);
}

TEST(RateWindow, MeasuresAgainstASnapshotAtLeastTheWindowOld) {
  RateWindow w(milliseconds(500));
  const auto t0 = Clock::time_point{} + seconds(10);
  EXPECT_EQ(w.base_for(t0), nullptr);
  w.add(snapshot(t0, {}));
  // Too young yet: the only one there is.
  ASSERT_NE(w.base_for(t0 + milliseconds(100)), nullptr);
  EXPECT_EQ(w.base_for(t0 + milliseconds(100))->at, t0);
  // A second poller 10 ms after the first: not kept (too close), both measure against t0.
  w.add(snapshot(t0 + milliseconds(10), {}));
  EXPECT_EQ(w.size(), 1u);
  // One poller a second: each measures over the last second.
  for (int i = 1; i <= 5; ++i) {
    auto now = t0 + seconds(i);
    ASSERT_NE(w.base_for(now), nullptr);
    EXPECT_EQ(w.base_for(now)->at, now - seconds(1));
    w.add(snapshot(now, {}));
    EXPECT_LE(w.size(), 2u);
  }
  // Two pollers, 20 ms apart: the second also measures over about a second, not 20 ms.
  auto now = t0 + seconds(5) + milliseconds(20);
  EXPECT_EQ(w.base_for(now)->at, t0 + seconds(4));
}

}  // namespace
}  // namespace gatehouse::observability
