#include "upstream/health_checker.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

#include "http/json.hpp"
#include "io/spawn.hpp"

namespace gatehouse::upstream {

using namespace io;  // NOLINT(google-build-using-namespace)
namespace net = io::net;
namespace beast = io::beast;
using observability::TargetHealth;

HealthChecker::HealthChecker(net::io_context& ioc, const config::Config& cfg,
                             const std::vector<std::vector<tcp::endpoint>>& endpoints,
                             observability::Health& health, observability::Logs& logs,
                             std::vector<UpstreamHealth*> shared, std::string version,
                             std::vector<const TargetSlots*> slots)
    : ioc_(ioc),
      cfg_(cfg),
      endpoints_(endpoints),
      health_(health),
      logs_(logs),
      shared_(std::move(shared)),
      version_(std::move(version)),
      slots_(std::move(slots)) {
  slots_.resize(cfg_.upstreams.size());
  shared_.resize(cfg_.upstreams.size());
  for (const auto& uc : cfg_.upstreams) {
    add_unit(uc);
  }
}

void HealthChecker::add_unit(const config::Upstream& uc) {
  const std::size_t u = configs_.size();
  configs_.push_back(&uc);
  const auto& hc = uc.health_check;
  verdicts_.emplace_back();
  requests_.emplace_back();
  checked_.emplace_back(endpoints_[u].size(), 0);
  if (!hc) {
    return;
  }
  for (std::size_t t = 0; t < endpoints_[u].size(); ++t) {
    verdicts_[u].emplace_back(hc->healthy_after, hc->unhealthy_after);
    requests_[u].push_back(check_request(*hc, health_.target(u, t).address(), version_));
  }
}

void HealthChecker::add_upstream(std::size_t u, const config::Upstream& uc, UpstreamHealth* shared,
                                 const TargetSlots* slots) {
  if (u != configs_.size()) {
    throw std::logic_error("health checker: units are added in order");
  }
  shared_.push_back(shared);
  slots_.push_back(slots);
  add_unit(uc);
  if (!running_ || stopped_) {
    return;
  }
  // Posted: the loop's first round runs after the reload that added the unit has marked it
  // active (co_spawn would run it inline now, find it inactive, and wait a whole interval).
  net::post(ioc_, [this, u] {
    if (!stopped_) {
      spawn(ioc_, run_upstream(u), logs_, "health check loop");
    }
  });
  if (!sweeping_ && needs_sweep()) {
    sweeping_ = true;
    spawn(ioc_, sweep_loop(), logs_, "health sweep loop");
  }
}

bool HealthChecker::needs_sweep() const {
  // Only ejections and breakers need the sweep.
  return std::any_of(shared_.begin(), shared_.end(), [](UpstreamHealth* s) {
    return s != nullptr && (s->outlier() != nullptr || s->breaker() != nullptr);
  });
}

bool HealthChecker::same_slot(std::size_t u, std::size_t t, std::uint32_t generation) const {
  return slots_[u] == nullptr || slots_[u]->view()->generations[t] == generation;
}

void HealthChecker::log_reachability(std::size_t u, TargetHealth& th, bool was, bool now_reachable,
                                     const std::string& what) {
  if (was == now_reachable) {
    return;
  }
  std::string extra = "\"event\":";
  ghttp::append_json_string(extra, now_reachable ? "target_reachable" : "target_unreachable");
  extra += ",\"upstream\":";
  ghttp::append_json_string(extra, configs_[u]->name);
  extra += ",\"target\":";
  ghttp::append_json_string(extra, th.address());
  extra += ",\"reason\":";
  ghttp::append_json_string(extra, now_reachable ? "check connected" : what);
  if (!now_reachable) {
    extra += ",\"error\":";
    ghttp::append_json_string(extra, what);
  }
  logs_.error(now_reachable ? spdlog::level::info : spdlog::level::warn,
              now_reachable ? "upstream target reachable again" : "upstream target unreachable",
              extra);
}

net::awaitable<void> HealthChecker::check(std::size_t u, std::size_t t, tcp::endpoint ep,
                                          std::uint32_t generation) {
  beast::tcp_stream stream(ioc_);
  stream.expires_after(configs_[u]->connect_timeout);
  const auto start = Clock::now();
  auto [ec] = co_await stream.async_connect(ep, nothrow);
  if (!same_slot(u, t, generation)) {
    co_return;  // the slot's address changed meanwhile: this result is about another target
  }
  auto& th = health_.target(u, t);
  th.active.last_check_unix_ms.store(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::system_clock::now().time_since_epoch())
                                         .count(),
                                     std::memory_order_relaxed);
  th.active.last_latency_us.store(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count(),
      std::memory_order_relaxed);
  bool was = (th.flags() & TargetHealth::kUnreachable) == 0;
  std::string what = ec ? (ec == beast::error::timeout ? "connect timed out" : ec.message()) : "";
  th.report(!ec, what);
  log_reachability(u, th, was, !ec, what);
}

