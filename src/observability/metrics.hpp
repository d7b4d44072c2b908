#pragma once
// Metrics sharded per worker: each worker thread is the only writer of its shard (relaxed atomic
// stores, no lock, no contended cache line); the admin thread sums the shards when /metrics is
// scraped. Label sets are bounded: upstream units are laid out at start-up (a reload that adds or
// re-targets an upstream takes a spare one), and route series are keyed by
// route name in slots laid out at start-up for every name the process may serve (a reload adds
// names, up to route_capacity()), so memory is bounded.
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "observability/process_stats.hpp"

namespace gatehouse::observability {

// A counter/gauge cell written by exactly one thread.
class Cell {
 public:
  void add(std::int64_t n = 1) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::int64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> v_{0};
};

inline constexpr std::array<double, 14> kDurationBuckets = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
inline constexpr std::array<unsigned, 11> kLocalReplyStatuses = {400, 403, 404, 408, 413, 414,
                                                                 429, 431, 502, 503, 504};

struct RouteStats {
  std::array<Cell, 5> by_class;                           // 1xx..5xx
  std::array<Cell, kDurationBuckets.size() + 1> buckets;  // last is +Inf
  Cell duration_us_sum;
};

// One upstream target (issue 12, i12-balance): what a worker sent it and how it answered.
struct TargetStats {
  Cell requests;  // tries: a connection to the target was acquired for the request
  Cell errors;    // failed connects, tries without a usable response head, responses cut off
  std::array<Cell, kDurationBuckets.size() + 1> head_buckets;  // time to response head; +Inf last
  Cell head_us_sum;

  void record_head(std::int64_t us);
};

struct UpstreamStats {
  Cell connect_errors, timeouts, opened, idle;
  Cell failures;  // requests answered 502/504, or cut off, because of the upstream
  Cell retries;   // tries sent again (every reason)
  // --- balancing and backpressure (issue 12, i12-balance) ---
  Cell queued;  // gauge: requests waiting for a connection at max_connections
  Cell busy;    // requests answered 503 upstream_busy (queue full or queue_timeout passed)
  std::unique_ptr<TargetStats[]> targets;  // index = target index (atomics: not in a vector)
  std::size_t target_count = 0;

  // Null past the targets it was sized for (a test's bare UpstreamStats has none).
  TargetStats* target(std::size_t t) { return t < target_count ? &targets[t] : nullptr; }
  void size_targets(std::size_t n) {
    targets = std::make_unique<TargetStats[]>(n);
    target_count = n;
  }
  // --- retries (issue 12, i12-retry) ---
  std::array<Cell, 7> retry_reasons;  // by upstream::RetryReason
  Cell retry_budget_exhausted;        // retries the budget refused
};

struct alignas(64) WorkerMetrics {
  // index = route slot (Metrics::route_slots: one per route name, kept for the process's life);
  // last = "none" (no route matched)
  std::vector<RouteStats> routes;
  // index = upstream unit (Metrics::upstream_capacity() of them, laid out at start-up: a unit a
  // reload adds gets its targets sized by Metrics::add_upstream before any worker uses it).
  std::unique_ptr<UpstreamStats[]> upstreams;
  std::array<Cell, kLocalReplyStatuses.size() + 1> local_replies;  // last = other
  Cell in_flight, connections_active, connections_total, tls_handshake_errors;
  Cell connections_rejected;   // over max_connections / max_connections_per_ip
  Cell proxy_protocol_errors;  // connections closed for a missing or bad PROXY header
  LoopLag loop_lag;            // i12-edge: how late the worker's 100 ms sweep runs
  Cell websocket_upgrades;     // i12-edge: WebSocket tunnels opened (upstream answered 101)
  Cell websockets_open;        // i12-edge: tunnels open now

  void record_request(std::size_t route, unsigned status, std::int64_t duration_us);
  void record_local_reply(unsigned status);
};

class Metrics {
 public:
  // `target_names[u]`: upstream u's targets as written in the config (metric labels).
  // `route_capacity`: how many route names the process may ever serve (0: the start-up count
  // plus max(64, min(3 x the start-up count, 1024))). `upstream_capacity`: how many upstream
  // units (0: the start-up count).
  Metrics(unsigned workers, std::vector<std::string> route_names,
          std::vector<std::string> upstream_names,
          std::vector<std::vector<std::string>> target_names = {}, std::size_t route_capacity = 0,
          std::size_t upstream_capacity = 0);
  WorkerMetrics& worker(unsigned index) { return *shards_[index]; }
  // Read side for snapshots (observability/stats.*): relaxed loads of the shards' cells.
  const WorkerMetrics& worker(unsigned index) const { return *shards_[index]; }
  unsigned worker_count() const { return static_cast<unsigned>(shards_.size()); }
  // Every route name served since start, in the order they got their slot (slot = index).
  // Admin thread.
  const std::vector<std::string>& route_names() const { return route_names_; }
  std::size_t route_capacity() const { return route_capacity_; }
  // The slot of requests no route matched: after every name slot, fixed for the process's life.
  std::size_t none_route() const { return route_capacity_; }
  // Reload: the slot of each of `names` (route index -> slot), a new name taking the next free
  // slot; empty when the new names would not fit in route_capacity(). Nothing is registered
  // until add_route_names(names). A removed route's slot stays (its counters stay exported: a
  // Prometheus counter must not go backwards) and a name that comes back finds it again.
  // Admin thread only.
  std::optional<std::vector<std::size_t>> route_slots(const std::vector<std::string>& names) const;
  void add_route_names(const std::vector<std::string>& names);

  // Reload, admin thread: series for a unit built after start-up (an upstream added or
  // re-targeted), index = the next unit. Units of one name are exported as one series per label
  // set, their counts summed: a re-targeted upstream's counters continue. Throws
  // std::length_error past upstream_capacity().
  std::size_t add_upstream(std::string name, std::vector<std::string> target_names);
  std::size_t upstream_capacity() const { return upstream_capacity_; }

  // Prometheus text exposition (format 0.0.4). `extra` appends gauges owned elsewhere.
  std::string render(const std::function<void(std::string&)>& extra = {}) const;
  // i12-resolve: the `target` label of upstream u's slot t (empty: the slot has no address and
  // its series are left out); a new name starts the slot's series from 0. Called on the thread
  // that renders (the admin thread) only.
  void set_target_name(std::size_t u, std::size_t t, std::string name);

 private:
  // `groups`: upstream_groups().
  void render_targets(std::string& out, const std::vector<std::vector<std::size_t>>& groups) const;
  // Units by name, in order of first appearance (render).
  std::vector<std::vector<std::size_t>> upstream_groups() const;

  std::vector<std::string> route_names_;
  std::size_t route_capacity_;
  std::size_t upstream_capacity_;
  std::vector<std::string> upstream_names_;
  std::vector<std::vector<std::string>> target_names_;
  // i12-resolve: per upstream and slot, the shards' sums when the slot took its current address
  // (subtracted when rendering, so each address's series starts at 0). Admin thread only.
  std::vector<std::unique_ptr<TargetStats[]>> baselines_;
  std::vector<std::unique_ptr<WorkerMetrics>> shards_;
};

}  // namespace gatehouse::observability
