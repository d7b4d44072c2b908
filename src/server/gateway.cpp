#include "server/gateway.hpp"

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <future>
#include <numeric>
#include <stdexcept>
#include <thread>

#include "config/reload_plan.hpp"
#include "filters/cache/config.hpp"
#include "filters/errors/config.hpp"
#include "filters/registry.hpp"
#include "http/cidr.hpp"
#include "http/json.hpp"
#include "io/spawn.hpp"
#include "server/dependency_checks.hpp"
#include "server/jobs.hpp"
#include "server/sentry_reporter.hpp"
#include "server/worker.hpp"

namespace gatehouse::server {
namespace {

unsigned resolve_workers(unsigned configured) {
  if (configured != 0) {
    return configured;
  }
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : n;
}

// The max_connections_per_ip slot of a peer: its address, or for IPv6 its network of
// rate_limit.ipv6_prefix bits (the 16 bytes; nobody reads it).
std::string per_ip_slot(const std::string& peer_ip, unsigned ipv6_prefix) {
  auto ip = ghttp::parse_ip(peer_ip);
  if (!ip) {
    return peer_ip;
  }
  auto net = ghttp::client_network(*ip, ipv6_prefix);
  return std::string(reinterpret_cast<const char*>(net.data()), net.size());
}

std::vector<std::string> route_names(const config::Config& cfg) {
  std::vector<std::string> out;
  for (const auto& r : cfg.routes) {
    out.push_back(r.name);
  }
  return out;
}

std::vector<std::string> upstream_names(const config::Config& cfg) {
  std::vector<std::string> out;
  for (const auto& u : cfg.upstreams) {
    out.push_back(u.name);
  }
  return out;
}

// Per target slot; a re-resolved host name's slots are named when they get an address.
std::vector<std::string> slot_names(const config::Upstream& u) {
  std::vector<std::string> names;
  for (std::size_t i = 0; i < u.targets.size(); ++i) {
    const auto& t = u.targets[i];
    const bool name = upstream::Resolver::resolves(u) && !ghttp::parse_ip(t.host);
    for (std::size_t k = 0; k < u.slots_of(i); ++k) {
      names.push_back(name ? std::string() : t.to_string());
    }
  }
  return names;
}

std::vector<std::vector<std::string>> target_names(const config::Config& cfg) {
  std::vector<std::vector<std::string>> out;
  for (const auto& u : cfg.upstreams) {
    out.push_back(slot_names(u));
  }
  return out;
}

tcp::endpoint resolve_one(net::io_context& ioc, const config::Endpoint& e,
                          const std::string& what) {
  error_code ec;
  auto addr = net::ip::make_address(e.host, ec);
  if (!ec) {
    return {addr, e.port};
  }
  tcp::resolver resolver(ioc);
  auto results = resolver.resolve(e.host, std::to_string(e.port), ec);
  if (ec || results.empty()) {
    throw std::runtime_error(what + ": cannot resolve " + e.host + ": " +
                             (ec ? ec.message() : "no address"));
  }
  return results.begin()->endpoint();
}

// The targets of an upstream resolved once (not re-resolved: no resolve_interval), blocking;
// throws naming the upstream and host.
std::vector<tcp::endpoint> resolve_targets(net::io_context& ioc, const config::Upstream& up) {
  std::vector<tcp::endpoint> eps;
  for (const auto& t : up.targets) {
    eps.push_back(resolve_one(ioc, t, "upstreams." + up.name));
  }
  return eps;
}

// Mozilla "intermediate" TLS 1.2 suites (TLS 1.3 suites are OpenSSL's defaults): forward secrecy
// and AEAD only.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// ALPN: we speak HTTP/1.1 only. A client that offers only other protocols still gets a TLS
// connection without ALPN (and a 400 if it then speaks something else).
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void*) {
  static constexpr unsigned char kHttp11[] = {'h', 't', 't', 'p', '/', '1', '.', '1'};
  for (unsigned int i = 0; i < inlen;) {
    unsigned int len = in[i];
    if (i + 1 + len > inlen) {
      break;
    }
    if (len == sizeof kHttp11 && std::memcmp(in + i + 1, kHttp11, len) == 0) {
      *out = in + i + 1;
      *outlen = static_cast<unsigned char>(len);
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

std::shared_ptr<net::ssl::context> make_tls_context(const config::TlsListen& t) {
  namespace ssl = net::ssl;
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  SSL_CTX_set_options(
      native, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_cipher_list(native, kTls12Ciphers);
  SSL_CTX_set_alpn_select_cb(native, select_alpn, nullptr);
  error_code ec;
  ctx->use_certificate_chain_file(t.cert, ec);
  if (ec) {
    throw std::runtime_error("listen_tls.cert " + t.cert + ": " + ec.message());
  }
  ctx->use_private_key_file(t.key, ssl::context::pem, ec);
  if (ec) {
    // OpenSSL checks the pair here already ("key values mismatch"): name both files.
    auto why = ec.message();
    if (why.find("mismatch") != std::string::npos) {
      throw std::runtime_error("listen_tls.key " + t.key + ": does not match the certificate " +
                               t.cert + " (" + why + ")");
    }
    throw std::runtime_error("listen_tls.key " + t.key + ": " + why);
  }
  if (SSL_CTX_check_private_key(native) != 1) {
    throw std::runtime_error("listen_tls.key " + t.key + ": does not match the certificate " +
                             t.cert);
  }
  return ctx;
}

std::string bind_error(const std::string& what, const error_code& ec) {
  if (ec == net::error::address_in_use) {
    return what +
           ": address in use (another process listens there; to replace a running gatehouse "
           "without downtime, start the new one with `gatehouse run --takeover`)";
  }
  return what + ": " + ec.message();
}

const char* getenv_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v ? v : fallback;
}

}  // namespace

Gateway::Gateway(std::shared_ptr<const config::Config> cfg, std::string version)
    : cfg_(std::move(cfg)),
      version_(std::move(version)),
      workers_count_(resolve_workers(cfg_->workers)),
      logs_(std::make_unique<observability::Logs>(cfg_->log)),
      metrics_(std::make_unique<observability::Metrics>(
          workers_count_, route_names(*cfg_), upstream_names(*cfg_), target_names(*cfg_), 0,
          observability::upstream_unit_capacity(cfg_->upstreams.size()))),
      health_(std::make_unique<observability::Health>(
          *cfg_, workers_count_, version_,
          observability::upstream_unit_capacity(cfg_->upstreams.size()))),
      hasher_(cfg_->log.hash_client_ip, getenv_or("GATEHOUSE_LOG_KEY", "")) {
  security_events_ = std::make_unique<observability::SecurityEvents>(logs_.get(), cfg_->log);
  if (cfg_->log.hash_client_ip && std::string(getenv_or("GATEHOUSE_LOG_KEY", "")).size() < 16) {
    // An unkeyed (or short-keyed) hash of an IPv4 address is reversed by trying all 2^32.
    throw std::runtime_error(
        "log.hash_client_ip needs GATEHOUSE_LOG_KEY set to a secret of at least 16 characters");
  }
  // Upstream units: one per start-up upstream; a reload adds one for an upstream added or
  // re-targeted (plan_units, add_units). Every table a worker reads by unit is reserved now and
  // never moves.
  unit_capacity_ = health_->unit_capacity();
  unit_keys_ = config::upstream_unit_keys(*cfg_, filters::config_sections());
  unit_owners_.assign(cfg_->upstreams.size(), cfg_);
  endpoints_.reserve(unit_capacity_);
  upstream_health_.reserve(unit_capacity_);
  resolver_ = std::make_unique<upstream::Resolver>(admin_ioc_, *cfg_, *health_, metrics_.get(),
                                                   logs_.get(), unit_capacity_);
  for (std::size_t u = 0; u < cfg_->upstreams.size(); ++u) {
    upstream_health_.push_back(std::make_unique<upstream::UpstreamHealth>(
        cfg_->upstreams[u], u, *health_, workers_count_, logs_.get()));
    resolver_->attach(u, upstream_health_.back().get());
    set_unit_probe(u);
  }
  // i12-resolve: host names of upstreams with resolve_interval, every address (blocking, once).
  resolver_->start_up();
  for (std::size_t u = 0; u < cfg_->upstreams.size(); ++u) {
    const auto* slots = resolver_->slots(u);
    endpoints_.push_back(slots != nullptr ? slots->view()->endpoints
                                          : resolve_targets(admin_ioc_, cfg_->upstreams[u]));
  }
  if (cfg_->listen_tls) {
    tls_ctx_ = make_tls_context(*cfg_->listen_tls);
  }
  if (const auto& cache = filters::cache::settings(*cfg_); cache.enabled) {
    cache_ = std::make_unique<filters::cache::Store>(
        filters::cache::Store::Options{.max_memory = cache.max_memory, .workers = workers_count_});
  }
  rate_state_ = std::make_shared<filters::rate_limit::SharedState>(
      filters::rate_limit::settings(*cfg_).max_keys, workers_count_);
  rate_clock_ = std::make_shared<ratelimit::SteadyClock>();
  gen_ = std::make_shared<const Generation>(cfg_, 1, workers_count_, rate_state_, rate_clock_,
                                            cfg_->log.hash_client_ip ? &hasher_ : nullptr,
                                            *metrics_->route_slots(route_names(*cfg_)),
                                            [n = cfg_->upstreams.size()] {
                                              std::vector<std::size_t> units(n);
                                              std::iota(units.begin(), units.end(), 0);
                                              return units;
                                            }());
  if (gen_->rate_limiter->enabled() && filters::rate_limit::settings(*cfg_).redis) {
    redis_ = std::make_unique<filters::rate_limit::store::RedisStore>(
        *filters::rate_limit::settings(*cfg_).redis,
        filters::rate_limit::on_store_failure_name(
            filters::rate_limit::settings(*cfg_).on_store_failure),
        *logs_);
    redis_->start_up();  // throws on a wrong password; an unreachable server starts degraded
  }
  if (gen_->rate_limiter->enabled()) {
    add_rate_limit_component();
  }
  if (const auto& s = filters::errors::settings(*cfg_).sentry; s.enabled()) {
    sentry_ = std::make_unique<SentryReporter>(s, version_, *logs_);
    health_->add_component("sentry", [this] { return sentry_->health(); });
  }
  set_up_invalidation();
  if (filters::jobs::settings(*cfg_).enabled) {
    // issue 13: the store opens (SQLite: file, schema, WAL, its thread) before any worker exists.
    jobs_ = std::make_unique<JobsService>(*cfg_, *logs_, workers_count_);
    health_->add_component("jobs", [this] {
      auto j = jobs_->health_component();
      const bool ok = j["status"] == "ok";
      return observability::ComponentReport{
          ok ? observability::Status::ok : observability::Status::degraded, std::move(j)};
    });
  }
  health_->add_component("log", [this] {
    auto dropped = logs_->dropped();
    return observability::ComponentReport{
        dropped == 0 ? observability::Status::ok : observability::Status::degraded,
        {{"dropped", dropped}}};
  });
}

Gateway::~Gateway() = default;

// Unit u's additions to its `upstream:NAME` health component: breaker state and resolution.
void Gateway::set_unit_probe(std::size_t u) {
  health_->set_upstream_probe(u, [s = upstream_health_[u].get(), r = resolver_.get(), u] {
    auto report = s->health_report(upstream::UpstreamHealth::Clock::now());
    r->report(u, report);
    return report;
  });
}

std::string Gateway::plan_units(const config::Config& next, UnitPlan& plan) {
  const auto keys = config::upstream_unit_keys(next, filters::config_sections());
  plan.units.assign(keys.size(), 0);
  plan.fresh.clear();
  for (std::size_t i = 0; i < keys.size(); ++i) {
    auto it = std::find(unit_keys_.begin(), unit_keys_.end(), keys[i]);
    if (it != unit_keys_.end()) {
      plan.units[i] = static_cast<std::size_t>(it - unit_keys_.begin());
    } else {
      plan.units[i] = unit_keys_.size() + plan.fresh.size();
      plan.fresh.push_back(UnitPlan::Fresh{i, keys[i], {}, {}});
    }
  }
  if (unit_keys_.size() + plan.fresh.size() > unit_capacity_) {
    return fmt::format(
        "upstreams: this process has room for {} upstream definitions (each start-up upstream, "
        "then one per upstream added or re-targeted by a reload) and has built {} ({} more in the "
        "new file); restart to add more; the running configuration stays in place",
        unit_capacity_, unit_keys_.size(), plan.fresh.size());
  }
  // Names now, while the reload can still be refused: a name that does not resolve refuses it.
  try {
    for (auto& f : plan.fresh) {
      const auto& up = next.upstreams[f.upstream];
      f.resolved = resolver_->lookup(up);
      if (!upstream::Resolver::resolves(up)) {
        f.endpoints = resolve_targets(admin_ioc_, up);
      }
    }
  } catch (const std::exception& e) {
    return std::string(e.what()) + "; the running configuration stays in place";
  }
  return {};
}

void Gateway::add_units(const std::shared_ptr<const config::Config>& next, UnitPlan& plan) {
  for (auto& f : plan.fresh) {
    if (plan.units[f.upstream] != unit_keys_.size()) {
      throw std::logic_error("upstream units out of step with the reload's plan");
    }
    add_unit(next, f);
  }
}

void Gateway::add_unit(const std::shared_ptr<const config::Config>& owner, UnitPlan::Fresh& f) {
  const auto& up = owner->upstreams[f.upstream];
  // Every table gets the unit at the same index, before any worker can map to it (the
  // generation that does is installed after this returns).
  const std::size_t u = health_->add_upstream(up);
  if (u != unit_keys_.size() || metrics_->add_upstream(up.name, slot_names(up)) != u) {
    throw std::logic_error("upstream unit tables out of step");
  }
  upstream_health_.push_back(
      std::make_unique<upstream::UpstreamHealth>(up, u, *health_, workers_count_, logs_.get()));
  auto* shared = upstream_health_.back().get();
  resolver_->add_upstream(u, up, f.resolved, shared);
  if (const auto* slots = resolver_->slots(u)) {
    f.endpoints = slots->view()->endpoints;
  }
  endpoints_.push_back(std::move(f.endpoints));
  set_unit_probe(u);
  if (health_checker_) {
    health_checker_->add_upstream(u, up, shared, resolver_->slots(u));
  }
  unit_keys_.push_back(std::move(f.key));
  unit_owners_.push_back(owner);
}

// The rate limiter's store in /health/detailed: from start-up when some route is limited, else
// from the reload that limits one.
void Gateway::add_rate_limit_component() {
  rate_limit_component_ = true;
  health_->add_component("rate_limit", [this] {
    auto& st = *rate_state_;
    auto keys = st.store.keys();
    auto cap = st.store.capacity();
    // At the cap the least recently used keys are evicted: limits still hold for active
    // clients, but operators should know (an IP spray, or max_keys too small).
    nlohmann::json details{{"store", redis_ ? "redis" : "memory"},
                           {"keys", keys},
                           {"max_keys", cap},
                           {"at_capacity", keys >= cap},
                           {"evictions", st.store.evictions()},
                           {"bans_active", rate_state_->bans.active(rate_clock_->now())}};
    auto status = observability::Status::ok;
    if (redis_) {
      bool up = redis_->up();
      details["redis"] = up ? "ok" : "degraded";
      details["redis_url"] = filters::rate_limit::settings(*cfg_).redis->url.redacted();
      details["on_store_failure"] = filters::rate_limit::on_store_failure_name(
          filters::rate_limit::settings(*cfg_).on_store_failure);
      if (!up) {
        status = observability::Status::degraded;
        details["last_error"] = redis_->last_error();
      }
    }
    return observability::ComponentReport{status, std::move(details)};
  });
}

void Gateway::begin_drain(const char* why) {
  if (draining_) {
    return;
  }
  draining_ = true;
  health_->set_draining();
  if (health_checker_) {
    health_checker_->stop();
  }
  resolver_->stop();
  logs_->error(
      spdlog::level::info, "draining",
      fmt::format("\"reason\":\"{}\",\"drain_delay_ms\":{}", why, gen_->cfg->drain_delay.count()));
  for (auto& w : workers_) {
    w->begin_drain();
  }
  // The admin listener stays up during the drain so readiness can be watched. The client
  // listeners keep accepting for drain_delay (readiness already says 503), so that a load
  // balancer has time to notice before new connections are refused.
  if (gen_->cfg->drain_delay.count() == 0) {
    stop_listening();
    return;
  }
  drain_timer_.expires_after(gen_->cfg->drain_delay);
  drain_timer_.async_wait([this](error_code ec) {
    if (!ec) {
      stop_listening();
    }
  });
}

void Gateway::stop_listening() {
  for (auto& w : workers_) {
    w->stop_listening();
  }
  drain_timer_.expires_after(gen_->cfg->drain_timeout);
  drain_timer_.async_wait([this](error_code ec) {
    if (ec) {
      return;
    }
    logs_->error(spdlog::level::warn, "drain timeout reached; closing remaining connections");
    for (auto& w : workers_) {
      w->force_stop();
    }
  });
}

void Gateway::wait_signals() {
  signals_.async_wait([this](error_code ec, int sig) {
    if (ec) {
      return;
    }
    if (sig == SIGUSR1) {
      logs_->reopen();
      logs_->error(spdlog::level::info, "log files reopened");
    } else if (sig == SIGHUP) {
      reload("sighup");
    } else {
      begin_drain(sig == SIGTERM ? "SIGTERM" : "SIGINT");
    }
    wait_signals();
  });
}

bool Gateway::admit_connection(const std::string& peer_ip) {
  const auto& l = cfg_->limits;
  if (l.max_connections != 0 &&
      open_connections_.fetch_add(1, std::memory_order_relaxed) >= l.max_connections) {
    open_connections_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  if (l.max_connections_per_ip != 0 &&
      !connections_per_ip_.acquire(
          per_ip_slot(peer_ip, filters::rate_limit::settings(*cfg_).ipv6_prefix),
          static_cast<std::uint32_t>(l.max_connections_per_ip))) {
    if (l.max_connections != 0) {
      open_connections_.fetch_sub(1, std::memory_order_relaxed);
    }
    return false;
  }
  return true;
}

void Gateway::release_connection(const std::string& peer_ip) {
  const auto& l = cfg_->limits;
  if (l.max_connections != 0) {
    open_connections_.fetch_sub(1, std::memory_order_relaxed);
  }
  if (l.max_connections_per_ip != 0) {
    connections_per_ip_.release(
        per_ip_slot(peer_ip, filters::rate_limit::settings(*cfg_).ipv6_prefix));
  }
}

// Certificate rotation (every reload): new connections get the new files, live connections keep
// theirs. On failure nothing changes and `error` says why.
bool Gateway::reload_tls(std::string& error) {
  try {
    auto ctx = make_tls_context(*cfg_->listen_tls);
    std::lock_guard lock(tls_mu_);
    tls_ctx_ = std::move(ctx);
    return true;
  } catch (const std::exception& e) {
    error = e.what();
    return false;
  }
}

// issue 14: the Invalidator always (it purges the store when there is one); the bus with
// cache.shared, started up here (blocking: a wrong password refuses to start, an unreachable
// Redis starts the bus disconnected).
void Gateway::set_up_invalidation() {
  const auto& bus = filters::cache_bus::settings(*cfg_);
  filters::cache_bus::Invalidator::Purge purge;
  if (cache_) {
    purge = [store = cache_.get()](std::string_view prefix) { return store->purge_prefix(prefix); };
  }
  invalidator_ = std::make_unique<filters::cache_bus::Invalidator>(std::move(purge));
  if (!bus.url) {
    return;
  }
  cache_bus_ = std::make_unique<filters::cache_bus::Bus>(bus, *invalidator_, *logs_, admin_ioc_);
  cache_bus_->start_up();
  health_->add_component("cache_bus", [this] { return cache_bus_->health(); });
}

// While the store's circuit breaker is open, a PING every cooldown decides when Redis is used
// again: client requests never wait for a probe.
net::awaitable<void> Gateway::store_probe_loop() {
  net::steady_timer timer(admin_ioc_);
  auto period = std::min<std::chrono::milliseconds>(redis_->settings().breaker_cooldown,
                                                    std::chrono::milliseconds(250));
  for (;;) {
    timer.expires_after(period);
    auto [ec] = co_await timer.async_wait(nothrow);
    if (ec || draining_) {
      co_return;
    }
    if (redis_->probe_due(Clock::now())) {
      co_await admin_redis_->ping();
    }
  }
}

// A log file is flushed when the logging thread finds its queue empty; under steady traffic the
// access lines keep it busy, and an error or security line could wait in the file buffer for the
// next quiet moment. A flush every second bounds that wait.
net::awaitable<void> Gateway::log_flush_loop() {
  net::steady_timer timer(admin_ioc_);
  for (;;) {
    timer.expires_after(std::chrono::seconds(1));
    auto [ec] = co_await timer.async_wait(nothrow);
    if (ec || draining_) {
      co_return;  // the drain's end and ~Logs flush the rest
    }
    logs_->flush();
    security_events_->summarize(std::chrono::steady_clock::now());
  }
}

void Gateway::on_worker_done() {
  if (--running_workers_ == 0) {
    drain_timer_.cancel();
    admin_ioc_.stop();
  }
}

// Every listener carries SO_REUSEPORT (the workers share the port, and a takeover joins them), so
// a second gatehouse could bind the same address and silently split its traffic. A probe bound
// without SO_REUSEPORT fails when anything listens there (SO_REUSEADDR only overlooks TIME_WAIT
// leftovers). It is closed before the workers bind; port 0 comes back resolved.
error_code Gateway::bind_exclusive(tcp::acceptor& acceptor, const tcp::endpoint& ep, bool listen) {
  error_code ec;
  acceptor.open(ep.protocol(), ec);
  if (!ec) {
    acceptor.set_option(net::socket_base::reuse_address(true), ec);
  }
  if (!ec) {
    acceptor.bind(ep, ec);
  }
  if (!ec && listen) {
    acceptor.listen(net::socket_base::max_listen_connections, ec);
  }
  return ec;
}

tcp::endpoint Gateway::claim_address(const tcp::endpoint& ep, const std::string& what) {
  error_code ec;
  {
    tcp::acceptor probe(admin_ioc_);
    ec = bind_exclusive(probe, ep, false);
    if (!ec) {
      auto bound = probe.local_endpoint(ec);
      if (!ec) {
        return bound;
      }
    }
  }
  if (ec == net::error::address_in_use && takeover_ && ep.port() != 0) {
    std::string extra = "\"address\":";
    ghttp::append_json_string(extra, ep.address().to_string() + ":" + std::to_string(ep.port()));
    logs_->error(spdlog::level::info, "takeover: sharing the address with the running process",
                 extra);
    return ep;
  }
  throw std::runtime_error(bind_error(what, ec));
}

int Gateway::run(RunOptions options) {
  std::signal(SIGPIPE, SIG_IGN);
  takeover_ = options.takeover;
  if (jobs_ && std::string_view(jobs_->store().kind()) == "sqlite" && !takeover_) {
    // issue 13: an embedded store is this process's alone, so a job still marked running was
    // cut off by a crash (kill -9) of the previous one: queued again now, not after its lease.
    // Not in a takeover, where the old process still runs its attempts.
    auto released = std::make_shared<std::promise<void>>();
    auto done = released->get_future();
    jobs_->store().recover_running([released] { released->set_value(); });
    done.wait_for(std::chrono::seconds(5));
  }
  config_path_ = options.config_path;
  auto listen_ep = claim_address(resolve_one(admin_ioc_, cfg_->listen, "listen"),
                                 "listen " + cfg_->listen.to_string());
  std::optional<tcp::endpoint> tls_ep;
  if (cfg_->listen_tls) {
    tls_ep = claim_address(resolve_one(admin_ioc_, cfg_->listen_tls->address, "listen_tls"),
                           "listen_tls " + cfg_->listen_tls->address.to_string());
  }
  for (unsigned i = 0; i < workers_count_; ++i) {
    workers_.push_back(std::make_unique<Worker>(*this, i));
  }
  for (auto& w : workers_) {
    try {
      listen_ep = w->listen(listen_ep);
    } catch (const boost::system::system_error& e) {
      throw std::runtime_error(bind_error("listen " + cfg_->listen.to_string(), e.code()));
    }
  }
  if (tls_ep) {
    for (auto& w : workers_) {
      try {
        tls_ep = w->listen(*tls_ep, true);
        tls_port_ = tls_ep->port();
      } catch (const boost::system::system_error& e) {
        throw std::runtime_error(
            bind_error("listen_tls " + cfg_->listen_tls->address.to_string(), e.code()));
      }
    }
  }
  if (cfg_->admin_listen) {
    // Not shared even in a takeover: two processes answering /metrics by turns would mislead.
    // The new process takes the admin address over when the old one exits.
    auto ep = resolve_one(admin_ioc_, *cfg_->admin_listen, "admin_listen");
    tcp::acceptor acceptor(admin_ioc_);
    auto ec = bind_exclusive(acceptor, ep, true);
    if (!ec) {
      spawn(admin_ioc_, admin_accept_loop(std::move(acceptor)), *logs_, "admin accept loop");
    } else if (ec == net::error::address_in_use && takeover_) {
      spawn(admin_ioc_, admin_listen_when_free(ep), *logs_, "admin listen");
    } else {
      throw std::runtime_error(bind_error("admin_listen " + cfg_->admin_listen->to_string(), ec));
    }
  }
  signals_.add(SIGTERM);
  signals_.add(SIGINT);
  signals_.add(SIGUSR1);
  signals_.add(SIGHUP);
  wait_signals();
  std::vector<upstream::UpstreamHealth*> shared;
  for (auto& s : upstream_health_) {
    shared.push_back(s.get());
  }
  std::vector<const upstream::TargetSlots*> slots;
  for (std::size_t u = 0; u < cfg_->upstreams.size(); ++u) {
    slots.push_back(resolver_->slots(u));
  }
  health_checker_ =
      std::make_unique<upstream::HealthChecker>(admin_ioc_, *cfg_, endpoints_, *health_, *logs_,
                                                std::move(shared), version_, std::move(slots));
  spawn(admin_ioc_, health_checker_->run(), *logs_, "health check loop");
  spawn(admin_ioc_, resolver_->run(), *logs_, "resolve loop");
  spawn(admin_ioc_, log_flush_loop(), *logs_, "log flush loop");
  if (sentry_) {
    sentry_->start();
  }
  if (redis_) {
    admin_redis_ =
        std::make_unique<filters::rate_limit::store::RedisStoreClient>(*redis_, admin_ioc_);
    spawn(admin_ioc_, store_probe_loop(), *logs_, "redis probe loop");
  }
  dependency_checks_ = std::make_unique<DependencyChecks>(admin_ioc_, *cfg_, *logs_);
  if (cache_bus_) {
    cache_bus_->start();
  }

  {
    std::string extra = "\"listen\":";
    ghttp::append_json_string(
        extra, listen_ep.address().to_string() + ":" + std::to_string(listen_ep.port()));
    if (tls_ep) {
      extra += ",\"listen_tls\":";
      ghttp::append_json_string(
          extra, tls_ep->address().to_string() + ":" + std::to_string(tls_ep->port()));
    }
    extra += fmt::format(",\"workers\":{},\"version\":", workers_count_);
    ghttp::append_json_string(extra, version_);
    logs_->error(spdlog::level::info, "gatehouse started", extra);
  }

  std::vector<std::thread> threads;
  running_workers_ = workers_count_;
  for (auto& w : workers_) {
    threads.emplace_back([this, &w] {
      w->run();
      net::post(admin_ioc_, [this] { on_worker_done(); });
    });
  }
  // Keeps admin_ioc_ running until the workers are done.
  auto guard = net::make_work_guard(admin_ioc_);
  admin_ioc_.run();
  for (auto& t : threads) {
    t.join();
  }
  if (jobs_) {
    // Attempts cut off by the drain timeout go back to the queue now rather than after their
    // lease (the next start, or another instance, runs them again with the same Idempotency-Key).
    auto released = std::make_shared<std::promise<void>>();
    auto done = released->get_future();
    jobs_->store().release_running([released] { released->set_value(); });
    done.wait_for(std::chrono::seconds(5));
  }
  security_events_->summarize(std::chrono::steady_clock::now(), true);
  if (sentry_) {
    // The last failures of the drain still go out, for a bounded time.
    sentry_->stop(
        std::min<std::chrono::milliseconds>(cfg_->drain_timeout, std::chrono::seconds(2)));
  }
  logs_->error(spdlog::level::info, "gatehouse stopped");
  logs_->flush();
  return 0;
}

}  // namespace gatehouse::server
