#include "upstream/pool.hpp"

#include <sys/socket.h>

#include <cerrno>

#include "http/json.hpp"

namespace gatehouse::upstream {

using namespace io;  // NOLINT(google-build-using-namespace)
namespace net = io::net;

Pool::Pool(net::any_io_executor ex, DeadlineList& deadlines, std::size_t index,
           const config::Upstream& cfg, std::vector<tcp::endpoint> targets,
           observability::UpstreamStats& stats, observability::Health& health,
           observability::Logs& logs)
    : ex_(std::move(ex)),
      deadlines_(deadlines),
      index_(index),
      cfg_(cfg),
      targets_(std::move(targets)),
      idle_(targets_.size()),
      stats_(stats),
      health_(health),
      logs_(logs) {
  for (const auto& t : cfg_.targets) {
    addresses_.push_back(t.to_string());
  }
}

std::string Pool::address(std::size_t target) const {
  return addresses_[target];
}

bool Pool::is_stale(Connection& c, Clock::time_point now) {
  if (now - c.idle_since > cfg_.keepalive_timeout) {
    return true;
  }
  if (now - c.idle_since < std::chrono::seconds(1)) {
    return false;  // in steady traffic a connection is reused at once: skip the syscall
  }
  // The upstream may have closed an idle connection: a readable idle socket means EOF or junk.
  char probe;
  ssize_t n = ::recv(c.socket.native_handle(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
  return !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

std::unique_ptr<Connection> Pool::take_idle(std::size_t target, Clock::time_point now) {
  auto& list = idle_[target];
  while (!list.empty()) {
    auto c = std::move(list.back());
    list.pop_back();
    stats_.idle.add(-1);
    if (is_stale(*c, now)) {
      continue;
    }
    c->reused = true;
    deadlines_.push_back(c->deadline);
    return c;
  }
  return nullptr;
}

net::awaitable<Acquired> Pool::acquire(bool fresh, std::string_view request_id) {
  const std::size_t n = targets_.size();
  const std::size_t start = rr_ % n;
  Acquired failure{nullptr, 502, {}};
  // Pass 0: the reachable targets from the cursor on; pass 1 (when every one of them failed or
  // none is marked reachable): the others, so a target is never skipped by a stale mark alone.
  for (int pass = 0; pass < 2; ++pass) {
    for (std::size_t i = 0; i < n; ++i) {
      std::size_t t = (start + i) % n;
      bool reachable = health_.target(index_, t).reachable();
      if ((pass == 0) != reachable) {
        continue;
      }
      rr_ = t + 1;  // the next request starts after this target
      if (!fresh) {
        if (auto c = take_idle(t, Clock::now())) {
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
        // Reads are tried without waiting first (see relay_response: a head with no body behind
        // it yet is sent at once).
        c->socket.non_blocking(true, ignore);
        stats_.opened.add();
        if (!reachable) {
          health_.target(index_, t).report(true);
        }
        co_return Acquired{std::move(c), 0, {}};
      }
      std::string what = timed_out ? "connect timed out" : ec.message();
      (timed_out ? stats_.timeouts : stats_.connect_errors).add();
      health_.target(index_, t).report(false, what);
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
      failure.status = timed_out ? 504 : 502;
      failure.detail = "connect to " + addresses_[t] + ": " + what;
    }
  }
  co_return failure;
}

void Pool::release(std::unique_ptr<Connection> conn) {
  auto& list = idle_[conn->target];
  if (list.size() >= cfg_.max_idle_per_target || conn->buffer.size() != 0) {
    return;  // closing: pool full, or the upstream sent bytes past the response
  }
  conn->deadline.disarm();
  conn->deadline.unlink();
  conn->idle_since = Clock::now();
  conn->reused = false;
  list.push_back(std::move(conn));
  stats_.idle.add(1);
}

void Pool::prune(Clock::time_point now) {
  for (auto& list : idle_) {
    std::erase_if(list, [&](const std::unique_ptr<Connection>& c) {
      bool old = now - c->idle_since > cfg_.keepalive_timeout;
      if (old) {
        stats_.idle.add(-1);
      }
      return old;
    });
  }
}

void Pool::close_all() {
  for (auto& list : idle_) {
    stats_.idle.add(-static_cast<std::int64_t>(list.size()));
    list.clear();
  }
}

}  // namespace gatehouse::upstream
