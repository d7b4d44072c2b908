#include "server/worker.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <linux/filter.h>
#include <sys/socket.h>

#include <boost/asio/detail/socket_option.hpp>

#include "http/json.hpp"
#include "io/spawn.hpp"
#include "server/exchange.hpp"
#include "server/jobs.hpp"
#include "upstream/fetch.hpp"

namespace gatehouse::server {
namespace {

using ReusePort = net::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

// How long a listener that takes no new handshakes stays open so that handshakes already under
// way (SYN answered, final ACK not yet here) complete into the accept queue and are served. One
// round trip is enough; a client further away than this, caught mid-handshake, is reset.
constexpr auto kHandshakeSettle = std::chrono::milliseconds(200);

// Closing a listening socket resets every connection in its accept queue, and accept-until-EAGAIN
// then close() leaves a window in which a new handshake can complete. So first the listener stops
// taking handshakes: a classic BPF socket filter drops a segment with SYN set and ACK clear (for a
// listener, skb->data is the TCP header; byte 13 holds the flags). The client is not refused: its
// SYN is retransmitted (after 1 s) and then meets a closed port (refused), or, during a takeover,
// the new process's listener. Everything else (final ACKs of handshakes under way) still passes.
// Accepted sockets inherit the filter; established connections never receive a bare SYN.
bool refuse_new_handshakes(tcp::acceptor& acceptor) {
  static sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13),           // TCP flags
      BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x12),        // SYN | ACK
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x02, 0, 1),  // SYN alone: a new handshake
      BPF_STMT(BPF_RET | BPF_K, 0),                     // drop it
      BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),           // keep everything else whole
  };
  sock_fprog prog{static_cast<unsigned short>(std::size(code)), code};
  return setsockopt(acceptor.native_handle(), SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) ==
         0;
}

// A cache refresh (stale_while_revalidate) through `cluster`: fetch retries a stale keep-alive
// connection itself; the upstream's configured retries (`retry`) apply as to a proxied GET without
// a body (attempts, `on`, methods, budget, backoff). The refresh has no route deadline beyond its
// per-read timeout, and an open breaker (fetch: unavailable) ends it: nothing is retried then.
net::awaitable<upstream::FetchResult> refresh_fetch(upstream::Cluster& cluster,
                                                    upstream::FetchRequest request) {
  const auto& retry = cluster.config().retry;
  const auto& policy = cluster.retry_policy();
  cluster.retry_budget().on_request();
  for (int tries = 1;; ++tries) {
    auto result = co_await upstream::fetch(cluster, request);
    upstream::RetryInput in;
    in.tries = tries;
    switch (result.failure) {
      case upstream::FetchFailure::none:
        if (!policy.retries_status(result.status)) {
          co_return result;
        }
        in.failure = upstream::TryFailure::status;
        in.status = result.status;
        break;
      case upstream::FetchFailure::connect_failed:
        in.failure = upstream::TryFailure::connect_failed;
        break;
      case upstream::FetchFailure::timed_out:
        in.failure = upstream::TryFailure::timed_out;
        break;
      case upstream::FetchFailure::reset:
        in.failure = upstream::TryFailure::closed;
        break;
      default:  // too large, busy, unavailable: trying again would not change that
        co_return result;
    }
    in.stale_retried = true;  // fetch had it
    in.wrote_any = result.failure != upstream::FetchFailure::connect_failed;
    in.idempotent = true;
    in.method_listed =
        std::find(retry.methods.begin(), retry.methods.end(), "GET") != retry.methods.end();
    in.other_target = cluster.has_other_target(0);
    in.random = cluster.next_random();
    const auto d = policy.decide(in);
    if (!d.retry || !cluster.retry_budget().try_spend(upstream::RetryClock::now())) {
      co_return result;
    }
    if (d.wait.count() > 0) {
      net::steady_timer pause(co_await net::this_coro::executor, d.wait);
      co_await pause.async_wait(io::nothrow);
    }
  }
}

}  // namespace

Worker::Worker(Gateway& g, unsigned i)
    : gw(g),
      index(i),
      access_batch(g.logs()),
      metrics(g.metrics().worker(i)),
      acceptor_(ioc),
      tls_acceptor_(ioc) {
  if (auto* shared = gw.redis_store()) {
    store_client = std::make_unique<filters::rate_limit::store::RedisStoreClient>(*shared, ioc);
  }
  if (auto* j = gw.jobs()) {
    jobs = std::make_unique<JobsRunner>(*this, *j);
  }
  install_now(gw.generation());
}

void Worker::install(std::shared_ptr<const Generation> g) {
  net::post(ioc, [this, g = std::move(g)]() mutable { install_now(std::move(g)); });
}

