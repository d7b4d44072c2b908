#include "observability/stats.hpp"

#include <algorithm>

namespace gatehouse::observability {

std::optional<double> histogram_quantile(std::span<const double> bounds,
                                         std::span<const std::int64_t> counts, double q) {
  std::int64_t n = 0;
  for (auto c : counts) {
    n += std::max<std::int64_t>(c, 0);
  }
  if (n == 0 || bounds.empty()) {
    return std::nullopt;
  }
  q = std::clamp(q, 0.0, 1.0);
  const double rank = q * static_cast<double>(n);
  double below = 0;
  for (std::size_t b = 0; b < counts.size(); ++b) {
    const auto c = static_cast<double>(std::max<std::int64_t>(counts[b], 0));
    if (c > 0 && below + c >= rank) {
      if (b >= bounds.size()) {
        return bounds.back();  // +Inf: nothing to interpolate towards
      }
      const double lower = b == 0 ? 0.0 : bounds[b - 1];
      const double upper = bounds[b];
      return lower + (upper - lower) * std::clamp((rank - below) / c, 0.0, 1.0);
    }
    below += c;
  }
  return bounds.back();
}

StatsSnapshot take_snapshot(const Metrics& metrics, std::chrono::steady_clock::time_point at,
                            std::span<const std::int64_t> rejected) {
  StatsSnapshot s;
  s.at = at;
  const std::size_t names = metrics.route_names().size();
  s.routes.resize(names + 1);
  for (unsigned w = 0; w < metrics.worker_count(); ++w) {
    const auto& shard = metrics.worker(w);
    for (std::size_t r = 0; r < s.routes.size(); ++r) {
      // Row r is name slot r; the last row is the "none" slot, after every name slot.
      const std::size_t slot = r < names ? r : metrics.none_route();
      if (slot >= shard.routes.size()) {
        continue;
      }
      auto& out = s.routes[r];
      const auto& in = shard.routes[slot];
      for (std::size_t c = 0; c < out.by_class.size(); ++c) {
        out.by_class[c] += in.by_class[c].get();
      }
      for (std::size_t b = 0; b < out.buckets.size(); ++b) {
        out.buckets[b] += in.buckets[b].get();
      }
    }
  }
  for (std::size_t r = 0; r < rejected.size() && r < s.routes.size(); ++r) {
    s.routes[r].rejected = rejected[r];
  }
  return s;
}

RouteCounters total(const std::vector<RouteCounters>& routes) {
  RouteCounters t;
  for (const auto& r : routes) {
    for (std::size_t c = 0; c < t.by_class.size(); ++c) {
      t.by_class[c] += r.by_class[c];
    }
    for (std::size_t b = 0; b < t.buckets.size(); ++b) {
      t.buckets[b] += r.buckets[b];
    }
    t.rejected += r.rejected;
  }
  return t;
}

RouteRates rates_of(const RouteCounters* prev, const RouteCounters& cur, double seconds) {
  RouteRates out;
  out.class_totals = cur.by_class;
  out.rejected_total = cur.rejected;
  if (prev == nullptr || !(seconds > 0)) {
    return out;
  }
  auto delta = [](std::int64_t a, std::int64_t b) { return std::max<std::int64_t>(b - a, 0); };
  std::int64_t requests = 0;
  for (std::size_t c = 0; c < cur.by_class.size(); ++c) {
    auto d = delta(prev->by_class[c], cur.by_class[c]);
    requests += d;
    out.class_rps[c] = static_cast<double>(d) / seconds;
  }
  out.rps = static_cast<double>(requests) / seconds;
  out.rejected_ps = static_cast<double>(delta(prev->rejected, cur.rejected)) / seconds;
  std::array<std::int64_t, kDurationBuckets.size() + 1> interval{};
  for (std::size_t b = 0; b < interval.size(); ++b) {
    interval[b] = delta(prev->buckets[b], cur.buckets[b]);
  }
  out.p50_s = histogram_quantile(kDurationBuckets, interval, 0.5);
  out.p99_s = histogram_quantile(kDurationBuckets, interval, 0.99);
  return out;
}

std::vector<RouteRates> compute_rates(const StatsSnapshot& prev, const StatsSnapshot& cur) {
  // A reload may have added route names since `prev` (never removed: a name keeps its row): rows
  // both have are compared, the "none" rows (last) with each other, new rows have no rates yet.
  const bool usable = !prev.empty() && !prev.routes.empty() &&
                      prev.routes.size() <= cur.routes.size() && prev.at < cur.at;
  const double seconds = usable ? std::chrono::duration<double>(cur.at - prev.at).count() : 0.0;
  std::vector<RouteRates> out;
  out.reserve(cur.routes.size());
  for (std::size_t r = 0; r < cur.routes.size(); ++r) {
    const RouteCounters* before = nullptr;
    if (usable) {
      if (r + 1 == cur.routes.size()) {
        before = &prev.routes.back();
      } else if (r + 1 < prev.routes.size()) {
        before = &prev.routes[r];
      }
    }
    out.push_back(rates_of(before, cur.routes[r], seconds));
  }
  return out;
}

const StatsSnapshot* RateWindow::base_for(Clock::time_point now) const {
  for (auto it = kept_.rbegin(); it != kept_.rend(); ++it) {
    if (now - it->at >= min_window_) {
      return &*it;
    }
  }
  return kept_.empty() ? nullptr : &kept_.front();
}

void RateWindow::add(StatsSnapshot s) {
  if (!kept_.empty() && s.at - kept_.back().at < min_window_ / 2) {
    return;
  }
  const auto now = s.at;
  kept_.push_back(std::move(s));
  // The front is needed only while the next one is not yet old enough to replace it as a base.
  while (kept_.size() > 1 && now - kept_[1].at >= min_window_) {
    kept_.pop_front();
  }
  while (kept_.size() > 8) {
    kept_.pop_front();
  }
}

}  // namespace gatehouse::observability
