#pragma once
// Passive health: outlier ejection from real traffic (Envoy's outlier detection, reduced to two
// triggers). One detector per upstream for the whole process; every worker reports each try's
// outcome, the admin thread returns targets whose ejection time has passed. The state lives in the
// targets' shared TargetHealth (relaxed atomics, no lock): a success costs two relaxed loads.
// Pure: no I/O; the time is passed in, so tests drive it with a fake clock.
#include <chrono>
#include <cstddef>
#include <optional>
#include <span>
#include <vector>

#include "config/config.hpp"
#include "observability/health.hpp"

namespace gatehouse::upstream {

// How one try at a target ended, as the proxy saw it.
enum class TryOutcome {
  success,          // a response head with a status below 500
  http_5xx,         // a response head with a status of 500 or more
  connect_failure,  // the connect failed or timed out: nothing was sent
  timeout,          // connected, but no response head in time (the client would get 504)
  reset,            // connected, but the connection failed before a response head (502)
};

// Whether the circuit breaker counts it as a failure: everything but a success.
inline bool is_failure(TryOutcome o) {
  return o != TryOutcome::success;
}

struct Ejection {
  std::size_t target = 0;
  std::chrono::nanoseconds duration{};
  const char* reason = "";  // "consecutive_5xx" or "consecutive_connect_failures"
};

class OutlierDetector {
 public:
  using Clock = std::chrono::steady_clock;
  // Ejection time is eject_for times the number of recent ejections, at most this many times.
  static constexpr std::uint32_t kMaxMultiplier = 10;

  OutlierDetector(const config::OutlierConfig& cfg,
                  std::vector<observability::TargetHealth*> targets);

  // A try's outcome at `target` (any thread). The ejection when this call ejected the target.
  // timeout and reset count as 5xx: the client gets a 502/504 for them.
  std::optional<Ejection> report(std::size_t target, TryOutcome outcome, Clock::time_point now);
  // The targets whose ejection ended by `now`, now returned (the admin thread, periodically).
  std::vector<std::size_t> sweep(Clock::time_point now);

  // How many targets may be ejected at once: max_ejected_percent of them, rounded down, but at
  // least one when there are two or more targets (a lone target is never ejected below 100%).
  std::size_t max_ejected() const { return max_ejected_.load(std::memory_order_relaxed); }
  // i12-resolve (admin thread): how many targets hold an address now (max_ejected is a share of
  // them), and a slot that lost its address or takes a new one leaves ejection, uncounted.
  void set_live_targets(std::size_t n);
  void forget(std::size_t target);
  std::size_t ejected() const { return ejected_.load(std::memory_order_relaxed); }
  const config::OutlierConfig& config() const { return cfg_; }

 private:
  std::optional<Ejection> eject(std::size_t target, const char* reason, Clock::time_point now);

  config::OutlierConfig cfg_;
  std::vector<observability::TargetHealth*> targets_;
  std::atomic<std::size_t> max_ejected_;
  std::atomic<std::size_t> ejected_{0};
};

}  // namespace gatehouse::upstream
