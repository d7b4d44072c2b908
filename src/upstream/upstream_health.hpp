#pragma once
// What the whole process knows about one upstream's fitness to serve, beyond each target's
// TargetHealth: its outlier detector and circuit breaker (each null when not configured). One per
// upstream, built by the Gateway, shared by every worker's Cluster and by the admin thread (which
// returns ejected targets, moves an open breaker to half-open, and renders health and metrics).
// Every change of state is logged here, once, by the thread that made it.
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "observability/health.hpp"
#include "observability/logging.hpp"
#include "upstream/circuit_breaker.hpp"
#include "upstream/outlier.hpp"

namespace gatehouse::upstream {

class UpstreamHealth {
 public:
  using Clock = std::chrono::steady_clock;
  // `logs` may be null (tests).
  UpstreamHealth(const config::Upstream& cfg, std::size_t index, observability::Health& health,
                 unsigned workers, observability::Logs* logs);

  const config::Upstream& config() const { return cfg_; }
  observability::TargetHealth& target(std::size_t t) { return *targets_[t]; }
  std::size_t target_count() const { return targets_.size(); }
  OutlierDetector* outlier() { return outlier_.get(); }
  CircuitBreaker* breaker() { return breaker_.get(); }

  // A connect to `target` failed (any worker): counts towards consecutive_connect_failures.
  void connect_failed(std::size_t target, Clock::time_point now, std::string_view request_id);
  // One try's outcome (any worker, `worker` = its index): outlier detection for `target` (none
  // when no target was reached: kNoTarget) and the breaker. `probe`: the breaker's admission
  // made this request a half-open probe.
  static constexpr std::size_t kNoTarget = static_cast<std::size_t>(-1);
  void report(unsigned worker, std::size_t target, TryOutcome outcome, bool probe,
              Clock::time_point now, std::string_view request_id);
  // The breaker's word on a new request (call only when a breaker exists and is not closed).
  CircuitBreaker::Admission admit(Clock::time_point now);

  // Every target is out (unhealthy or ejected): the 503 the proxy answers, and when to come back
  // (the soonest ejection end, or healthy_after check intervals), in whole seconds, at least 1.
  bool all_out() const;
  std::int64_t unavailable_retry_after_s(Clock::time_point now) const;

  // i12-resolve, admin thread: slot `target` lost its address or takes a new one (its ejection,
  // if any, ends uncounted); `live`: the targets that hold an address now.
  void target_replaced(std::size_t target);
  void set_live_targets(std::size_t live);

  // Admin thread, a few times a second: ejections that ended, open -> half-open.
  void sweep(Clock::time_point now);

  // Requests answered 503 at once (counted on that path only, never on the healthy one).
  std::atomic<std::uint64_t> circuit_rejected{0};
  std::atomic<std::uint64_t> unavailable{0};

  // The `upstream:<name>` additions to /health/detailed (breaker state; status down while open).
  observability::ComponentReport health_report(Clock::time_point now) const;
  // Prometheus lines for this upstream's targets and breaker (gauges and counters, no HELP).
  // `others`: the other units of the same upstream name (earlier or later definitions of it, by
  // reloads): their counters are added in (per target by address), so a name's counters never go
  // backwards when the definition served changes; gauges are this unit's.
  void render_metrics(std::string& out, Clock::time_point now,
                      const std::vector<const UpstreamHealth*>& others = {}) const;
  static void render_metric_help(std::string& out);

 private:
  void log(spdlog::level::level_enum level, std::string_view message, std::string_view event,
           std::string_view target, std::string_view extra) const;
  void log_transition(CircuitBreaker::Transition t, Clock::time_point now,
                      std::string_view reason) const;

  const config::Upstream& cfg_;
  std::vector<observability::TargetHealth*> targets_;
  std::unique_ptr<OutlierDetector> outlier_;
  std::unique_ptr<CircuitBreaker> breaker_;
  observability::Logs* logs_;
};

}  // namespace gatehouse::upstream
