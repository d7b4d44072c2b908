#pragma once
// One upstream's circuit breaker, process-wide: closed -> open when the failed share of the tries
// over the sliding window reaches failure_ratio (with at least min_requests tries); open ->
// half-open after open_for; half-open lets half_open_probes tries through: a success closes, a
// failure opens again. While open every request is answered 503 at once.
//
// Cheap while closed: admission is one relaxed load (no clock); a try's outcome goes into the
// caller's own shard (one per worker: plain relaxed load/store, no shared cache line) of per-tenth-
// of-the-window buckets. Only a failure sums the shards to decide. Pure: time is passed in.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "config/config.hpp"

namespace gatehouse::upstream {

class CircuitBreaker {
 public:
  using Clock = std::chrono::steady_clock;
  enum class State : std::uint8_t { closed = 0, open = 1, half_open = 2 };
  // A change of state this call made (the caller logs it, once).
  enum class Transition { none, opened, half_opened, closed };
  static constexpr std::size_t kBuckets = 10;

  // `shards`: one per thread that records (the workers).
  CircuitBreaker(const config::CircuitBreakerConfig& cfg, unsigned shards);

  struct Admission {
    bool allowed = true;
    bool probe = false;                      // a half-open probe: its outcome decides
    std::chrono::nanoseconds retry_after{};  // when not allowed: until a try may pass again
    Transition transition = Transition::none;
  };
  State state() const { return state_.load(std::memory_order_relaxed); }
  // Before a request. Closed: allowed at once (call it only when state() is not closed).
  Admission admit(Clock::time_point now);
  // After a try, from the thread that owns `shard`. `probe`: the admission said so.
  Transition record(unsigned shard, bool failed, bool probe, Clock::time_point now);
  // A probe that tried nothing (every target was out): its slot goes back, it taught nothing.
  void release_probe() {
    auto n = probes_granted_.load(std::memory_order_relaxed);
    while (n > 0 && !probes_granted_.compare_exchange_weak(n, n - 1, std::memory_order_relaxed)) {
    }
  }
  // Open -> half-open once open_for has passed, without waiting for a request (admin thread).
  Transition tick(Clock::time_point now);

  struct Window {
    std::uint64_t requests = 0;
    std::uint64_t failures = 0;
  };
  Window window(Clock::time_point now) const;  // since the last close, at most `window` back
  std::chrono::nanoseconds open_remaining(Clock::time_point now) const;
  std::uint64_t opened_total() const { return opened_total_.load(std::memory_order_relaxed); }
  const config::CircuitBreakerConfig& config() const { return cfg_; }

 private:
  struct Bucket {
    std::atomic<std::int64_t> stamp{-1};  // bucket number (time / width) it counts for
    std::atomic<std::uint64_t> requests{0};
    std::atomic<std::uint64_t> failures{0};
  };
  struct alignas(64) Shard {
    Bucket buckets[kBuckets];
  };

  std::int64_t bucket_of(Clock::time_point t) const;
  Transition open(Clock::time_point now, State from);
  Transition to_half_open(Clock::time_point now);

  config::CircuitBreakerConfig cfg_;
  std::int64_t width_ns_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::atomic<State> state_{State::closed};
  std::atomic<std::int64_t> open_until_ns_{0};
  std::atomic<std::int64_t> since_bucket_{0};  // buckets before this one predate the last close
  std::atomic<std::uint32_t> probes_granted_{0};
  std::atomic<std::int64_t> probe_deadline_ns_{0};  // a probe without an outcome by then is lost
  std::atomic<std::uint64_t> opened_total_{0};
};

const char* to_string(CircuitBreaker::State s);

}  // namespace gatehouse::upstream
