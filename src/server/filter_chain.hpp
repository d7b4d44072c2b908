#pragma once
// gatehouse's filter chain: which filters run, in which order, and what they are built from.
// The order is the request's way through the gateway (docs/architecture.md, "One request"):
//
//   request_id → request_checks (head rules, canonical path) → health → access → cors (preflight)
//   → jobs (status endpoints, issue 13) → route (404) → route access → tls_redirect → rate_limit
//   → cache → [upstream, or on async/hybrid routes the job branch, server/jobs_accept.cpp] ;
//   invalidate (routes[].invalidates), security_headers, response_headers (X-Process-Time) and
//   access_log act only on the way out.
//
// encode_headers runs in the same order on every response, proxied or local.
#include <cstdint>

#include "core/router.hpp"
#include "filters/access/filter.hpp"
#include "filters/access_log/filter.hpp"
#include "filters/cache/filter.hpp"
#include "filters/cache_bus/filter.hpp"
#include "filters/cors/filter.hpp"
#include "filters/health/filter.hpp"
#include "filters/jobs/filter.hpp"
#include "filters/rate_limit/filter.hpp"
#include "filters/request_checks/filter.hpp"
#include "filters/request_id/filter.hpp"
#include "filters/response_headers/filter.hpp"
#include "filters/route/filter.hpp"
#include "filters/security_headers/filter.hpp"
#include "filters/tls_redirect/filter.hpp"
#include "observability/access_batch.hpp"
#include "observability/health.hpp"
#include "observability/logging.hpp"
#include "observability/metrics.hpp"
#include "pipeline/chain.hpp"

namespace gatehouse::server {

// What filters are built from, per worker: shared read-only policies, the worker's metrics shard,
// log batch and store client. Filters take what they need in their constructor.
struct FilterServices {
  const config::Config& cfg;
  unsigned worker;
  observability::Logs& logs;
  const observability::ClientIpHasher& hasher;
  observability::WorkerMetrics& metrics;
  std::size_t none_route;          // the metrics slot of requests without a route
  const std::size_t* route_slots;  // route index -> metrics slot (the generation's table)
  observability::AccessBatch& access_batch;
  observability::Health& health;
  const bool& draining;
  const core::Router& router;
  const filters::cors::Cors& cors;
  const filters::security_headers::SecurityHeaders& security_headers;
  filters::rate_limit::RateLimiter& rate_limiter;
  filters::rate_limit::RateLimitFilter::Store* store;  // null with the in-memory store
  const std::uint16_t& tls_port;                       // bound once the listeners are
  observability::SecurityEvents& security_events;      // issue 15, sentry-seclog
  filters::cache::Store* cache;                        // issue 14; null when no route caches
  filters::cache_bus::Invalidator* invalidator;        // issue 14: routes[].invalidates
  filters::cache::ProxyHooks cache_hooks;              // cache refreshes; set by the worker
  // issue 13: the job store and the owner hasher (status endpoints); null without `jobs`.
  ::gatehouse::jobs::Store* job_store = nullptr;
  const observability::ClientIpHasher* job_owner_hasher = nullptr;
  ratelimit::MemoryStore* job_poll_limits = nullptr;  // jobs.poll_rate's counts
};

using FilterChain = pipeline::Chain<
    filters::request_id::RequestIdFilter, filters::request_checks::RequestChecksFilter,
    filters::health::HealthFilter, filters::access::AccessFilter, filters::cors::CorsFilter,
    filters::jobs::JobsFilter, filters::route::RouteFilter, filters::access::RouteAccessFilter,
    filters::tls_redirect::TlsRedirectFilter, filters::rate_limit::RateLimitFilter,
    filters::cache::CacheFilter, filters::cache_bus::InvalidateFilter,
    filters::security_headers::SecurityHeadersFilter,
    filters::response_headers::ResponseHeadersFilter, filters::access_log::AccessLogFilter>;

}  // namespace gatehouse::server
