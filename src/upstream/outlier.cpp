#include "upstream/outlier.hpp"

#include <algorithm>

namespace gatehouse::upstream {
namespace {

using observability::TargetHealth;

std::int64_t ns(OutlierDetector::Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// Stores 0 only when needed: the healthy path then only reads the shared line.
void clear(std::atomic<std::uint32_t>& counter) {
  if (counter.load(std::memory_order_relaxed) != 0) {
    counter.store(0, std::memory_order_relaxed);
  }
}

}  // namespace

OutlierDetector::OutlierDetector(const config::OutlierConfig& cfg,
                                 std::vector<observability::TargetHealth*> targets)
    : cfg_(cfg), targets_(std::move(targets)), max_ejected_(0) {
  set_live_targets(targets_.size());
}

void OutlierDetector::set_live_targets(std::size_t n) {
  std::size_t m = n * cfg_.max_ejected_percent / 100;
  if (m == 0 && n >= 2 && cfg_.max_ejected_percent > 0) {
    m = 1;
  }
  max_ejected_.store(m, std::memory_order_relaxed);
}

void OutlierDetector::forget(std::size_t target) {
  auto& th = *targets_[target];
  if (th.set(TargetHealth::kEjected, false)) {
    ejected_.fetch_sub(1, std::memory_order_relaxed);
  }
}

std::optional<Ejection> OutlierDetector::report(std::size_t target, TryOutcome outcome,
                                                Clock::time_point now) {
  auto& p = targets_[target]->passive;
  switch (outcome) {
    case TryOutcome::success:
      clear(p.consecutive_5xx);
      clear(p.consecutive_connect_failures);
      return std::nullopt;
    case TryOutcome::http_5xx:
    case TryOutcome::timeout:
    case TryOutcome::reset: {
      clear(p.consecutive_connect_failures);
      auto n = p.consecutive_5xx.fetch_add(1, std::memory_order_relaxed) + 1;
      if (cfg_.consecutive_5xx != 0 && n >= cfg_.consecutive_5xx) {
        return eject(target, "consecutive_5xx", now);
      }
      return std::nullopt;
    }
    case TryOutcome::connect_failure: {
      auto n = p.consecutive_connect_failures.fetch_add(1, std::memory_order_relaxed) + 1;
      if (cfg_.consecutive_connect_failures != 0 && n >= cfg_.consecutive_connect_failures) {
        return eject(target, "consecutive_connect_failures", now);
      }
      return std::nullopt;
    }
  }
  return std::nullopt;
}

std::optional<Ejection> OutlierDetector::eject(std::size_t target, const char* reason,
                                               Clock::time_point now) {
  auto& th = *targets_[target];
  if ((th.flags() & TargetHealth::kEjected) != 0) {
    return std::nullopt;
  }
  // Take a slot under the cap; the counters keep counting when none is free, so the target goes
  // as soon as another one returns and it fails again.
  auto taken = ejected_.load(std::memory_order_relaxed);
  do {
    if (taken >= max_ejected_.load(std::memory_order_relaxed)) {
      return std::nullopt;
    }
  } while (!ejected_.compare_exchange_weak(taken, taken + 1, std::memory_order_relaxed));

  auto& p = th.passive;
  const auto eject_for = std::chrono::duration_cast<std::chrono::nanoseconds>(cfg_.eject_for);
  // Envoy's growth: each ejection in a row lengthens the next; every eject_for spent back in
  // service since the last return forgives one.
  std::uint32_t streak = p.ejection_streak.load(std::memory_order_relaxed);
  if (auto returned = p.returned_at_ns.load(std::memory_order_relaxed); returned != 0) {
    auto forgiven = static_cast<std::uint64_t>(std::max<std::int64_t>(0, ns(now) - returned)) /
                    static_cast<std::uint64_t>(std::max<std::int64_t>(1, eject_for.count()));
    streak = forgiven >= streak ? 0 : streak - static_cast<std::uint32_t>(forgiven);
  }
  streak = std::min(streak + 1, kMaxMultiplier);
  const auto duration = eject_for * streak;
  p.ejected_until_ns.store(ns(now) + duration.count(), std::memory_order_relaxed);
  if (!th.set(TargetHealth::kEjected, true)) {
    ejected_.fetch_sub(1, std::memory_order_relaxed);  // another worker ejected it meanwhile
    return std::nullopt;
  }
  p.ejection_streak.store(streak, std::memory_order_relaxed);
  p.ejections.fetch_add(1, std::memory_order_relaxed);
  p.consecutive_5xx.store(0, std::memory_order_relaxed);
  p.consecutive_connect_failures.store(0, std::memory_order_relaxed);
  return Ejection{target, duration, reason};
}

std::vector<std::size_t> OutlierDetector::sweep(Clock::time_point now) {
  std::vector<std::size_t> returned;
  for (std::size_t t = 0; t < targets_.size(); ++t) {
    auto& th = *targets_[t];
    if ((th.flags() & TargetHealth::kEjected) == 0 ||
        th.passive.ejected_until_ns.load(std::memory_order_relaxed) > ns(now)) {
      continue;
    }
    if (th.set(TargetHealth::kEjected, false)) {
      ejected_.fetch_sub(1, std::memory_order_relaxed);
      th.passive.returned_at_ns.store(ns(now), std::memory_order_relaxed);
      th.passive.consecutive_5xx.store(0, std::memory_order_relaxed);
      th.passive.consecutive_connect_failures.store(0, std::memory_order_relaxed);
      returned.push_back(t);
    }
  }
  return returned;
}

}  // namespace gatehouse::upstream
