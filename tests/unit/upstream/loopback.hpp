#pragma once
// Real loopback sockets for the upstream tests, and a way to run a coroutine to its end on an
// io_context inside a test.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <string>
#include <utility>

#include "io/net.hpp"

namespace gatehouse::upstream::test {

using io::tcp;
namespace net = io::net;

// A connected pair of TCP sockets on 127.0.0.1 (connect, then accept from the backlog).
inline std::pair<tcp::socket, tcp::socket> socket_pair(net::io_context& ioc) {
  tcp::acceptor acceptor(ioc, tcp::endpoint(net::ip::address_v4::loopback(), 0));
  tcp::socket a(ioc);
  a.connect(acceptor.local_endpoint());
  tcp::socket b = acceptor.accept();
  return {std::move(a), std::move(b)};
}

// Runs `aw` until it completes (with everything else queued on `ioc`), returns its result. A
// broken relay can wait forever on a socket (the tests run no deadline sweeper): after a generous
// bound the test binary stops with a message instead of hanging (a watchdog, not a timing check;
// the frames still pending refer to sockets the test owns, so there is no clean way on).
template <class T>
T run(net::io_context& ioc, net::awaitable<T> aw) {
  std::optional<T> out;
  std::exception_ptr error;
  net::co_spawn(ioc, std::move(aw), [&](std::exception_ptr e, T v) {
    error = e;
    out = std::move(v);
  });
  ioc.restart();
  ioc.run_for(std::chrono::seconds(20));
  if (!out && !error) {
    std::fprintf(stderr, "FATAL: the coroutine under test did not complete within 20 s\n");
    std::abort();
  }
  if (error) {
    std::rethrow_exception(error);
  }
  return std::move(*out);
}

// Everything the peer sends until it closes (blocking; the tests send little).
inline std::string read_to_eof(tcp::socket& s) {
  std::string out;
  char buf[4096];
  for (;;) {
    io::error_code ec;
    auto n = s.read_some(net::buffer(buf), ec);
    out.append(buf, n);
    if (ec) {
      return out;
    }
  }
}

}  // namespace gatehouse::upstream::test
