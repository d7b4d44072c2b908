#pragma once
// One keep-alive connection to an upstream target, owned by a request while in use and by the
// pool while idle.
#include "io/deadline.hpp"
#include "io/net.hpp"

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
  bool reused = false;  // taken from the idle list: the upstream may have closed it meanwhile
};

}  // namespace gatehouse::upstream