net::awaitable<void> HealthChecker::http_check(std::size_t u, std::size_t t, tcp::endpoint ep,
                                               std::uint32_t generation) {
  const auto& hc = *configs_[u]->health_check;
  auto& th = health_.target(u, t);
  beast::tcp_stream stream(ioc_);
  stream.expires_after(hc.timeout);
  const auto start = Clock::now();
  std::string error;
  unsigned status = 0;
  // A copy: a new address for the slot rebuilds requests_[u][t] while this check may still run.
  const std::string request = requests_[u][t];
  auto [ec] = co_await stream.async_connect(ep, nothrow);
  const bool connected = !ec;
  if (connected) {
    auto [wec, wn] = co_await net::async_write(stream, net::buffer(request), nothrow);
    ec = wec;
    std::string received;
    std::array<char, 512> chunk{};
    while (!ec) {
      auto [rec, n] = co_await stream.async_read_some(net::buffer(chunk), nothrow);
      received.append(chunk.data(), n);
      auto parsed = parse_status_line(received);
      if (parsed) {
        status = *parsed;
        if (status == 0) {
          error = "invalid status line";
        }
        break;
      }
      if (rec == net::error::eof) {
        error = "closed before a status line";
        break;
      }
      ec = rec;
    }
  }
  if (ec) {
    error = ec == beast::error::timeout ? "health check timed out" : ec.message();
  } else if (error.empty() && !status_expected(hc, status)) {
    error = fmt::format("unexpected status {}", status);
  }
  if (!same_slot(u, t, generation)) {
    co_return;  // the slot's address changed meanwhile: this result is about another target
  }
  const bool passed = error.empty();
  th.active.last_check_unix_ms.store(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::system_clock::now().time_since_epoch())
                                         .count(),
                                     std::memory_order_relaxed);
  th.active.last_latency_us.store(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count(),
      std::memory_order_relaxed);
  // The connect outcome is news at once (traffic then tries the target last); the verdict on
  // serving waits for the hysteresis.
  bool was_reachable = (th.flags() & TargetHealth::kUnreachable) == 0;
  if (connected) {
    th.set(TargetHealth::kUnreachable, false);
  } else {
    th.report(false, error);
  }
  log_reachability(u, th, was_reachable, connected, error);
  if (!passed) {
    th.set_last_error(error);
  }
  auto& verdict = verdicts_[u][t];
  auto change = verdict.record(passed);
  th.active.consecutive_passes.store(verdict.passes(), std::memory_order_relaxed);
  th.active.consecutive_failures.store(verdict.failures(), std::memory_order_relaxed);
  if (change == Hysteresis::Change::none) {
    co_return;
  }
  const bool healthy = change == Hysteresis::Change::became_healthy;
  th.set(TargetHealth::kUnhealthy, !healthy);
  th.active.state_changes.fetch_add(1, std::memory_order_relaxed);
  std::string extra = "\"event\":";
  ghttp::append_json_string(extra, healthy ? "target_healthy" : "target_unhealthy");
  extra += ",\"upstream\":";
  ghttp::append_json_string(extra, configs_[u]->name);
  extra += ",\"target\":";
  ghttp::append_json_string(extra, th.address());
  extra += ",\"reason\":";
  if (healthy) {
    ghttp::append_json_string(extra, fmt::format("{} checks passed", verdict.passes()));
  } else {
    ghttp::append_json_string(extra, error);
    fmt::format_to(std::back_inserter(extra), ",\"consecutive_failures\":{}", verdict.failures());
  }
  logs_.error(healthy ? spdlog::level::info : spdlog::level::warn,
              healthy ? "upstream target healthy" : "upstream target unhealthy", extra);
}

net::awaitable<void> HealthChecker::run_upstream(std::size_t u) {
  const auto& hc = configs_[u]->health_check;
  net::steady_timer timer(ioc_);
  for (;;) {
    // i12-resolve: a re-resolved upstream's checks follow its slots' current addresses.
    std::shared_ptr<const SlotView> view;
    if (slots_[u] != nullptr) {
      view = slots_[u]->view();
    }
    // An upstream a reload left out is not probed (its targets keep their last state); the loop
    // goes on, so a reload that puts it back finds it checked again.
    const std::size_t targets = health_.active(u) ? endpoints_[u].size() : 0;
    for (std::size_t t = 0; t < targets; ++t) {
      auto ep = endpoints_[u][t];
      std::uint32_t generation = 0;
      if (view) {
        if (view->addresses[t].empty()) {
          continue;
        }
        ep = view->endpoints[t];
        generation = view->generations[t];
        if (checked_[u][t] != generation) {
          checked_[u][t] = generation;  // a new address: a new verdict and Host
          if (hc) {
            verdicts_[u][t] = Hysteresis(hc->healthy_after, hc->unhealthy_after);
            const auto& name = health_.target_name(u, t);
            requests_[u][t] =
                check_request(*hc, name.empty() ? view->addresses[t] : name, version_);
          }
        }
      }
      if (hc) {
        spawn(ioc_, http_check(u, t, ep, generation), logs_, "health check");
      } else {
        spawn(ioc_, check(u, t, ep, generation), logs_, "health check");
      }
    }
    timer.expires_after(hc ? hc->interval : cfg_.health.check_interval);
    auto [ec] = co_await timer.async_wait(nothrow);
    if (ec || stopped_) {
      co_return;
    }
  }
}

net::awaitable<void> HealthChecker::sweep_loop() {
  net::steady_timer timer(ioc_);
  for (;;) {
    const auto now = Clock::now();
    for (auto* s : shared_) {
      if (s != nullptr) {
        s->sweep(now);
      }
    }
    timer.expires_after(kSweepInterval);
    auto [ec] = co_await timer.async_wait(nothrow);
    if (ec || stopped_) {
      co_return;
    }
  }
}

net::awaitable<void> HealthChecker::run() {
  running_ = true;
  for (std::size_t u = 0; u < configs_.size(); ++u) {
    spawn(ioc_, run_upstream(u), logs_, "health check loop");
  }
  if (needs_sweep()) {
    sweeping_ = true;
    co_await sweep_loop();
  }
}

}  // namespace gatehouse::upstream
