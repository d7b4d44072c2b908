#include "upstream/pool.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

namespace gatehouse::upstream {

Pool::Pool(io::DeadlineList& deadlines, const config::Upstream& cfg, std::size_t targets,
           observability::Cell& idle_gauge)
    : deadlines_(deadlines), cfg_(cfg), idle_(targets), idle_gauge_(idle_gauge) {}

bool Pool::is_stale(Connection& c, Clock::time_point now) const {
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

std::unique_ptr<Connection> Pool::take(std::size_t target, Clock::time_point now) {
  auto& list = idle_[target];
  while (!list.empty()) {
    auto c = std::move(list.back());
    list.pop_back();
    idle_gauge_.add(-1);
    --idle_total_;
    if (is_stale(*c, now)) {
      continue;
    }
    c->reused = true;
    deadlines_.push_back(c->deadline);
    return c;
  }
  return nullptr;
}

void Pool::release(std::unique_ptr<Connection> conn, Clock::time_point now) {
  auto& list = idle_[conn->target];
  if (list.size() >= cfg_.max_idle_per_target || conn->buffer.size() != 0) {
    return;  // closing: pool full, or the upstream sent bytes past the response
  }
  conn->deadline.disarm();
  conn->deadline.unlink();
  conn->idle_since = now;
  conn->reused = false;
  list.push_back(std::move(conn));
  idle_gauge_.add(1);
  ++idle_total_;
}

std::unique_ptr<Connection> Pool::evict_one() {
  auto fullest = std::max_element(idle_.begin(), idle_.end(),
                                  [](const auto& a, const auto& b) { return a.size() < b.size(); });
  if (fullest == idle_.end() || fullest->empty()) {
    return nullptr;
  }
  auto c = std::move(fullest->front());  // LIFO lists: the front waited longest
  fullest->erase(fullest->begin());
  idle_gauge_.add(-1);
  --idle_total_;
  return c;
}

void Pool::prune(Clock::time_point now) {
  for (auto& list : idle_) {
    std::erase_if(list, [&](const std::unique_ptr<Connection>& c) {
      bool old = now - c->idle_since > cfg_.keepalive_timeout;
      if (old) {
        idle_gauge_.add(-1);
        --idle_total_;
      }
      return old;
    });
  }
}

void Pool::drop(std::size_t target) {
  auto& list = idle_[target];
  idle_gauge_.add(-static_cast<std::int64_t>(list.size()));
  idle_total_ -= list.size();
  list.clear();
}

void Pool::close_all() {
  for (auto& list : idle_) {
    idle_gauge_.add(-static_cast<std::int64_t>(list.size()));
    idle_total_ -= list.size();
    list.clear();
  }
}

}  // namespace gatehouse::upstream
