#pragma once
// Active health checks: every health.check_interval, a TCP connect to each upstream target; the
// result goes into the target's shared health state, which every worker's balancer reads, and a
// change of state is logged. Runs on the admin thread, off the request path.
#include <vector>

#include "config/config.hpp"
#include "io/net.hpp"
#include "observability/health.hpp"
#include "observability/logging.hpp"

namespace gatehouse::upstream {

class HealthChecker {
 public:
  // `endpoints[u][t]`: target t of upstream u, resolved. All references must outlive the checks.
  HealthChecker(io::net::io_context& ioc, const config::Config& cfg,
                const std::vector<std::vector<io::tcp::endpoint>>& endpoints,
                observability::Health& health, observability::Logs& logs);

  // Checks every target now and then every check_interval, until stop().
  io::net::awaitable<void> run();
  // The loop ends at its next wake-up (checks under way finish).
  void stop() { stopped_ = true; }

 private:
  io::net::awaitable<void> check(std::size_t upstream, std::size_t target);

  io::net::io_context& ioc_;
  const config::Config& cfg_;
  const std::vector<std::vector<io::tcp::endpoint>>& endpoints_;
  observability::Health& health_;
  observability::Logs& logs_;
  bool stopped_ = false;
};

}  // namespace gatehouse::upstream