void Worker::install_now(std::shared_ptr<const Generation> g) {
  const Generation& n = *g;
  FilterServices services{
      .cfg = *n.cfg,
      .worker = index,
      .logs = gw.logs(),
      .hasher = gw.hasher(),
      .metrics = metrics,
      .none_route = gw.metrics().none_route(),
      .route_slots = n.route_slots.data(),
      .access_batch = access_batch,
      .health = gw.health(),
      .draining = draining,
      .router = n.router,
      .cors = n.cors,
      .security_headers = n.security_headers,
      .rate_limiter = *n.rate_limiter,
      .store = store_client.get(),
      .tls_port = gw.tls_port_ref(),
      .security_events = gw.security_events(),
      .cache = gw.cache(),
      .invalidator = gw.invalidator(),
      .cache_hooks = {},
      .job_store = gw.jobs() != nullptr ? &gw.jobs()->store() : nullptr,
      .job_owner_hasher = gw.jobs() != nullptr ? &gw.jobs()->owner_hasher() : nullptr,
      .job_poll_limits = gw.jobs() != nullptr ? &gw.jobs()->poll_limits() : nullptr,
  };
  // Clusters: the previous generation's for every upstream whose definition is unchanged (found
  // by its text, which names it: a reload may reorder upstreams), a new one for the others. A
  // unit is built for one set of targets and health settings (config::upstream_unit_keys), so its
  // endpoints, target health and UpstreamHealth serve every cluster mapped to it.
  std::vector<WorkerCluster*> upstreams;
  for (std::size_t u = 0; u < n.cfg->upstreams.size(); ++u) {
    const std::size_t unit = n.upstream_units[u];
    WorkerCluster* c = nullptr;
    if (gen != nullptr) {
      for (auto* old : gen->clusters) {
        if (old->definition == n.upstream_definitions[u]) {
          c = old;
          break;
        }
      }
    }
    if (c == nullptr) {
      auto fresh = std::make_unique<WorkerCluster>();
      fresh->cfg = n.cfg;
      fresh->definition = n.upstream_definitions[u];
      fresh->cluster = std::make_unique<upstream::Cluster>(
          ioc.get_executor(), deadlines, unit, n.cfg->upstreams[u], gw.upstream_endpoints()[unit],
          metrics.upstreams[unit], gw.health(), gw.logs());
      fresh->cluster->attach(&gw.upstream_health(unit), index);
      fresh->cluster->follow(gw.target_slots(unit));
      c = clusters.emplace_back(std::move(fresh)).get();
    }
    ++c->users;
    upstreams.push_back(c);
  }
  generations.push_back(std::make_unique<WorkerGeneration>(std::move(g), services));
  WorkerGeneration& wg = *generations.back();
  wg.clusters = std::move(upstreams);
  // A cache refresh's response is stripped like a proxied one's, by a chain of this generation's
  // (strips() depends on the policies only, never on a request).
  wg.strip_chain = std::make_unique<FilterChain>(wg.services);
  wg.services.cache_hooks.strips = [chain = wg.strip_chain.get()](std::string_view name) {
    return chain->strips(name);
  };
  wg.services.cache_hooks.upstream_head = [&cfg = wg.cfg()](const Context& x, std::string_view id,
                                                            std::string& out) {
    build_upstream_head(cfg, x.peer_ip, x.tls, x.identity, *x.parser, upstream_path(cfg, x), id,
                        Framing::none, out);
    out.replace(0, out.find(' '), "GET");  // a HEAD (the stale answer's request) refreshes a GET
  };
  wg.services.cache_hooks.fetch = [&wg](std::size_t u, const upstream::FetchRequest& r) {
    return refresh_fetch(*wg.clusters[u]->cluster, r);
  };
  // A refresh outlives its request and points into this generation (its route, the hooks): it
  // pins the generation as a request does, until it is done (on this worker's thread).
  wg.services.cache_hooks.pin = [this, &wg]() -> std::shared_ptr<void> {
    return std::make_shared<GenerationPin>(*this, wg);
  };
  gen = &wg;
  retire();  // the previous one, if no request runs on it
}

void Worker::retire() {
  std::erase_if(generations, [this](const std::unique_ptr<WorkerGeneration>& g) {
    if (g.get() == gen || g->pins != 0) {
      return false;
    }
    for (auto* c : g->clusters) {
      --c->users;
    }
    return true;
  });
  // A replaced cluster goes with the last request on it (its idle connections are closed).
  std::erase_if(clusters, [](const std::unique_ptr<WorkerCluster>& c) { return c->users == 0; });
}

Worker::~Worker() {
  destroying = true;
}

tcp::endpoint Worker::listen(const tcp::endpoint& endpoint, bool tls) {
  auto& acceptor = tls ? tls_acceptor_ : acceptor_;
  acceptor.open(endpoint.protocol());
  acceptor.set_option(net::socket_base::reuse_address(true));
  acceptor.set_option(ReusePort(true));
  acceptor.bind(endpoint);
  acceptor.listen(4096);
  return acceptor.local_endpoint();
}

