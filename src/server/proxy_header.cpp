#include "server/proxy_header.hpp"

#include <array>

#include "http/forwarding.hpp"
#include "http/proxy_protocol.hpp"

namespace gatehouse::server {

namespace pp = ghttp::proxy_protocol;

// Bytes are peeked (MSG_PEEK), then consumed only as far as they belong to the header: bytes seen
// while the header is incomplete are all header bytes, and once `parse` says done its length is
// exact. A plain read could swallow the start of a TLS ClientHello, which the TLS stream reads
// from the socket itself. Consuming what was peeked also keeps the readiness wait from spinning
// on a client that sends half a header and stops.
net::awaitable<std::optional<std::string>> read_proxy_header(Worker& w, tcp::socket& socket,
                                                             std::string_view peer) {
  // Only a trusted load balancer may name the client; anyone else would pick their identity.
  if (!ghttp::is_trusted(peer, w.cfg().trusted_proxies)) {
    co_return std::nullopt;
  }
  Deadline deadline(socket);
  w.deadlines.push_back(deadline);
  deadline.arm(w.cfg().limits.header_timeout);
  // A readiness wake-up without bytes must not block the worker in receive().
  error_code mode_ec;
  socket.non_blocking(true, mode_ec);
  if (mode_ec) {
    co_return std::nullopt;
  }
  std::array<char, pp::kMaxPrefixBytes> seen;
  std::size_t have = 0;
  pp::Result result;
  for (;;) {
    auto [wait_ec] = co_await socket.async_wait(tcp::socket::wait_read, nothrow);
    if (wait_ec) {
      co_return std::nullopt;  // the deadline cancelled the wait, or the socket failed
    }
    error_code ec;
    std::size_t n = socket.receive(net::buffer(seen.data() + have, seen.size() - have),
                                   tcp::socket::message_peek, ec);
    if (ec == net::error::would_block || ec == net::error::try_again) {
      continue;
    }
    if (ec || n == 0) {
      co_return std::nullopt;  // EOF or reset before a complete header
    }
    result = pp::parse({seen.data(), have + n});
    if (result.status == pp::Status::error) {
      co_return std::nullopt;
    }
    if (result.status == pp::Status::done) {
      break;
    }
    // Incomplete: everything seen so far is header, and already in the socket's buffer.
    if (socket.receive(net::buffer(seen.data() + have, n), 0, ec) != n || ec) {
      co_return std::nullopt;
    }
    have += n;
  }
  socket.non_blocking(false, mode_ec);
  // Consume the header: its first bytes are in the socket already; v2 TLVs past the addresses may
  // still be arriving and are read into `seen` and dropped.
  std::size_t left = result.length - have;
  while (left > 0) {
    auto chunk = std::min(left, seen.size());
    auto [ec, n] = co_await net::async_read(socket, net::buffer(seen.data(), chunk), nothrow);
    if (ec) {
      co_return std::nullopt;
    }
    left -= n;
  }
  if (result.header.local) {
    co_return std::string(peer);
  }
  co_return ghttp::to_string(result.header.source);
}

}  // namespace gatehouse::server
