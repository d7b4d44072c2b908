#pragma once
// A worker's view of one upstream: its targets, the load balancer that picks among them, the pool
// of idle keep-alive connections (per target) and the targets' health, which real traffic feeds
// too (a failed connect marks the target unreachable, a successful one reachable again). The
// balancer picks the target first, then an idle connection of that target is reused or a new one
// opened: traffic splits as configured, and a target that comes back takes its share at once.
// Owned and used by one worker thread only (the health state it feeds is shared and atomic).
#include <memory>
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
#include "upstream/upstream_health.hpp"

namespace gatehouse::upstream {

struct Acquired {
  std::unique_ptr<Connection> conn;
  unsigned status = 0;  // 502 or 504 when conn is null; 503 when every target is out
  std::string detail;   // internal description, shown in development only
  // 503: every target is unhealthy or ejected (no connect was tried); Retry-After in seconds.
  bool unavailable = false;
  std::int64_t retry_after_s = 0;
};

class Cluster {
 public:
  // `index`: the upstream's index in the config (health and metrics are indexed by it).
  Cluster(io::net::any_io_executor ex, io::DeadlineList& deadlines, std::size_t index,
          const config::Upstream& cfg, std::vector<tcp::endpoint> targets,
          observability::UpstreamStats& stats, observability::Health& health,
          observability::Logs& logs, std::unique_ptr<LoadBalancer> balancer = make_round_robin());

  // A connection to the balancer's next target: an idle one of that target, else a new one. A
  // failed connect moves on to the balancer's next candidate: nothing was sent yet. `fresh` opens
  // a new connection instead of reusing an idle one (a retry after a stale one).
  io::net::awaitable<Acquired> acquire(bool fresh, std::string_view request_id);
  void release(std::unique_ptr<Connection> conn) { pool_.release(std::move(conn), Clock::now()); }
  void prune(Clock::time_point now) { pool_.prune(now); }
  void close_all() { pool_.close_all(); }

  // Target health beyond connect outcomes (active checks, outlier ejection, circuit breaker):
  // the process-wide state of this upstream, and this worker's index (its breaker shard).
  void attach(UpstreamHealth* shared, unsigned worker) {
    shared_ = shared;
    worker_ = worker;
  }
  UpstreamHealth* shared() { return shared_; }
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
  Pool& pool() { return pool_; }

 private:
  // Passive health: what a connect attempt taught about a target.
  void connect_succeeded(const Candidate& c);
  void connect_failed(std::size_t target, std::string_view what, std::string_view request_id);

  io::net::any_io_executor ex_;
  io::DeadlineList& deadlines_;
  std::size_t index_;
  const config::Upstream& cfg_;
  std::vector<tcp::endpoint> targets_;
  std::vector<std::string> addresses_;
  std::vector<observability::TargetHealth*> health_;  // per target, shared with other threads
  std::unique_ptr<LoadBalancer> balancer_;
  Pool pool_;
  observability::UpstreamStats& stats_;
  observability::Logs& logs_;
  UpstreamHealth* shared_ = nullptr;
  unsigned worker_ = 0;
};

}  // namespace gatehouse::upstream
