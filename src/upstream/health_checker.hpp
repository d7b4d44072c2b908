#pragma once
// Active health checks, on the admin thread, off the request path. For an upstream with a
// `health_check`: GET its path on every target each interval; the status decides pass or fail and
// Hysteresis turns the results into healthy/unhealthy (TargetHealth::kUnhealthy: no requests).
// Without one: a TCP connect every health.check_interval (TargetHealth::kUnreachable: tried
// last). Either way the connect outcome sets kUnreachable at once. The same loop returns ejected
// targets and moves open breakers to half-open (UpstreamHealth::sweep). Changes are logged.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "io/net.hpp"
#include "observability/health.hpp"
#include "observability/logging.hpp"
#include "upstream/active_check.hpp"
#include "upstream/target_slots.hpp"
#include "upstream/upstream_health.hpp"

namespace gatehouse::upstream {

class HealthChecker {
 public:
  // `endpoints[u][t]`: target t of upstream u, resolved; `shared[u]`: upstream u's state. All
  // references must outlive the checks.
  HealthChecker(io::net::io_context& ioc, const config::Config& cfg,
                const std::vector<std::vector<io::tcp::endpoint>>& endpoints,
                observability::Health& health, observability::Logs& logs,
                std::vector<UpstreamHealth*> shared = {}, std::string version = "0",
                std::vector<const TargetSlots*> slots = {});

  // Checks every target now and then every interval, until stop().
  io::net::awaitable<void> run();
  // Reload, admin thread: unit `u` (the next one; `endpoints[u]` filled) for upstream `cfg`, which
  // must outlive the checker; checked like the others from now on while it is active.
  void add_upstream(std::size_t u, const config::Upstream& cfg, UpstreamHealth* shared,
                    const TargetSlots* slots);
  // The loops end at their next wake-up (checks under way finish).
  void stop() { stopped_ = true; }

  // How often ejections and open breakers are looked at.
  static constexpr std::chrono::milliseconds kSweepInterval{250};

 private:
  io::net::awaitable<void> run_upstream(std::size_t upstream);
  void add_unit(const config::Upstream& cfg);
  bool needs_sweep() const;
  io::net::awaitable<void> sweep_loop();
  io::net::awaitable<void> check(std::size_t upstream, std::size_t target, io::tcp::endpoint ep,
                                 std::uint32_t generation);
  io::net::awaitable<void> http_check(std::size_t upstream, std::size_t target,
                                      io::tcp::endpoint ep, std::uint32_t generation);
  // i12-resolve: whether slot `target` still holds the address a check started with.
  bool same_slot(std::size_t upstream, std::size_t target, std::uint32_t generation) const;
  void log_reachability(std::size_t upstream, observability::TargetHealth& th, bool was,
                        bool now_reachable, const std::string& what);

  io::net::io_context& ioc_;
  const config::Config& cfg_;                     // health.* (restart-only)
  std::vector<const config::Upstream*> configs_;  // per unit
  const std::vector<std::vector<io::tcp::endpoint>>& endpoints_;
  observability::Health& health_;
  observability::Logs& logs_;
  std::vector<UpstreamHealth*> shared_;
  std::string version_;
  std::vector<std::vector<Hysteresis>> verdicts_;   // [u][t], upstreams with a health_check
  std::vector<std::vector<std::string>> requests_;  // [u][t]: the check's request bytes
  // i12-resolve: [u], null when upstream u's targets never change; [u][t]: the slot generation
  // verdicts_ and requests_ were made for.
  std::vector<const TargetSlots*> slots_;
  std::vector<std::vector<std::uint32_t>> checked_;
  bool running_ = false;
  bool sweeping_ = false;
  bool stopped_ = false;
};

}  // namespace gatehouse::upstream
