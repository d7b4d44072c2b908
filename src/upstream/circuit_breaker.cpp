#include "upstream/circuit_breaker.hpp"

#include <algorithm>

namespace gatehouse::upstream {
namespace {

std::int64_t ns(CircuitBreaker::Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

std::int64_t to_ns(config::Millis d) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
}

}  // namespace

const char* to_string(CircuitBreaker::State s) {
  switch (s) {
    case CircuitBreaker::State::closed:
      return "closed";
    case CircuitBreaker::State::open:
      return "open";
    case CircuitBreaker::State::half_open:
      return "half_open";
  }
  return "closed";
}

CircuitBreaker::CircuitBreaker(const config::CircuitBreakerConfig& cfg, unsigned shards)
    : cfg_(cfg), width_ns_(std::max<std::int64_t>(1, to_ns(cfg.window) / kBuckets)) {
  for (unsigned i = 0; i < std::max(1u, shards); ++i) {
    shards_.push_back(std::make_unique<Shard>());
  }
}

std::int64_t CircuitBreaker::bucket_of(Clock::time_point t) const {
  return ns(t) / width_ns_;
}

CircuitBreaker::Admission CircuitBreaker::admit(Clock::time_point now) {
  Admission a;
  State s = state_.load(std::memory_order_acquire);
  if (s == State::open) {
    auto left = open_until_ns_.load(std::memory_order_relaxed) - ns(now);
    if (left > 0) {
      a.allowed = false;
      a.retry_after = std::chrono::nanoseconds(left);
      return a;
    }
    a.transition = to_half_open(now);
    s = state_.load(std::memory_order_acquire);
  }
  if (s != State::half_open) {
    return a;  // closed (or closed meanwhile)
  }
  // (Read first: rejected requests must not count the grant counter up without end.)
  if (probes_granted_.load(std::memory_order_relaxed) < cfg_.half_open_probes &&
      probes_granted_.fetch_add(1, std::memory_order_relaxed) < cfg_.half_open_probes) {
    a.probe = true;
    return a;
  }
  // The probes are out. One that never reported (its client went away) is written off after
  // open_for, and the next request probes instead.
  auto deadline = probe_deadline_ns_.load(std::memory_order_relaxed);
  if (ns(now) >= deadline &&
      probe_deadline_ns_.compare_exchange_strong(deadline, ns(now) + to_ns(cfg_.open_for),
                                                 std::memory_order_relaxed)) {
    probes_granted_.store(1, std::memory_order_relaxed);
    a.probe = true;
    return a;
  }
  a.allowed = false;
  a.retry_after = std::chrono::nanoseconds(std::max<std::int64_t>(1, deadline - ns(now)));
  return a;
}

CircuitBreaker::Transition CircuitBreaker::to_half_open(Clock::time_point now) {
  State expected = State::open;
  if (open_until_ns_.load(std::memory_order_relaxed) > ns(now)) {
    return Transition::none;
  }
  probes_granted_.store(0, std::memory_order_relaxed);
  probe_deadline_ns_.store(ns(now) + to_ns(cfg_.open_for), std::memory_order_relaxed);
  if (state_.compare_exchange_strong(expected, State::half_open, std::memory_order_acq_rel)) {
    return Transition::half_opened;
  }
  return Transition::none;
}

CircuitBreaker::Transition CircuitBreaker::open(Clock::time_point now, State from) {
  open_until_ns_.store(ns(now) + to_ns(cfg_.open_for), std::memory_order_relaxed);
  if (state_.compare_exchange_strong(from, State::open, std::memory_order_acq_rel)) {
    opened_total_.fetch_add(1, std::memory_order_relaxed);
    return Transition::opened;
  }
  return Transition::none;
}

CircuitBreaker::Transition CircuitBreaker::record(unsigned shard, bool failed, bool probe,
                                                  Clock::time_point now) {
  // The shard's only writer: plain relaxed load/store, like a metrics cell.
  const auto cur = bucket_of(now);
  auto& b = shards_[shard % shards_.size()]
                ->buckets[static_cast<std::size_t>(static_cast<std::uint64_t>(cur) % kBuckets)];
  const auto stamp = b.stamp.load(std::memory_order_relaxed);
  if (stamp > cur) {
    return Transition::none;  // older than the whole window: the slot holds newer counts
  }
  if (stamp != cur) {
    b.requests.store(0, std::memory_order_relaxed);
    b.failures.store(0, std::memory_order_relaxed);
    b.stamp.store(cur, std::memory_order_relaxed);
  }
  b.requests.store(b.requests.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  if (!failed) {
    if (probe && state_.load(std::memory_order_relaxed) == State::half_open) {
      since_bucket_.store(cur, std::memory_order_relaxed);
      State expected = State::half_open;
      if (state_.compare_exchange_strong(expected, State::closed, std::memory_order_acq_rel)) {
        return Transition::closed;
      }
    }
    return Transition::none;
  }
  b.failures.store(b.failures.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  State s = state_.load(std::memory_order_relaxed);
  if (s == State::half_open) {
    return probe ? open(now, State::half_open) : Transition::none;
  }
  if (s != State::closed) {
    return Transition::none;
  }
  auto w = window(now);
  if (w.requests >= cfg_.min_requests && w.requests > 0 &&
      static_cast<double>(w.failures) >= cfg_.failure_ratio * static_cast<double>(w.requests)) {
    return open(now, State::closed);
  }
  return Transition::none;
}

CircuitBreaker::Transition CircuitBreaker::tick(Clock::time_point now) {
  if (state_.load(std::memory_order_acquire) != State::open) {
    return Transition::none;
  }
  return to_half_open(now);
}

CircuitBreaker::Window CircuitBreaker::window(Clock::time_point now) const {
  Window w;
  const auto cur = bucket_of(now);
  const auto oldest = std::max<std::int64_t>(cur - static_cast<std::int64_t>(kBuckets) + 1,
                                             since_bucket_.load(std::memory_order_relaxed));
  for (const auto& shard : shards_) {
    for (const auto& b : shard->buckets) {
      auto stamp = b.stamp.load(std::memory_order_relaxed);
      if (stamp >= oldest && stamp <= cur) {
        w.requests += b.requests.load(std::memory_order_relaxed);
        w.failures += b.failures.load(std::memory_order_relaxed);
      }
    }
  }
  return w;
}

std::chrono::nanoseconds CircuitBreaker::open_remaining(Clock::time_point now) const {
  if (state() != State::open) {
    return {};
  }
  return std::chrono::nanoseconds(
      std::max<std::int64_t>(0, open_until_ns_.load(std::memory_order_relaxed) - ns(now)));
}

}  // namespace gatehouse::upstream
