#pragma once
// The process: shared immutable config, logs, metrics and health; N workers each with its own
// io_context, SO_REUSEPORT listener and upstream pools; an admin thread (the caller's) that runs
// the admin listener, active health checks, signals and the drain.
#include <boost/asio/ssl/context.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/router.hpp"
#include "filters/cache/store.hpp"
#include "filters/cache_bus/bus_net.hpp"
#include "filters/cache_bus/invalidator.hpp"
#include "filters/cors/cors_filter.hpp"
#include "filters/rate_limit/rate_limit_filter.hpp"
#include "filters/rate_limit/store/redis_store_net.hpp"
#include "filters/security_headers/security_headers_filter.hpp"
#include "io/net.hpp"
#include "observability/health.hpp"
#include "observability/logging.hpp"
#include "observability/metrics.hpp"
#include "observability/security_events.hpp"
#include "observability/stats.hpp"
#include "server/generation.hpp"
#include "upstream/health_checker.hpp"
#include "upstream/resolver.hpp"
#include "upstream/upstream_health.hpp"

namespace gatehouse::server {

// The I/O primitives (src/io) are this layer's vocabulary.
using namespace ::gatehouse::io;  // NOLINT(google-build-using-namespace)
namespace net = io::net;
namespace beast = io::beast;
namespace http = io::http;  // Beast's; ours is ghttp
namespace ghttp = io::ghttp;

class Worker;
class DependencyChecks;
class SentryReporter;
class JobsService;  // issue 13 (server/jobs.hpp)

class Gateway {
 public:
  Gateway(std::shared_ptr<const config::Config> cfg, std::string version);
  ~Gateway();

  struct RunOptions {
    // Share the listen addresses with the gatehouse already listening there (SO_REUSEPORT)
    // instead of refusing to start: the zero-downtime handover (start this one, then SIGTERM the
    // old one). Without it an address in use is an error.
    bool takeover = false;
    // The file the configuration came from: what a reload reads again. Empty (`run --upstream`):
    // a reload is refused.
    std::string config_path;
  };

  // Configuration reload (SIGHUP, POST /admin/reload). Admin thread only.
  struct ReloadResult {
    bool ok = false;
    unsigned status = 200;  // the admin answer's status
    std::string body;       // its JSON
  };
  // The outcome of the last reload, for /health/detailed and the dashboard.
  struct ReloadRecord {
    std::chrono::system_clock::time_point time;
    bool ok = false;
    std::string trigger;           // "sighup" or "admin"
    std::string error;             // the failure, "file:line:col: key: why" when the file was wrong
    std::uint64_t generation = 0;  // the generation in place after it
  };
  ReloadResult reload(const char* trigger);
  // 1 at start-up, +1 per successful reload. Thread-safe.
  std::uint64_t config_generation() const {
    return generation_number_.load(std::memory_order_relaxed);
  }
  // Empty until the first reload. Thread-safe.
  std::optional<ReloadRecord> last_reload() const {
    std::lock_guard lock(reload_mu_);
    return last_reload_;
  }
  // The generation new requests use (admin thread; workers hold their own, Worker::install).
  const std::shared_ptr<const Generation>& generation() const { return gen_; }

  // Binds every listener (throws std::runtime_error with a clear message on failure: "listen
  // ADDRESS: address in use ..."), serves until SIGTERM/SIGINT, drains, and returns the exit code.
  int run(RunOptions options);
  int run() { return run(RunOptions{}); }

