#pragma once
// A worker's idle keep-alive connections to one upstream, one LIFO list per target: the most
// recently used connection is the likeliest to still be open and warm. Knows nothing of balancing
// or connecting (Cluster does both). Owned and used by one worker thread only.
#include <memory>
#include <vector>

#include "config/config.hpp"
#include "observability/metrics.hpp"
#include "upstream/connection.hpp"

namespace gatehouse::upstream {

class Pool {
 public:
  Pool(io::DeadlineList& deadlines, const config::Upstream& cfg, std::size_t targets,
       observability::Cell& idle_gauge);

  // The newest idle connection of `target` still usable at `now` (stale ones are closed on the
  // way), registered with the worker's deadlines; null when there is none.
  std::unique_ptr<Connection> take(std::size_t target, Clock::time_point now);
  // Keeps `conn` idle from `now`, unless the target's list is full or the upstream sent bytes
  // past the response (then it is closed).
  void release(std::unique_ptr<Connection> conn, Clock::time_point now);
  void prune(Clock::time_point now);  // close connections idle past keepalive_timeout
  void close_all();
  void drop(std::size_t target);  // closes the target's idle connections (i12-resolve)
  std::size_t idle(std::size_t target) const { return idle_[target].size(); }
  std::size_t idle_total() const { return idle_total_; }
  // The idle connection that waited longest (the oldest of the fullest list), taken out to be
  // closed: its slot goes to a new connection under max_connections. Null when none is idle.
  std::unique_ptr<Connection> evict_one();

 private:
  bool is_stale(Connection& c, Clock::time_point now) const;

  io::DeadlineList& deadlines_;
  const config::Upstream& cfg_;
  std::vector<std::vector<std::unique_ptr<Connection>>> idle_;
  observability::Cell& idle_gauge_;
  std::size_t idle_total_ = 0;
};

}  // namespace gatehouse::upstream
