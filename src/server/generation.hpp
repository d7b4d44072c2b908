#pragma once
// One configuration generation: the parsed file and everything derived from it that requests read
// (router, CORS and security-header policies, the rate limiter's plans). Built whole on the admin
// thread (start-up, then each reload) and never changed after; workers serve new requests on the
// newest one while requests in flight finish on theirs (Worker::install, docs/architecture.md,
// "Configuration reload"). State that must outlive a generation (rate-limit counters and bans,
// upstream pools and health) is not in here: it lives in the Gateway or the workers and is handed
// to each new generation, keyed by definition.
#include <cstdint>
#include <memory>
#include <vector>

#include "config/config.hpp"
#include "config/reload_plan.hpp"
#include "core/router.hpp"
#include "filters/cors/cors_filter.hpp"
#include "filters/rate_limit/rate_limit_filter.hpp"
#include "filters/registry.hpp"
#include "filters/security_headers/security_headers_filter.hpp"
#include "io/net.hpp"

namespace gatehouse::server {

struct Generation {
  Generation(std::shared_ptr<const config::Config> config, std::uint64_t number, unsigned workers,
             std::shared_ptr<filters::rate_limit::SharedState> rate_state,
             std::shared_ptr<const ratelimit::Clock> clock,
             const observability::ClientIpHasher* hasher, std::vector<std::size_t> route_slots,
             std::vector<std::size_t> upstream_units)
      : cfg(std::move(config)),
        number(number),
        route_slots(std::move(route_slots)),
        upstream_units(std::move(upstream_units)),
        router(*cfg),
        security_headers(filters::security_headers::settings(*cfg), cfg->environment),
        cors(filters::cors::settings(*cfg)),
        rate_limiter(std::make_unique<filters::rate_limit::RateLimiter>(
            *cfg, workers, std::move(rate_state), std::move(clock), hasher)) {
    for (auto& [name, text] : config::upstream_definitions(*cfg, filters::config_sections())) {
      upstream_definitions.push_back(std::move(text));
    }
  }

  std::shared_ptr<const config::Config> cfg;
  std::uint64_t number;  // 1 at start-up, +1 per successful reload
  // Route index -> metrics slot (Metrics::route_slots): route series are keyed by name, so a
  // reload may add, remove, rename and reorder routes; the request path reads one entry.
  std::vector<std::size_t> route_slots;
  // Upstream index -> its unit, the one built for its definition (config::upstream_unit_keys,
  // Gateway::plan_units): the process-wide tables (target health, breaker, metrics series,
  // endpoints, checks) are indexed by unit, while this generation's routes and clusters use its
  // own indices, so a reload may add, remove, reorder and re-target upstreams.
  std::vector<std::size_t> upstream_units;
  core::Router router;
  filters::security_headers::SecurityHeaders security_headers;
  filters::cors::Cors cors;
  std::unique_ptr<filters::rate_limit::RateLimiter> rate_limiter;
  // Per upstream (index as in cfg->upstreams): its emitted block. A worker keeps an upstream's
  // cluster (pool, balancer, queue, retry budget) while this text stays the same, and builds a
  // new one for a generation that changes it (Worker::install_now).
  std::vector<std::string> upstream_definitions;
};

}  // namespace gatehouse::server
