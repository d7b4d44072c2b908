#pragma once
// One worker thread: io_context, SO_REUSEPORT listener, client sessions, upstream pools and the
// deadline sweeper. Everything here is touched by its own thread only, except begin_drain() and
// force_stop(), which post to it.
#include <boost/intrusive/list.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "server/buffer_pool.hpp"
#include "server/deadline.hpp"
#include "server/gateway.hpp"
#include "upstream/pool.hpp"

namespace gatehouse::server {

// A client connection, registered with its worker so drain can close idle ones.
struct ClientConn : public AutoUnlinkHook {
  explicit ClientConn(tcp::socket s) : socket(std::move(s)), deadline(socket) {}
  tcp::socket socket;
  Deadline deadline;
  beast::flat_buffer buffer;
  std::string peer_ip;
  bool idle = false;
  bool first_request = true;
  std::string scratch;  // reused for request/response heads
};
using ClientList = boost::intrusive::list<ClientConn, boost::intrusive::constant_time_size<false>>;

class Worker {
 public:
  Worker(Gateway& gw, unsigned index);
  ~Worker();

  // Opens the listener on `endpoint`; returns the bound endpoint (port 0 resolved).
  tcp::endpoint listen(const tcp::endpoint& endpoint);
  void run();
  void begin_drain();  // thread-safe
  void force_stop();   // thread-safe

  Gateway& gw;
  const config::Config& cfg;
  const unsigned index;
  // Declared before ioc: coroutine frames still pending when ioc is destroyed unlink from these.
  DeadlineList deadlines;
  ClientList clients;
  BufferPool buffers;
  net::io_context ioc{1};
  observability::WorkerMetrics& metrics;
  std::vector<std::unique_ptr<upstream::Pool>> pools;
  bool draining = false;

 private:
  net::awaitable<void> accept_loop();
  net::awaitable<void> sweep_loop();
  void start_session(tcp::socket socket);

  tcp::acceptor acceptor_;
};

// The client side of a connection: reads requests until close, timeout or drain.
net::awaitable<void> run_session(Worker& w, tcp::socket socket);

}  // namespace gatehouse::server