  // The configuration the process started with: what restart-only keys say (listen, the upstream
  // list and targets, log, ...; config/reload_plan.hpp). Reloadable keys are read from
  // generation()->cfg (admin thread) or the request's Context::cfg (workers); an upstream's
  // timeouts, pool and retries from its worker cluster (Worker::cluster).
  const config::Config& cfg() const { return *cfg_; }
  observability::Logs& logs() { return *logs_; }
  observability::Metrics& metrics() { return *metrics_; }
  observability::Health& health() { return *health_; }
  const observability::ClientIpHasher& hasher() const { return hasher_; }
  // issue 15, sentry-seclog: log.security_events; errors.sentry (null when off).
  observability::SecurityEvents& security_events() { return *security_events_; }
  SentryReporter* sentry() { return sentry_.get(); }
  // issue 14: the process-wide response cache (thread-safe); null when no route caches.
  filters::cache::Store* cache() { return cache_.get(); }
  // The current generation's limiter (admin thread).
  filters::rate_limit::RateLimiter& rate_limiter() { return *gen_->rate_limiter; }
  // The shared Redis store of the rate limiter; null with the in-memory store.
  filters::rate_limit::store::RedisStore* redis_store() { return redis_.get(); }
  // By unit (start-up upstreams first, then units built by reloads; a generation's own order:
  // Generation::upstream_units). Never reallocated: workers read it while a reload appends.
  const std::vector<std::vector<tcp::endpoint>>& upstream_endpoints() const { return endpoints_; }
  // Unit u's process-wide target health (outlier detection, circuit breaker).
  upstream::UpstreamHealth& upstream_health(std::size_t u) { return *upstream_health_[u]; }
  // i12-resolve: unit u's re-resolved target slots; null when its targets never change.
  const upstream::TargetSlots* target_slots(std::size_t u) const { return resolver_->slots(u); }
  // issue 14: cache invalidation (routes[].invalidates, DELETE /admin/cache, the bus); always
  // set, it purges nothing here without a cache.
  filters::cache_bus::Invalidator* invalidator() { return invalidator_.get(); }
  // issue 13: async jobs (the store and its counters); null without a `jobs` section.
  JobsService* jobs() { return jobs_.get(); }
  JobsService& jobs_service() { return *jobs_; }
  const std::string& version() const { return version_; }
  bool development() const { return cfg_->environment == config::Environment::development; }
  unsigned worker_count() const { return workers_count_; }
  std::uint16_t tls_port() const { return tls_port_; }  // bound port of listen_tls
  const std::uint16_t& tls_port_ref() const { return tls_port_; }
  // Connection caps (limits.max_connections, max_connections_per_ip), taken at accept.
  bool admit_connection(const std::string& peer_ip);
  void release_connection(const std::string& peer_ip);

  // The TLS context new connections use (replaced on SIGHUP; live connections keep theirs).
  std::shared_ptr<net::ssl::context> tls_context() {
    std::lock_guard lock(tls_mu_);
    return tls_ctx_;
  }

 private:
  void begin_drain(const char* why);
  void stop_listening();
  tcp::endpoint claim_address(const tcp::endpoint& ep, const std::string& what);
  // An exclusive socket on `ep` (SO_REUSEADDR, no SO_REUSEPORT), listening when `listen`.
  error_code bind_exclusive(tcp::acceptor& acceptor, const tcp::endpoint& ep, bool listen);
  net::awaitable<void> admin_accept_loop(tcp::acceptor acceptor);
  net::awaitable<void> admin_listen_when_free(tcp::endpoint ep);
  net::awaitable<void> admin_session(tcp::socket socket);
  net::awaitable<void> admin_bans(std::string_view method, std::string_view target,
                                  unsigned& status, std::string& body);
  net::awaitable<void> store_probe_loop();
  // issue 13: /admin/jobs (jobs_admin.cpp).
  net::awaitable<void> admin_jobs(std::string_view method, std::string_view target,
                                  unsigned& status, std::string& body);
  void admin_cache(std::string_view method, std::string_view target, unsigned& status,
                   std::string& body);
  void set_up_invalidation();
  net::awaitable<void> log_flush_loop();
  void add_process_details(nlohmann::json& report);
  // GET /dashboard.json (dashboard.cpp), admin thread.
  std::string dashboard_json();
  void wait_signals();
  void on_worker_done();
  bool reload_tls(std::string& error);
  void render_reload_metrics(std::string& out) const;
  // Reload, in two steps. plan_units: each upstream of `next` -> its unit (upstream_unit_keys),
  // the next indices for keys not served yet, whose names it resolves (blocking); changes
  // nothing. Empty on success, else why. add_units, once nothing can refuse the reload any more:
  // builds the planned units, at the planned indices in every table.
  struct UnitPlan {
    std::vector<std::size_t> units;  // per upstream of the new file
    struct Fresh {
      std::size_t upstream;  // index in the new file
      std::string key;
      std::vector<std::vector<tcp::endpoint>> resolved;  // Resolver::lookup
      std::vector<tcp::endpoint> endpoints;              // targets resolved once
    };
    std::vector<Fresh> fresh;
  };
  std::string plan_units(const config::Config& next, UnitPlan& plan);
  void add_units(const std::shared_ptr<const config::Config>& next, UnitPlan& plan);
  void add_unit(const std::shared_ptr<const config::Config>& owner, UnitPlan::Fresh& f);
  void set_unit_probe(std::size_t u);
  void add_rate_limit_component();
  nlohmann::json reload_details() const;

