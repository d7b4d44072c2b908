#pragma once
// The deep dependency checks of /health/detailed (health.checks), run on the admin thread's
// io_context, never a worker's. Each check's result is cached for health.cache_ttl and at most
// one probe per check is in flight for the whole process: callers that find one running wait
// for its result, so a flood of /health/detailed requests costs one probe per check per TTL.
// Single-threaded (the admin thread): no lock.
#include <nlohmann/json.hpp>

#include <memory>
#include <vector>

#include "config/config.hpp"
#include "io/net.hpp"
#include "observability/dependency_checks.hpp"
#include "observability/logging.hpp"

namespace gatehouse::redis {
class Shared;
class Client;
}  // namespace gatehouse::redis

namespace gatehouse::server {

class DependencyChecks {
 public:
  // Redis checks connect once here (blocking, like the rate-limit store's start-up).
  DependencyChecks(io::net::io_context& admin_ioc, const config::Config& cfg,
                   observability::Logs& logs);
  ~DependencyChecks();

  bool empty() const { return checks_.empty(); }
  // Adds "check:<name>" components to a /health/detailed report, probing what is stale; returns
  // whether every check passed.
  io::net::awaitable<bool> add_to(nlohmann::json& report);
  // Probes started so far, per check (tests and metrics).
  std::uint64_t probes(std::size_t i) const;

 private:
  struct State;
  io::net::awaitable<void> probe(std::size_t i);
  io::net::awaitable<observability::CheckResult> run_probe(std::size_t i);

  io::net::io_context& ioc_;
  const config::Config& cfg_;
  observability::Logs& logs_;
  std::vector<std::unique_ptr<State>> checks_;
};

}  // namespace gatehouse::server