void Worker::run() {
  spawn(ioc, accept_loop(acceptor_, false), gw.logs(), "accept loop");
  if (tls_acceptor_.is_open()) {
    spawn(ioc, accept_loop(tls_acceptor_, true), gw.logs(), "tls accept loop");
  }
  spawn(ioc, sweep_loop(), gw.logs(), "sweeper");
  if (jobs) {
    jobs->start();
  }
  ioc.run();
}

void Worker::start_session(tcp::socket socket, bool tls) {
  ++sessions_;
  net::co_spawn(ioc, run_session(*this, std::move(socket), tls), [this](std::exception_ptr e) {
    --sessions_;
    if (e) {
      gw.logs().internal_error("session", exception_text(e), failed_request_id);
    }
    failed_request_id.clear();
  });
}

// Runs until close_listeners() closes the acceptor (drain).
net::awaitable<void> Worker::accept_loop(tcp::acceptor& acceptor, bool tls) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(nothrow);
    if (!acceptor.is_open()) {
      if (!ec) {
        start_session(std::move(socket), tls);
      }
      co_return;
    }
    if (ec == net::error::connection_aborted) {
      continue;  // reset by the client while queued
    }
    if (ec) {
      // EMFILE and friends: back off briefly instead of spinning.
      std::string extra = "\"error\":";
      ghttp::append_json_string(extra, ec.message());
      gw.logs().error(spdlog::level::err, "accept failed", extra);
      net::steady_timer t(ioc, std::chrono::milliseconds(50));
      co_await t.async_wait(nothrow);
      continue;
    }
    start_session(std::move(socket), tls);
  }
}

net::awaitable<void> Worker::sweep_loop() {
  net::steady_timer timer(ioc);
  auto last_prune = Clock::now();
  for (;;) {
    timer.expires_after(std::chrono::milliseconds(100));
    co_await timer.async_wait(nothrow);
    // Event-loop lag (/health/detailed): how late this wake-up is.
    metrics.loop_lag.record(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - timer.expiry())
            .count());
    access_batch.flush();
    auto now = Clock::now();
    for (auto& d : deadlines) {
      d.check(now);
    }
    if (now - last_prune > std::chrono::seconds(1)) {
      last_prune = now;
      for (auto& p : clusters) {
        p->cluster->prune(now);
      }
    }
    // Job attempts under way finish too (issue 13), up to drain_timeout.
    if (draining && !listening_ && sessions_ == 0 && (!jobs || jobs->idle())) {
      access_batch.flush();
      for (auto& p : clusters) {
        p->cluster->close_all();
      }
      if (store_client) {
        store_client->close();  // its socket waits would keep the io_context running
      }
      co_return;
    }
  }
}

void Worker::begin_drain() {
  net::post(ioc, [this] {
    if (draining) {
      return;
    }
    draining = true;
    // Idle keep-alive connections close now (a request already in their socket is still served).
    // A connection still waiting for its first request is not idle: it was accepted to be served.
    error_code ec;
    for (auto& c : clients) {
      if (c.idle && !c.first_request) {
        c.socket().cancel(ec);
      }
    }
    for (auto& p : clusters) {
      p->cluster->close_all();
    }
  });
}

void Worker::stop_listening() {
  net::post(ioc, [this] {
    if (closing_) {
      return;
    }
    closing_ = true;
    spawn(ioc, close_listeners(), gw.logs(), "close listeners");
  });
}

net::awaitable<void> Worker::close_listeners() {
  std::array<tcp::acceptor*, 2> acceptors{&acceptor_, &tls_acceptor_};
  bool filtered = true;
  for (auto* a : acceptors) {
    if (a->is_open() && !refuse_new_handshakes(*a)) {
      filtered = false;
    }
  }
  if (!filtered) {
    std::string extra = "\"error\":";
    ghttp::append_json_string(extra, std::strerror(errno));
    gw.logs().error(spdlog::level::warn,
                    "cannot stop new handshakes before closing the listener; connections "
                    "completing as it closes may be reset",
                    extra);
  }
  // The accept loops keep serving what completes meanwhile.
  net::steady_timer settle(ioc, kHandshakeSettle);
  co_await settle.async_wait(nothrow);
  error_code ec;
  for (auto* a : acceptors) {
    if (!a->is_open()) {
      continue;
    }
    a->non_blocking(true, ec);
    for (;;) {
      tcp::socket s(ioc);
      a->accept(s, ec);
      if (ec == net::error::connection_aborted) {
        continue;
      }
      if (ec) {
        break;
      }
      start_session(std::move(s), a == &tls_acceptor_);
    }
    a->close(ec);
  }
  listening_ = false;
}

void Worker::force_stop() {
  net::post(ioc, [this] {
    error_code ec;
    for (auto* a : {&acceptor_, &tls_acceptor_}) {
      a->close(ec);
    }
    for (auto& c : clients) {
      c.socket().close(ec);
    }
    access_batch.flush();
    ioc.stop();
  });
}

}  // namespace gatehouse::server
