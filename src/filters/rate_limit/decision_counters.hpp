#pragma once
// The rate limiter's decision counters (gatehouse_ratelimit_decisions_total, the dashboard's
// refusals per route), process-wide: a reload builds a new limiter that finds the counters of
// every rule whose definition did not change, as it finds their rate-limit state. A counter is
// named by its route and definition; each worker writes its own cells (single writer, relaxed),
// the admin thread sums them. Names only accumulate (a removed rule's refusals still count in its
// route's total), bounded by kMaxCounters.
#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "observability/metrics.hpp"

namespace gatehouse::filters::rate_limit {

class DecisionCounters {
 public:
  // Two cells per counter: allowed, rejected.
  static constexpr std::size_t kResults = 2;
  using Cells = std::array<observability::Cell, kResults>;
  // Far more than any configuration has rules; reached only by thousands of reloads that each
  // change rules, and then a reload is refused rather than memory grown.
  static constexpr std::size_t kMaxCounters = 1 << 16;

  explicit DecisionCounters(unsigned workers);

  // The counter named `definition` of route `route` (found, or added with zero cells); throws
  // std::length_error past kMaxCounters. Not for the request path (a lock, a map).
  std::size_t find_or_add(const std::string& route, const std::string& definition);
  // Worker w's cells of `counter`, at an address stable for the process's life. Taken once when
  // a limiter is built; the request path only writes through the pointer.
  Cells* cells(unsigned worker, std::size_t counter);
  // `result` (0 allowed, 1 rejected) of `counter`, summed over the workers (admin thread).
  std::int64_t total(std::size_t counter, std::size_t result) const;
  // Refusals per route name, summed over every counter the route ever had (admin thread).
  std::map<std::string, std::int64_t> rejected_by_route() const;
  std::size_t size() const;

 private:
  mutable std::mutex mu_;  // the names and the deques' shape; never taken by a worker
  std::unordered_map<std::string, std::size_t> index_;
  std::vector<std::string> route_of_;  // per counter
  // Per worker, per counter. A deque never moves its elements as it grows, so the pointers
  // limiters hold stay valid while new counters are added.
  std::vector<std::unique_ptr<std::deque<Cells>>> cells_;
};

}  // namespace gatehouse::filters::rate_limit
