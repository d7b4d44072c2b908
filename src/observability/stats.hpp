#pragma once
// The dashboard's numbers (GET /dashboard.json): snapshots of the per-worker metric shards taken on
// the admin thread, and what two snapshots say about the time between them (rates, latency
// quantiles interpolated from histogram buckets). Pure: tested without a clock or sockets.
#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <vector>

#include "observability/metrics.hpp"

namespace gatehouse::observability {

// One route's counters summed over the workers. Cumulative since start.
struct RouteCounters {
  std::array<std::int64_t, 5> by_class{};                           // 1xx..5xx
  std::array<std::int64_t, kDurationBuckets.size() + 1> buckets{};  // per bucket, +Inf last
  std::int64_t rejected = 0;  // rate-limit refusals (429, ban 403, in-flight 429)
};

struct StatsSnapshot {
  std::chrono::steady_clock::time_point at{};
  // index = route slot (Metrics::route_names order); last = "none" (no route matched)
  std::vector<RouteCounters> routes;
  bool empty() const { return at == std::chrono::steady_clock::time_point{}; }
};

// What happened between two snapshots, per second.
struct RouteRates {
  double rps = 0;
  std::array<double, 5> class_rps{};
  double rejected_ps = 0;
  // Over the interval; empty when no request finished in it.
  std::optional<double> p50_s, p99_s;
  std::array<std::int64_t, 5> class_totals{};  // since start (the cumulative counters)
  std::int64_t rejected_total = 0;
};

// The q-quantile (0 < q < 1) of a histogram with upper bounds `bounds` and per-bucket counts
// `counts` (bounds.size() + 1 of them, the last the +Inf bucket), interpolated linearly within
// the bucket that holds it as Prometheus' histogram_quantile does: the first bucket starts at 0,
// and a quantile in the +Inf bucket is the largest finite bound. Empty when the counts are all 0.
std::optional<double> histogram_quantile(std::span<const double> bounds,
                                         std::span<const std::int64_t> counts, double q);

// The routes' counters, summed over the workers' shards at `at`: one row per route name served
// since start (Metrics::route_names), then "none". `rejected` (may be empty): rate-limit
// refusals per row.
StatsSnapshot take_snapshot(const Metrics& metrics, std::chrono::steady_clock::time_point at,
                            std::span<const std::int64_t> rejected = {});

// The sum over every route (the "all routes" line).
RouteCounters total(const std::vector<RouteCounters>& routes);

// Rates of `cur` since `prev`, one per route of `cur`. Without a usable `prev` (none yet, no time
// passed, more routes than `cur`) the rates are 0 and the quantiles empty, as they are for a row
// `prev` does not have (a route name a reload added); a counter that went back counts as 0.
std::vector<RouteRates> compute_rates(const StatsSnapshot& prev, const StatsSnapshot& cur);
RouteRates rates_of(const RouteCounters* prev, const RouteCounters& cur, double seconds);

// The snapshots rates are measured against, on the admin thread. Each poll takes a snapshot;
// rates are measured from the newest kept snapshot at least `min_window` old, so two dashboards
// polling a few milliseconds apart both see rates over about a second, not over milliseconds.
class RateWindow {
 public:
  using Clock = std::chrono::steady_clock;
  explicit RateWindow(Clock::duration min_window = std::chrono::milliseconds(500))
      : min_window_(min_window) {}
  // The snapshot to measure `now` against; null before the first snapshot.
  const StatsSnapshot* base_for(Clock::time_point now) const;
  // Keeps `s` (taken at s.at) when the newest kept one is at least min_window / 2 older, and
  // drops the snapshots no later poll will measure against.
  void add(StatsSnapshot s);
  std::size_t size() const { return kept_.size(); }

 private:
  Clock::duration min_window_;
  std::deque<StatsSnapshot> kept_;  // oldest first; a handful at most
};

}  // namespace gatehouse::observability