  std::shared_ptr<const config::Config> cfg_;
  std::string version_;
  unsigned workers_count_;
  std::unique_ptr<observability::Logs> logs_;
  std::unique_ptr<observability::Metrics> metrics_;
  std::unique_ptr<observability::Health> health_;
  observability::ClientIpHasher hasher_;
  std::unique_ptr<observability::SecurityEvents> security_events_;  // issue 15, sentry-seclog
  std::unique_ptr<SentryReporter> sentry_;                          // issue 15, sentry-seclog
  std::unique_ptr<filters::cache::Store> cache_;                    // issue 14
  // --- configuration reload ---
  std::string config_path_;
  std::shared_ptr<filters::rate_limit::SharedState> rate_state_;  // every generation's limiter
  std::shared_ptr<const ratelimit::Clock> rate_clock_;
  std::shared_ptr<const Generation> gen_;
  std::atomic<std::uint64_t> generation_number_{1};
  mutable std::mutex reload_mu_;
  std::optional<ReloadRecord> last_reload_;
  std::uint64_t reloads_ok_ = 0, reloads_failed_ = 0;  // admin thread
  bool rate_limit_component_ = false;                  // in /health/detailed yet
  std::unique_ptr<filters::rate_limit::store::RedisStore> redis_;
  // --- upstream units (docs/architecture.md, "State carried over by definition key") ---
  std::size_t unit_capacity_;
  std::vector<std::string> unit_keys_;  // admin thread; config::upstream_unit_keys
  // The configuration each unit built after start-up was read from (its parts hold references
  // into it).
  std::vector<std::shared_ptr<const config::Config>> unit_owners_;
  std::vector<std::vector<tcp::endpoint>> endpoints_;  // reserved to unit_capacity_
  std::vector<std::unique_ptr<upstream::UpstreamHealth>> upstream_health_;  // likewise
  std::unique_ptr<upstream::Resolver> resolver_;  // i12-resolve: admin thread
  std::atomic<std::size_t> open_connections_{0};
  ratelimit::InFlight connections_per_ip_;
  std::uint16_t tls_port_ = 0;
  std::mutex tls_mu_;
  std::shared_ptr<net::ssl::context> tls_ctx_;
  // issue 14: before workers_, which point to it.
  std::unique_ptr<filters::cache_bus::Invalidator> invalidator_;
  std::vector<std::unique_ptr<Worker>> workers_;
  // Declared before admin_ioc_, so destroyed after it: checks still pending refer to it.
  std::unique_ptr<upstream::HealthChecker> health_checker_;
  net::io_context admin_ioc_{1};
  net::signal_set signals_{admin_ioc_};
  net::steady_timer drain_timer_{admin_ioc_};
  // issue 13: after workers_ and admin_ioc_, so destroyed before both: the store's thread is
  // joined while the io_contexts its callbacks post to (workers', the admin thread's) still exist.
  std::unique_ptr<JobsService> jobs_;
  // The breaker's probe; before admin_ioc_ dies.
  std::unique_ptr<filters::rate_limit::store::RedisStoreClient> admin_redis_;
  // health.checks (i12-edge): probed on admin_ioc_ by /health/detailed; before admin_ioc_ dies.
  std::unique_ptr<DependencyChecks> dependency_checks_;
  // --- dashboard (issue 15): admin thread only ---
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  observability::RateWindow dashboard_window_;
  // issue 14: cache.shared's bus on admin_ioc_; before admin_ioc_ dies.
  std::unique_ptr<filters::cache_bus::Bus> cache_bus_;
  bool draining_ = false;
  bool takeover_ = false;
  unsigned running_workers_ = 0;
};

}  // namespace gatehouse::server
