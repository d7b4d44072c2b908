#include "upstream/cluster.hpp"

#include "http/json.hpp"

namespace gatehouse::upstream {

using namespace io;  // NOLINT(google-build-using-namespace)
namespace net = io::net;

Cluster::Cluster(net::any_io_executor ex, DeadlineList& deadlines, std::size_t index,
                 const config::Upstream& cfg, std::vector<tcp::endpoint> targets,
                 observability::UpstreamStats& stats, observability::Health& health,
                 observability::Logs& logs, std::unique_ptr<LoadBalancer> balancer)
    : ex_(std::move(ex)),
      deadlines_(deadlines),
      index_(index),
      cfg_(cfg),
      targets_(std::move(targets)),
      balancer_(std::move(balancer)),
      pool_(deadlines, cfg, targets_.size(), stats.idle),
      stats_(stats),
      logs_(logs) {
  for (const auto& t : cfg_.targets) {
    addresses_.push_back(t.to_string());
  }
  for (std::size_t t = 0; t < targets_.size(); ++t) {
    health_.push_back(&health.target(index_, t));
  }
}

net::awaitable<Acquired> Cluster::acquire(bool fresh, std::string_view request_id) {
  Acquired failure{nullptr, 502, {}};
  Walk walk;
  bool tried = false;
  while (auto pick = balancer_->next(walk, health_)) {
    const std::size_t t = pick->target;
    // Out (unhealthy or ejected) means no request at all, whichever balancer offered it.
    if (health_[t]->out()) {
      continue;
    }
    tried = true;
    if (!fresh) {
      if (auto c = pool_.take(t, Clock::now())) {
        co_return Acquired{std::move(c), 0, {}};
      }
    }
    auto c = std::make_unique<Connection>(ex_);
    c->target = t;
    deadlines_.push_back(c->deadline);
    c->deadline.arm(cfg_.connect_timeout);
    auto [ec] = co_await c->socket.async_connect(targets_[t], nothrow);
    bool timed_out = c->deadline.expired();
    c->deadline.disarm();
    if (!ec) {
      error_code ignore;
      c->socket.set_option(tcp::no_delay(true), ignore);
      // Reads are tried without waiting first (see relay_response: a head with no body behind it
      // yet is sent at once).
      c->socket.non_blocking(true, ignore);
      stats_.opened.add();
      connect_succeeded(*pick);
      co_return Acquired{std::move(c), 0, {}};
    }
    std::string what = timed_out ? "connect timed out" : ec.message();
    (timed_out ? stats_.timeouts : stats_.connect_errors).add();
    connect_failed(t, what, request_id);
    failure.status = timed_out ? 504 : 502;
    failure.detail = "connect to " + addresses_[t] + ": " + what;
  }
  if (!tried) {
    // Every target is out: answer at once rather than connect to targets known to be dead.
    failure.status = 503;
    failure.unavailable = true;
    failure.retry_after_s =
        shared_ != nullptr ? shared_->unavailable_retry_after_s(Clock::now()) : 1;
    failure.detail = "every target of upstream " + cfg_.name + " is unhealthy or ejected";
    if (shared_ != nullptr) {
      shared_->unavailable.fetch_add(1, std::memory_order_relaxed);
    }
  }
  co_return failure;
}

void Cluster::connect_succeeded(const Candidate& c) {
  if (!c.reachable) {
    health_[c.target]->report(true);
  }
}

void Cluster::connect_failed(std::size_t t, std::string_view what, std::string_view request_id) {
  health_[t]->report(false, what);
  if (shared_ != nullptr) {
    shared_->connect_failed(t, Clock::now(), request_id);
  }
  if (logs_.should_log(spdlog::level::warn)) {
    std::string extra = "\"request_id\":";
    ghttp::append_json_string(extra, request_id);
    extra += ",\"upstream\":";
    ghttp::append_json_string(extra, cfg_.name);
    extra += ",\"target\":";
    ghttp::append_json_string(extra, addresses_[t]);
    extra += ",\"error\":";
    ghttp::append_json_string(extra, what);
    logs_.error(spdlog::level::warn, "upstream connect failed", extra);
  }
}

}  // namespace gatehouse::upstream
