#pragma once
// A worker's view of one upstream: its targets, the load balancer that picks among them, the pool
// of idle keep-alive connections (per target) and the targets' health, which real traffic feeds
// too (a failed connect marks the target unreachable, a successful one reachable again). The
// balancer picks the target first, then an idle connection of that target is reused or a new one
// opened: traffic splits as configured, and a target that comes back takes its share at once.
//
// Backpressure (max_connections): the cluster counts its open connections (Load); a request that
// finds the cap reached and no idle connection to reuse or close waits in a FIFO queue until a
// connection is released or closed, at most queue_timeout. Under the cap the queue costs one
// comparison. Owned and used by one worker thread only (the health state it feeds is shared and
// atomic).
#include <boost/intrusive/list.hpp>

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "observability/health.hpp"
#include "observability/logging.hpp"
#include "observability/metrics.hpp"
#include "upstream/connection.hpp"
#include "upstream/load_balancer.hpp"
#include "upstream/pool.hpp"
#include "upstream/retry_policy.hpp"
#include "upstream/target_slots.hpp"
#include "upstream/upstream_health.hpp"

namespace gatehouse::upstream {

inline constexpr std::size_t kNoTarget = static_cast<std::size_t>(-1);

// Bit t of an `acquire(never)` mask; targets past 63 cannot be excluded this way.
inline std::uint64_t target_bit(std::size_t t) {
  return t < 64 ? std::uint64_t{1} << t : 0;
}

struct Acquired {
  std::unique_ptr<Connection> conn;
  // When conn is null: 502 or 504 (every target failed), 503 (upstream busy: the queue was full
  // or queue_timeout passed; or `unavailable`), or 0 with client_gone.
  unsigned status = 0;
  std::string detail;        // internal description, shown in development only
  bool client_gone = false;  // the client closed its connection while the request was queued
  // 503: every target is unhealthy or ejected (no connect was tried); Retry-After in seconds.
  bool unavailable = false;
  std::int64_t retry_after_s = 0;
};

// What the request tells the cluster about itself.
struct Pick {
  std::uint64_t key = 0;          // the hash balancer's key (hash_key())
  tcp::socket* client = nullptr;  // watched while queued: a client that leaves leaves the queue
};

class Cluster {
 public:
  // `index`: the upstream's index in the config (health and metrics are indexed by it).
  // `balancer`: by default the one cfg.balance names.
  Cluster(io::net::any_io_executor ex, io::DeadlineList& deadlines, std::size_t index,
          const config::Upstream& cfg, std::vector<tcp::endpoint> targets,
          observability::UpstreamStats& stats, observability::Health& health,
          observability::Logs& logs, std::unique_ptr<LoadBalancer> balancer = nullptr);
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // A connection to the balancer's next target: an idle one of that target, else a new one. A
  // failed connect moves on to the balancer's next candidate: nothing was sent yet. `fresh` opens
  // a new connection instead of reusing an idle one (a retry after a stale one). `avoid`: a
  // target offered only when no other is left (a retry after a failed try there); `never`: targets
  // (bit t for target t < 64) not offered at all (each answered this request 429).
  io::net::awaitable<Acquired> acquire(bool fresh, std::string_view request_id,
                                       std::size_t avoid = kNoTarget, std::uint64_t never = 0,
                                       Pick pick = {});
  // A connection whose exchange is over, kept idle for reuse or closed (the pool decides).
  void release(std::unique_ptr<Connection> conn);
  void prune(Clock::time_point now) {
    refresh_if_changed();
    pool_.prune(now);
  }
  void close_all() { pool_.close_all(); }

  // Target health beyond connect outcomes (active checks, outlier ejection, circuit breaker):
  // the process-wide state of this upstream, and this worker's index (its breaker shard).
  void attach(UpstreamHealth* shared, unsigned worker) {
    shared_ = shared;
    worker_ = worker;
  }
  UpstreamHealth* shared() { return shared_; }
  // i12-resolve: the upstream's re-resolved target slots (null: its targets never change).
  // Follows their published view from now on: before each acquire and each prune.
  void follow(const TargetSlots* slots);
  // One try's outcome (target: the one tried, or UpstreamHealth::kNoTarget when acquire found
  // none to reach): outlier detection and the circuit breaker. Two relaxed loads and a store
  // into this worker's breaker shard on success.
  void report(std::size_t target, TryOutcome outcome, bool probe, Clock::time_point now,
              std::string_view request_id) {
    if (shared_ != nullptr) {
      shared_->report(worker_, target, outcome, probe, now, request_id);
    }
  }

