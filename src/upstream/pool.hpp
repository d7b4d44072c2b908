#pragma once
// A worker's keep-alive connections to one upstream. The balancer picks the target first (round
// robin over the targets marked reachable), then a LIFO idle connection of that target is reused
// or a new one opened: traffic splits as configured, and a target that comes back takes its share
// at once. Owned and used by one worker thread only.
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "io/deadline.hpp"
#include "observability/health.hpp"
#include "observability/logging.hpp"
#include "observability/metrics.hpp"

namespace gatehouse::upstream {

using io::Clock;
using io::tcp;

struct Connection {
  explicit Connection(const io::net::any_io_executor& ex) : socket(ex), deadline(socket) {}
  tcp::socket socket;
  boost::beast::flat_buffer buffer;
  io::Deadline deadline;
  std::size_t target = 0;
  Clock::time_point idle_since{};
  bool reused = false;
};

struct Acquired {
  std::unique_ptr<Connection> conn;
  unsigned status = 0;  // 502 or 504 when conn is null
  std::string detail;   // internal description, shown in development only
};

class Pool {
 public:
  Pool(io::net::any_io_executor ex, io::DeadlineList& deadlines, std::size_t index,
       const config::Upstream& cfg, std::vector<tcp::endpoint> targets,
       observability::UpstreamStats& stats, observability::Health& health,
       observability::Logs& logs);

  // A connection to the next target in round-robin order among the reachable ones (all of them,
  // when none is). A failed connect moves on to the next target: nothing was sent yet. `fresh`
  // opens a new connection instead of reusing an idle one (the retry after a stale one).
  io::net::awaitable<Acquired> acquire(bool fresh, std::string_view request_id);
  void release(std::unique_ptr<Connection> conn);
  void prune(Clock::time_point now);  // close connections idle past keepalive_timeout
  void close_all();
  const config::Upstream& config() const { return cfg_; }
  std::string address(std::size_t target) const;

 private:
  bool is_stale(Connection& c, Clock::time_point now);
  std::unique_ptr<Connection> take_idle(std::size_t target, Clock::time_point now);

  io::net::any_io_executor ex_;
  io::DeadlineList& deadlines_;
  std::size_t index_;
  const config::Upstream& cfg_;
  std::vector<tcp::endpoint> targets_;
  std::vector<std::string> addresses_;
  std::vector<std::vector<std::unique_ptr<Connection>>> idle_;
  std::size_t rr_ = 0;  // round-robin cursor: the target after the last one chosen
  observability::UpstreamStats& stats_;
  observability::Health& health_;
  observability::Logs& logs_;
};

}  // namespace gatehouse::upstream
