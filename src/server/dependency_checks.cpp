#include "server/dependency_checks.hpp"

#include <array>
#include <exception>

#include "config/health_checks.hpp"
#include "http/json.hpp"
#include "io/spawn.hpp"
#include "redis/client_net.hpp"

namespace gatehouse::server {
namespace {

using namespace ::gatehouse::io;  // NOLINT(google-build-using-namespace)
using observability::CheckResult;

// The sockets a probe uses, shared with its timeout handler: the handler may run after the
// probe's frame is gone (the timer fired in the same turn the probe finished).
struct ProbeIo {
  explicit ProbeIo(const net::any_io_executor& ex) : resolver(ex), socket(ex), timer(ex) {}
  tcp::resolver resolver;
  tcp::socket socket;
  net::steady_timer timer;
  bool timed_out = false;
};

std::shared_ptr<ProbeIo> start_probe_io(net::io_context& ioc, Clock::duration timeout) {
  auto io = std::make_shared<ProbeIo>(ioc.get_executor());
  io->timer.expires_after(timeout);
  io->timer.async_wait([weak = std::weak_ptr<ProbeIo>(io)](error_code ec) {
    auto p = weak.lock();
    if (ec || !p) {
      return;
    }
    p->timed_out = true;
    p->resolver.cancel();
    error_code ignore;
    p->socket.close(ignore);
  });
  return io;
}

std::string io_error(const ProbeIo& io, const error_code& ec) {
  return io.timed_out ? "timed out" : ec.message();
}

// Resolves and connects; empty on success, else the error.
net::awaitable<std::string> connect(ProbeIo& io, const config::Endpoint& ep) {
  auto [rec, results] =
      co_await io.resolver.async_resolve(ep.host, std::to_string(ep.port), nothrow);
  if (rec) {
    co_return "resolve " + ep.host + ": " + io_error(io, rec);
  }
  if (io.timed_out) {
    co_return std::string("timed out");
  }
  auto [cec, connected] = co_await net::async_connect(io.socket, results, nothrow);
  if (cec) {
    co_return "connect " + ep.to_string() + ": " + io_error(io, cec);
  }
  co_return std::string();
}

// GET the URL's path; the status line decides.
net::awaitable<CheckResult> http_probe(ProbeIo& io, const config::HttpCheckUrl& url,
                                       const std::vector<unsigned>& expect) {
  CheckResult r;
  r.error = co_await connect(io, url.endpoint);
  if (!r.error.empty()) {
    co_return r;
  }
  std::string req = "GET " + url.path + " HTTP/1.1\r\nHost: " + url.endpoint.to_string() +
                    "\r\nUser-Agent: gatehouse-health\r\nAccept: */*\r\nConnection: close\r\n\r\n";
  auto [wec, wn] = co_await net::async_write(io.socket, net::buffer(req), nothrow);
  std::string head;
  error_code ec = wec;
  std::array<char, 512> buf;
  while (!ec && head.find("\r\n") == std::string::npos && head.size() < 4096) {
    auto [rec, n] = co_await io.socket.async_read_some(net::buffer(buf), nothrow);
    ec = rec;
    head.append(buf.data(), n);
  }
  auto line_end = head.find("\r\n");
  if (line_end == std::string::npos) {
    r.error = ec ? "no response: " + io_error(io, ec) : std::string("no status line");
    co_return r;
  }
  auto status = observability::parse_status_line(std::string_view(head).substr(0, line_end));
  if (!status) {
    r.error = "not an HTTP response";
  } else if (!observability::expected_status(expect, *status)) {
    r.error = "status " + std::to_string(*status);
  } else {
    r.ok = true;
  }
  co_return r;
}

}  // namespace

struct DependencyChecks::State {
  const config::DependencyCheck& check;
  CheckResult result;
  bool has_result = false;
  Clock::time_point probed_at{};
  bool in_flight = false;
  std::uint64_t probes = 0;
  // Waiters for the probe in flight wait on this timer (never expiring); the probe cancels it.
  std::unique_ptr<net::steady_timer> done;
  std::unique_ptr<redis::Shared> redis_shared;
  std::unique_ptr<redis::Client> redis_client;
  std::string setup_error;  // a Redis check that could not be set up
};

DependencyChecks::DependencyChecks(net::io_context& ioc, const config::Config& cfg,
                                   observability::Logs& logs)
    : ioc_(ioc), cfg_(cfg), logs_(logs) {
  for (const auto& c : cfg.health.checks) {
    auto st = std::make_unique<State>(State{.check = c});
    if (c.kind == config::DependencyCheck::Kind::redis) {
      redis::Options o;
      std::string error;
      redis::parse_url(c.target, o.url, error);  // validated at load
      o.timeout = c.timeout;
      o.breaker_failures = ~0u;  // a health check reports failures, it never stops trying
      o.name = "health.checks " + c.name;
      st->redis_shared = std::make_unique<redis::Shared>(o, redis::Events{}, logs);
      try {
        st->redis_shared->start_up();
        st->redis_client = std::make_unique<redis::Client>(*st->redis_shared, ioc);
      } catch (const std::exception& e) {
        // Reported by every probe rather than refusing to start: the dependency is what is down.
        st->setup_error = e.what();
      }
    }
    checks_.push_back(std::move(st));
  }
}

DependencyChecks::~DependencyChecks() {
  for (auto& st : checks_) {
    if (st->redis_client) {
      st->redis_client->close();
    }
  }
}

std::uint64_t DependencyChecks::probes(std::size_t i) const {
  return checks_[i]->probes;
}

net::awaitable<CheckResult> DependencyChecks::run_probe(std::size_t i) {
  State& st = *checks_[i];
  const auto& c = st.check;
  CheckResult r;
  // if/else, not a switch: GCC 12 miscompiles co_await inside a switch in a member coroutine.
  using Kind = config::DependencyCheck::Kind;
  if (c.kind == Kind::disk) {
    r = observability::probe_disk(c.target, c.min_free);
  } else if (c.kind == Kind::redis) {
    if (!st.redis_client) {
      r.error = st.setup_error;
    } else {
      bool answered = co_await st.redis_client->ping();
      r.ok = answered;
      if (!answered) {
        r.error = st.redis_shared->last_error();
      }
    }
  } else if (c.kind == Kind::tcp) {
    auto ep = config::parse_endpoint(c.target);
    auto io = start_probe_io(ioc_, c.timeout);
    r.error = co_await connect(*io, *ep);
    r.ok = r.error.empty();
    io->timer.cancel();
  } else {
    auto url = config::parse_http_check_url(c.target);
    auto io = start_probe_io(ioc_, c.timeout);
    r = co_await http_probe(*io, url, c.expect);
    io->timer.cancel();
  }
  co_return r;
}

net::awaitable<void> DependencyChecks::probe(std::size_t i) {
  State& st = *checks_[i];
  auto start = Clock::now();
  CheckResult r;
  try {
    r = co_await run_probe(i);
  } catch (const std::exception& e) {
    r = CheckResult{.ok = false, .error = e.what()};
  }
  r.latency_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  observability::append_timestamp(r.checked_at);
  bool changed = !st.has_result || st.result.ok != r.ok;
  if (changed && (st.has_result || !r.ok)) {
    std::string extra = "\"check\":";
    ghttp::append_json_string(extra, st.check.name);
    extra += ",\"error\":";
    ghttp::append_json_string(extra, r.error);
    logs_.error(r.ok ? spdlog::level::info : spdlog::level::warn,
                r.ok ? "dependency check passes" : "dependency check fails", extra);
  }
  st.result = std::move(r);
  st.has_result = true;
  st.probed_at = Clock::now();
  st.in_flight = false;
  st.done->cancel();
}

net::awaitable<bool> DependencyChecks::add_to(nlohmann::json& report) {
  const auto now = Clock::now();
  for (std::size_t i = 0; i < checks_.size(); ++i) {
    State& st = *checks_[i];
    bool fresh = st.has_result && now - st.probed_at < cfg_.health.cache_ttl;
    if (!fresh && !st.in_flight) {
      st.in_flight = true;
      ++st.probes;
      st.done = std::make_unique<net::steady_timer>(ioc_, Clock::time_point::max());
      spawn(ioc_, probe(i), logs_, "dependency check");
    }
  }
  bool all_ok = true;
  for (std::size_t i = 0; i < checks_.size(); ++i) {
    State& st = *checks_[i];
    while (st.in_flight) {
      // The probe cancels the timer when it is done; keep it alive while we wait on it.
      net::steady_timer& done = *st.done;
      co_await done.async_wait(nothrow);
    }
    all_ok = all_ok && st.result.ok;
    report["components"]["check:" + st.check.name] = observability::check_json(st.check, st.result);
  }
  co_return all_ok;
}

}  // namespace gatehouse::server
