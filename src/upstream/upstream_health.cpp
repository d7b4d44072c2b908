#include "upstream/upstream_health.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "http/json.hpp"

namespace gatehouse::upstream {
namespace {

using observability::TargetHealth;
namespace ghttp = ::gatehouse::http;

std::int64_t ns(UpstreamHealth::Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

std::int64_t ceil_seconds(std::int64_t nanos) {
  return std::max<std::int64_t>(1, (nanos + 999'999'999) / 1'000'000'000);
}

}  // namespace

UpstreamHealth::UpstreamHealth(const config::Upstream& cfg, std::size_t index,
                               observability::Health& health, unsigned workers,
                               observability::Logs* logs)
    : cfg_(cfg), logs_(logs) {
  for (std::size_t t = 0; t < health.target_count(index); ++t) {
    targets_.push_back(&health.target(index, t));
  }
  if (cfg_.outlier) {
    outlier_ = std::make_unique<OutlierDetector>(*cfg_.outlier, targets_);
  }
  if (cfg_.circuit_breaker) {
    breaker_ = std::make_unique<CircuitBreaker>(*cfg_.circuit_breaker, workers);
  }
}

void UpstreamHealth::log(spdlog::level::level_enum level, std::string_view message,
                         std::string_view event, std::string_view target,
                         std::string_view extra) const {
  if (logs_ == nullptr || !logs_->should_log(level)) {
    return;
  }
  std::string line = "\"event\":";
  ghttp::append_json_string(line, event);
  line += ",\"upstream\":";
  ghttp::append_json_string(line, cfg_.name);
  if (!target.empty()) {
    line += ",\"target\":";
    ghttp::append_json_string(line, target);
  }
  line += extra;
  logs_->error(level, message, line);
}

void UpstreamHealth::connect_failed(std::size_t target, Clock::time_point now,
                                    std::string_view request_id) {
  if (!outlier_) {
    return;
  }
  if (auto e = outlier_->report(target, TryOutcome::connect_failure, now)) {
    std::string extra = ",\"reason\":";
    ghttp::append_json_string(extra, e->reason);
    fmt::format_to(std::back_inserter(extra), ",\"eject_for_s\":{},\"ejections\":{}",
                   ceil_seconds(e->duration.count()),
                   targets_[target]->passive.ejections.load(std::memory_order_relaxed));
    extra += ",\"request_id\":";
    ghttp::append_json_string(extra, request_id);
    log(spdlog::level::warn, "upstream target ejected", "target_ejected",
        targets_[target]->address(), extra);
  }
}

void UpstreamHealth::report(unsigned worker, std::size_t target, TryOutcome outcome, bool probe,
                            Clock::time_point now, std::string_view request_id) {
  if (outlier_ && target != kNoTarget && outcome != TryOutcome::connect_failure) {
    if (auto e = outlier_->report(target, outcome, now)) {
      std::string extra = ",\"reason\":";
      ghttp::append_json_string(extra, e->reason);
      fmt::format_to(std::back_inserter(extra), ",\"eject_for_s\":{},\"ejections\":{}",
                     ceil_seconds(e->duration.count()),
                     targets_[target]->passive.ejections.load(std::memory_order_relaxed));
      extra += ",\"request_id\":";
      ghttp::append_json_string(extra, request_id);
      log(spdlog::level::warn, "upstream target ejected", "target_ejected",
          targets_[target]->address(), extra);
    }
  }
  if (breaker_) {
    auto t = breaker_->record(worker, is_failure(outcome), probe, now);
    if (t != CircuitBreaker::Transition::none) {
      log_transition(
          t, now,
          probe ? (is_failure(outcome) ? "probe_failed" : "probe_succeeded") : "failure_ratio");
    }
  }
}

CircuitBreaker::Admission UpstreamHealth::admit(Clock::time_point now) {
  auto a = breaker_->admit(now);
  if (a.transition != CircuitBreaker::Transition::none) {
    log_transition(a.transition, now, "open_for_elapsed");
  }
  if (!a.allowed) {
    circuit_rejected.fetch_add(1, std::memory_order_relaxed);
  }
  return a;
}

void UpstreamHealth::log_transition(CircuitBreaker::Transition t, Clock::time_point now,
                                    std::string_view reason) const {
  std::string extra = ",\"reason\":";
  ghttp::append_json_string(extra, reason);
  auto w = breaker_->window(now);
  fmt::format_to(std::back_inserter(extra), ",\"window_requests\":{},\"window_failures\":{}",
                 w.requests, w.failures);
  switch (t) {
    case CircuitBreaker::Transition::opened:
      fmt::format_to(std::back_inserter(extra), ",\"open_for_s\":{}",
                     ceil_seconds(breaker_->open_remaining(now).count()));
      log(spdlog::level::warn, "upstream circuit breaker open", "breaker_open", {}, extra);
      break;
    case CircuitBreaker::Transition::half_opened:
      log(spdlog::level::info, "upstream circuit breaker half-open", "breaker_half_open", {},
          extra);
      break;
    case CircuitBreaker::Transition::closed:
      log(spdlog::level::info, "upstream circuit breaker closed", "breaker_closed", {}, extra);
      break;
    case CircuitBreaker::Transition::none:
      break;
  }
}

bool UpstreamHealth::all_out() const {
  return std::all_of(targets_.begin(), targets_.end(),
                     [](const TargetHealth* t) { return t->out(); });
}

std::int64_t UpstreamHealth::unavailable_retry_after_s(Clock::time_point now) const {
  std::int64_t best = -1;
  for (const auto* t : targets_) {
    std::int64_t back = -1;
    if ((t->flags() & TargetHealth::kEjected) != 0) {
      // Past due (the sweep has not run yet) counts as now.
      back = std::max<std::int64_t>(
          0, t->passive.ejected_until_ns.load(std::memory_order_relaxed) - ns(now));
    }
    if ((t->flags() & TargetHealth::kUnhealthy) != 0 && cfg_.health_check) {
      auto checks = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        cfg_.health_check->interval * cfg_.health_check->healthy_after)
                        .count();
      back = std::max(back, checks);
    }
    if (back >= 0 && (best < 0 || back < best)) {
      best = back;
    }
  }
  return ceil_seconds(std::max<std::int64_t>(best, 0));
}

void UpstreamHealth::target_replaced(std::size_t target) {
  if (outlier_) {
    outlier_->forget(target);
  } else {
    targets_[target]->set(TargetHealth::kEjected, false);
  }
}

void UpstreamHealth::set_live_targets(std::size_t live) {
  if (outlier_) {
    outlier_->set_live_targets(live);
  }
}

void UpstreamHealth::sweep(Clock::time_point now) {
  if (outlier_) {
    for (auto t : outlier_->sweep(now)) {
      std::string extra = ",\"reason\":\"eject_for_elapsed\"";
      fmt::format_to(std::back_inserter(extra), ",\"ejections\":{}",
                     targets_[t]->passive.ejections.load(std::memory_order_relaxed));
      log(spdlog::level::info, "upstream target returned from ejection", "target_returned",
          targets_[t]->address(), extra);
    }
  }
  if (breaker_) {
    auto t = breaker_->tick(now);
    if (t != CircuitBreaker::Transition::none) {
      log_transition(t, now, "open_for_elapsed");
    }
  }
}

observability::ComponentReport UpstreamHealth::health_report(Clock::time_point now) const {
  observability::ComponentReport r;
  if (outlier_) {
    r.detail["ejected"] = outlier_->ejected();
    r.detail["max_ejected"] = outlier_->max_ejected();
  }
  if (breaker_) {
    auto s = breaker_->state();
    auto w = breaker_->window(now);
    nlohmann::json b = {{"state", to_string(s)},
                        {"window_requests", w.requests},
                        {"window_failures", w.failures},
                        {"opened", breaker_->opened_total()},
                        {"rejected", circuit_rejected.load(std::memory_order_relaxed)}};
    if (s == CircuitBreaker::State::open) {
      b["open_for_s"] = ceil_seconds(breaker_->open_remaining(now).count());
      r.status = observability::Status::down;
    } else if (s == CircuitBreaker::State::half_open) {
      r.status = observability::Status::degraded;
    }
    r.detail["circuit_breaker"] = std::move(b);
  }
  return r;
}

void UpstreamHealth::render_metric_help(std::string& out) {
  out +=
      "# HELP gatehouse_upstream_target_healthy 0 while the target's active health check holds "
      "it unhealthy.\n# TYPE gatehouse_upstream_target_healthy gauge\n"
      "# HELP gatehouse_upstream_target_ejected 1 while outlier detection holds the target "
      "ejected.\n# TYPE gatehouse_upstream_target_ejected gauge\n"
      "# HELP gatehouse_upstream_ejections_total Outlier ejections of the target.\n"
      "# TYPE gatehouse_upstream_ejections_total counter\n"
      "# HELP gatehouse_upstream_health_check_latency_seconds Duration of the target's last "
      "active check.\n# TYPE gatehouse_upstream_health_check_latency_seconds gauge\n"
      "# HELP gatehouse_upstream_health_transitions_total Active-check changes of the target "
      "between healthy and unhealthy.\n# TYPE gatehouse_upstream_health_transitions_total counter\n"
      "# HELP gatehouse_upstream_circuit_breaker_state Circuit breaker state: 0 closed, 1 open, "
      "2 half-open.\n# TYPE gatehouse_upstream_circuit_breaker_state gauge\n"
      "# HELP gatehouse_upstream_circuit_breaker_opened_total Times the breaker opened.\n"
      "# TYPE gatehouse_upstream_circuit_breaker_opened_total counter\n"
      "# HELP gatehouse_upstream_circuit_open_rejections_total Requests answered 503 "
      "circuit_open.\n# TYPE gatehouse_upstream_circuit_open_rejections_total counter\n"
      "# HELP gatehouse_upstream_unavailable_total Requests answered 503 upstream_unavailable "
      "(every target out).\n# TYPE gatehouse_upstream_unavailable_total counter\n";
}

void UpstreamHealth::render_metrics(std::string& out, Clock::time_point,
                                    const std::vector<const UpstreamHealth*>& others) const {
  auto it = std::back_inserter(out);
  for (const auto* t : targets_) {
    if (t->retired()) {
      continue;  // a re-resolved name's slot without an address
    }
    const auto f = t->flags();
    const auto address = t->address();
    std::uint64_t ejections = t->passive.ejections.load(std::memory_order_relaxed);
    std::uint64_t transitions = t->active.state_changes.load(std::memory_order_relaxed);
    for (const auto* o : others) {
      for (const auto* ot : o->targets_) {
        if (ot->address() == address) {
          ejections += ot->passive.ejections.load(std::memory_order_relaxed);
          transitions += ot->active.state_changes.load(std::memory_order_relaxed);
        }
      }
    }
    fmt::format_to(it,
                   "gatehouse_upstream_target_healthy{{upstream=\"{0}\",target=\"{1}\"}} {2}\n"
                   "gatehouse_upstream_target_ejected{{upstream=\"{0}\",target=\"{1}\"}} {3}\n"
                   "gatehouse_upstream_ejections_total{{upstream=\"{0}\",target=\"{1}\"}} {4}\n"
                   "gatehouse_upstream_health_transitions_total{{upstream=\"{0}\",target=\"{1}\"}} "
                   "{5}\n",
                   cfg_.name, address, (f & TargetHealth::kUnhealthy) != 0 ? 0 : 1,
                   (f & TargetHealth::kEjected) != 0 ? 1 : 0, ejections, transitions);
    auto latency = t->active.last_latency_us.load(std::memory_order_relaxed);
    if (latency >= 0) {
      fmt::format_to(
          it,
          "gatehouse_upstream_health_check_latency_seconds{{upstream=\"{}\",target=\"{}\"}} {}\n",
          cfg_.name, address, static_cast<double>(latency) / 1e6);
    }
  }
  std::uint64_t opened = breaker_ ? breaker_->opened_total() : 0;
  std::uint64_t rejected = circuit_rejected.load(std::memory_order_relaxed);
  std::uint64_t none = unavailable.load(std::memory_order_relaxed);
  for (const auto* o : others) {
    opened += o->breaker_ ? o->breaker_->opened_total() : 0;
    rejected += o->circuit_rejected.load(std::memory_order_relaxed);
    none += o->unavailable.load(std::memory_order_relaxed);
  }
  fmt::format_to(it, "gatehouse_upstream_circuit_breaker_state{{upstream=\"{}\"}} {}\n", cfg_.name,
                 breaker_ ? static_cast<int>(breaker_->state()) : 0);
  fmt::format_to(it, "gatehouse_upstream_circuit_breaker_opened_total{{upstream=\"{}\"}} {}\n",
                 cfg_.name, opened);
  fmt::format_to(it, "gatehouse_upstream_circuit_open_rejections_total{{upstream=\"{}\"}} {}\n",
                 cfg_.name, rejected);
  fmt::format_to(it, "gatehouse_upstream_unavailable_total{{upstream=\"{}\"}} {}\n", cfg_.name,
                 none);
}

}  // namespace gatehouse::upstream
