#include "server/worker.hpp"

#include "http/headers.hpp"

#include <sys/socket.h>

#include <boost/asio/detail/socket_option.hpp>

namespace gatehouse::server {

using ReusePort = net::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

Worker::Worker(Gateway& g, unsigned i)
    : gw(g),
      cfg(g.cfg()),
      index(i),
      metrics(g.metrics().worker(i)),
      acceptor_(ioc),
      tls_acceptor_(ioc) {
  for (std::size_t u = 0; u < cfg.upstreams.size(); ++u) {
    pools.push_back(std::make_unique<upstream::Pool>(ioc.get_executor(), deadlines, u,
                                                     cfg.upstreams[u], gw.upstream_endpoints()[u],
                                                     metrics.upstreams[u], gw.health(), gw.logs()));
  }
  if (auto* shared = gw.redis_store()) {
    store_client = std::make_unique<redis::RedisClient>(*shared, ioc);
  }
}

Worker::~Worker() = default;

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
  net::co_spawn(ioc, accept_loop(acceptor_, false), net::detached);
  if (tls_acceptor_.is_open()) {
    net::co_spawn(ioc, accept_loop(tls_acceptor_, true), net::detached);
  }
  net::co_spawn(ioc, sweep_loop(), net::detached);
  ioc.run();
}

void Worker::start_session(tcp::socket socket, bool tls) {
  net::co_spawn(ioc, run_session(*this, std::move(socket), tls), net::detached);
}

net::awaitable<void> Worker::accept_loop(tcp::acceptor& acceptor, bool tls) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(nothrow);
    if (draining || !acceptor.is_open()) {
      if (!ec) {
        start_session(std::move(socket), tls);
      }
      co_return;
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
    flush_access_log();
    auto now = Clock::now();
    for (auto& d : deadlines) {
      d.check(now);
    }
    if (now - last_prune > std::chrono::seconds(1)) {
      last_prune = now;
      for (auto& p : pools) {
        p->prune(now);
      }
    }
    if (draining && clients.empty()) {
      flush_access_log();
      for (auto& p : pools) {
        p->close_all();
      }
      if (store_client) {
        store_client->close();  // its socket waits would keep the io_context running
      }
      co_return;
    }
  }
}

void Worker::access_log(std::string_view line) {
  if (!access_batch_.empty()) {
    access_batch_ += '\n';
  }
  access_batch_ += line;
  if (access_batch_.size() >= 32 * 1024) {
    flush_access_log();
  }
}

void Worker::flush_access_log() {
  if (!access_batch_.empty()) {
    gw.logs().access(access_batch_);
    access_batch_.clear();
  }
}

void Worker::begin_drain() {
  net::post(ioc, [this] {
    if (draining) {
      return;
    }
    draining = true;
    // Serve connections the kernel already completed, then stop listening.
    error_code ec;
    for (auto* acceptor : {&acceptor_, &tls_acceptor_}) {
      if (!acceptor->is_open()) {
        continue;
      }
      acceptor->non_blocking(true, ec);
      for (;;) {
        tcp::socket s(ioc);
        acceptor->accept(s, ec);
        if (ec) {
          break;
        }
        start_session(std::move(s), acceptor == &tls_acceptor_);
      }
      acceptor->close(ec);
    }
    for (auto& c : clients) {
      if (c.idle) {
        c.socket().cancel(ec);
      }
    }
    for (auto& p : pools) {
      p->close_all();
    }
  });
}

void Worker::force_stop() {
  net::post(ioc, [this] {
    error_code ec;
    for (auto& c : clients) {
      c.socket().close(ec);
    }
    flush_access_log();
    ioc.stop();
  });
}

}  // namespace gatehouse::server