  const config::Upstream& config() const { return cfg_; }
  const std::string& address(std::size_t target) const { return addresses_[target]; }
  std::size_t index() const { return index_; }
  std::size_t target_count() const { return targets_.size(); }  // slots (i12-resolve)
  // Whether a target outside `excluded` (bits as in `acquire(never)`) could take a try: one that
  // is not out (unhealthy, ejected or retired). What a 429's retry needs before it drops the
  // response.
  bool has_other_target(std::uint64_t excluded) const;
  Pool& pool() { return pool_; }
  const Load& load() const { return *load_; }
  std::size_t queued() const { return queued_; }

  // A connection of this cluster closed (Connection's destructor): a queued request may go.
  void connection_closed() { wake_one(); }

  // --- retries (issue 12, i12-retry): per worker, so no atomics ---
  const RetryPolicy& retry_policy() const { return retry_policy_; }
  RetryBudget& retry_budget() { return retry_budget_; }
  std::uint64_t next_random() { return rng_(); }

 private:
  // A request waiting for a connection; lives in its acquire's frame.
  struct Waiter : public io::AutoUnlinkHook {
    io::net::steady_timer* timer = nullptr;
    bool woken = false;  // a connection was freed for it (rather than its time running out)
  };
  using WaiterList = boost::intrusive::list<Waiter, boost::intrusive::constant_time_size<false>>;
  enum class Queued { go, full, timed_out, client_gone };
  // A place or an idle connection is free while requests wait: the first of them goes. Called
  // where a woken or waiting request leaves without taking what was freed.
  void pass_on_wake();

  // i12-resolve: one acquire load when following slots; a copy of what changed when it did.
  void refresh_if_changed() {
    if (slots_ != nullptr && slots_->version() != seen_version_) {
      refresh();
    }
  }
  void refresh();
  bool slot_empty(std::size_t t) const { return slots_ != nullptr && addresses_[t].empty(); }

  // Passive health: what a connect attempt taught about a target.
  void connect_succeeded(const Candidate& c);
  void connect_failed(std::size_t target, std::string_view what, std::string_view request_id);

  // Whether a request arriving now must queue: others are queued (FIFO), or the cap is reached
  // and no idle connection is there to reuse or to close.
  bool must_queue() const;
  bool slot_free() const { return cfg_.max_connections == 0 || load_->open < cfg_.max_connections; }
  // A place for one new connection under the cap (an idle one of any target is closed for it
  // when needed). `held`: whether this acquire already holds one.
  bool reserve_slot(bool& held);
  void unreserve_slot(bool& held);
  io::net::awaitable<Queued> wait_in_queue(tcp::socket* client);
  void dequeue(Waiter& w);
  void wake_one();

  io::net::any_io_executor ex_;
  io::DeadlineList& deadlines_;
  std::size_t index_;
  const config::Upstream& cfg_;
  std::vector<tcp::endpoint> targets_;
  std::vector<std::string> addresses_;
  std::vector<observability::TargetHealth*> health_;  // per target, shared with other threads
  std::shared_ptr<Load> load_;
  std::unique_ptr<LoadBalancer> balancer_;
  Pool pool_;
  observability::UpstreamStats& stats_;
  observability::Logs& logs_;
  WaiterList waiters_;
  std::size_t queued_ = 0;  // linked in waiters_
  std::size_t waking_ = 0;  // woken and not yet resumed: what was freed is theirs
  // --- retries (issue 12, i12-retry) ---
  RetryPolicy retry_policy_;
  RetryBudget retry_budget_;
  std::mt19937_64 rng_;
  UpstreamHealth* shared_ = nullptr;
  unsigned worker_ = 0;
  // --- re-resolved targets (issue 12, i12-resolve) ---
  const TargetSlots* slots_ = nullptr;
  std::uint64_t seen_version_ = 0;
  std::vector<std::uint32_t> generations_;  // per slot, as this worker last saw it
};

}  // namespace gatehouse::upstream
