#pragma once
// One keep-alive connection to an upstream target, owned by a request while in use and by the
// pool while idle.
#include <cstdint>
#include <memory>
#include <vector>

#include "io/deadline.hpp"
#include "io/net.hpp"

namespace gatehouse::upstream {

using io::Clock;
using io::tcp;

class Cluster;

// A cluster's count of its own connections (per worker): how many are open, in use or idle
// (max_connections), and per target how many carry a request (least_request). Every connection
// the cluster opens points to it, so a close is counted wherever it happens; shared, because a
// connection in a request's frame can outlive the cluster (frames die with the io_context, after
// the clusters).
struct Load {
  explicit Load(std::size_t targets) : active(targets, 0) {}
  std::vector<std::uint32_t> active;  // per target: connections in use by a request
  std::size_t open = 0;               // in use + idle (+ connecting)
  Cluster* owner = nullptr;           // told of closes (a queued request may go); null once gone
};

struct Connection {
  explicit Connection(const io::net::any_io_executor& ex) : socket(ex), deadline(socket) {}
  ~Connection();  // counted out of its Load (cluster.cpp)
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  tcp::socket socket;
  boost::beast::flat_buffer buffer;
  io::Deadline deadline;
  std::size_t target = 0;
  Clock::time_point idle_since{};
  bool reused = false;  // taken from the idle list: the upstream may have closed it meanwhile
  bool in_use = false;  // counted in load->active[target]
  // i12-resolve: the target slot's generation when connected; a connection to an address its
  // slot no longer holds is closed on release rather than pooled.
  std::uint32_t generation = 0;
  std::shared_ptr<Load> load;  // null for connections no cluster counts (tests)
};

}  // namespace gatehouse::upstream
