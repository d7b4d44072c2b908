#include "server/websocket.hpp"

#include <exception>

#include "http/json.hpp"
#include "io/spawn.hpp"

namespace gatehouse::server {
namespace {

std::string_view sv(beast::string_view s) {
  return {s.data(), s.size()};
}

template <class Fields>
std::vector<std::string_view> connection_tokens_of(const Fields& fields) {
  std::vector<std::string_view> tokens;
  auto range = fields.equal_range(http::field::connection);
  for (auto it = range.first; it != range.second; ++it) {
    for (auto t : ghttp::split_tokens(sv(it->value()))) {
      tokens.push_back(t);
    }
  }
  return tokens;
}

// A tunnel moves at most this much per read each way: the pair costs 32 KiB while it is open.
constexpr std::size_t kTunnelBuffer = 16 * 1024;
// After one side closed, how long the other may still finish (a close frame in flight).
constexpr auto kCloseGrace = std::chrono::seconds(2);

struct Tunnel {
  Worker& w;
  ClientConn& c;
  upstream::Connection& u;
  Clock::duration idle;
  std::uint64_t& up_bytes;
  std::uint64_t& down_bytes;
  bool closing = false;

  // Silence is measured across both directions: a byte either way keeps both sides open.
  void touch() {
    if (!closing) {
      c.deadline.arm(idle);
      u.deadline.arm(idle);
    }
  }
  // One direction ended: the other gets a short grace to pass on what is in flight.
  void begin_close() {
    if (!closing) {
      closing = true;
      c.deadline.arm(kCloseGrace);
      u.deadline.arm(kCloseGrace);
    }
  }
};

// client -> upstream
net::awaitable<void> pump_up(Tunnel& t) {
  auto buf = std::make_unique_for_overwrite<char[]>(kTunnelBuffer);
  for (;;) {
    auto [ec, n] =
        co_await t.c.stream.async_read_some(net::buffer(buf.get(), kTunnelBuffer), nothrow);
    if (ec) {
      break;
    }
    t.touch();
    auto wr = co_await write_all(t.u.socket, t.u.deadline, t.closing ? kCloseGrace : t.idle,
                                 net::buffer(buf.get(), n));
    if (wr.ec) {
      break;
    }
    t.up_bytes += n;
    t.touch();
  }
  error_code ignore;
  t.u.socket.shutdown(tcp::socket::shutdown_send, ignore);  // the client's close, passed on
  t.begin_close();
}

// upstream -> client
net::awaitable<void> pump_down(Tunnel& t) {
  auto buf = std::make_unique_for_overwrite<char[]>(kTunnelBuffer);
  for (;;) {
    auto [ec, n] =
        co_await t.u.socket.async_read_some(net::buffer(buf.get(), kTunnelBuffer), nothrow);
    if (ec) {
      break;
    }
    t.touch();
    auto wr = co_await write_all(t.c.stream, t.c.deadline, t.closing ? kCloseGrace : t.idle,
                                 net::buffer(buf.get(), n));
    if (wr.ec) {
      break;
    }
    t.down_bytes += n;
    t.touch();
  }
  if (!t.c.stream.tls()) {
    error_code ignore;
    t.c.socket().shutdown(tcp::socket::shutdown_send, ignore);
  }
  t.begin_close();
}

// The 101 for the client: the upstream's end-to-end fields (Sec-WebSocket-Accept, -Protocol,
// -Extensions, cookies), the handshake's Connection and Upgrade, and every filter's lines.
void build_upgrade_head(FilterChain& chain, const ResponseParser& rp, Context& x,
                        std::string& out) {
  const auto& res = rp.get();
  auto tokens = connection_tokens_of(res);
  out.clear();
  out += "HTTP/1.1 101 Switching Protocols\r\n";
  for (const auto& f : res) {
    auto name = sv(f.name_string());
    if (f.name() == http::field::content_length || ghttp::is_hop_by_hop(name) ||
        chain.strips(name) || ghttp::named_by_connection(name, tokens)) {
      continue;
    }
    out += name;
    out += ": ";
    out += sv(f.value());
    out += "\r\n";
  }
  out += "Connection: Upgrade\r\nUpgrade: ";
  out += sv(res[http::field::upgrade]);
  out += "\r\n";
  ResponseHead head{101, &res, out};
  chain.encode_headers(x, head);
  out += "\r\n";
}

}  // namespace

std::string_view websocket_upgrade(const RequestParser& p) {
  const auto& req = p.get();
  auto upgrade = req.find(http::field::upgrade);
  if (upgrade == req.end() || p.chunked() || p.content_length().value_or(0) > 0) {
    return {};
  }
  auto tokens = connection_tokens_of(req);
  if (!ghttp::is_websocket_upgrade(sv(req.method_string()), req.version(), tokens,
                                   sv(upgrade->value()))) {
    return {};
  }
  return sv(upgrade->value());
}

void add_upgrade_lines(std::string& head, std::string_view upgrade) {
  // Before the blank line that ends the head.
  std::string lines = "Connection: Upgrade\r\nUpgrade: ";
  lines += upgrade;
  lines += "\r\n";
  head.insert(head.size() - 2, lines);
}

net::awaitable<bool> relay_upgrade(Worker& w, ClientConn& c, FilterChain& chain, Context& x,
                                   std::unique_ptr<upstream::Connection> u, ResponseParser& rp,
                                   bool requested) {
  const auto& res = rp.get();
  auto tokens = connection_tokens_of(res);
  if (!requested || !ghttp::accepts_websocket(tokens, sv(res[http::field::upgrade]))) {
    // A 101 to a request that was not a handshake we forwarded (or to another protocol): bytes
    // after it are not HTTP we could check, so it is never tunnelled.
    std::string extra = "\"request_id\":";
    ghttp::append_json_string(extra, x.request_id);
    extra += ",\"upstream\":";
    ghttp::append_json_string(extra, x.upstream_address);
    w.gw.logs().error(spdlog::level::warn, "upstream switched protocols unasked; refused", extra);
    w.metrics.upstreams[w.cluster(x.cfg, x.cfg.routes[x.route].upstream_index).index()]
        .failures.add();
    co_await send_local_reply(w, c, chain, x, 502, false, "unexpected 101 from the upstream");
    co_return x.client_keep_alive;  // the upstream connection is dropped (closed)
  }

  w.metrics.websocket_upgrades.add();
  w.metrics.websockets_open.add(1);
  struct Open {
    observability::Cell& cell;
    ~Open() { cell.add(-1); }
  } open{w.metrics.websockets_open};
  x.status = 101;
  x.client_keep_alive = false;
  const auto idle = x.cfg.limits.idle_timeout;

  // The head, then whatever each side sent past its head (early frames), then the tunnel.
  build_upgrade_head(chain, rp, x, c.scratch);
  std::array<net::const_buffer, 2> first{net::buffer(c.scratch), u->buffer.data()};
  auto wr = co_await write_all(c.stream, c.deadline, idle, first);
  if (wr.ec) {
    co_return false;
  }
  x.bytes_out += u->buffer.size();
  u->buffer.consume(u->buffer.size());
  if (c.buffer.size() > 0) {
    auto up = co_await write_all(u->socket, u->deadline, idle, c.buffer.data());
    if (up.ec) {
      co_return false;
    }
    x.bytes_in += c.buffer.size();
    c.buffer.consume(c.buffer.size());
  }

  Tunnel t{w, c, *u, idle, x.bytes_in, x.bytes_out};
  t.touch();
  // pump_down runs as a coroutine of its own; this frame waits for it before it ends.
  bool down_done = false;
  net::steady_timer down_signal(w.ioc, Clock::time_point::max());
  net::co_spawn(w.ioc, pump_down(t), [&](std::exception_ptr e) {
    if (e) {
      w.gw.logs().internal_error("websocket tunnel", exception_text(e), x.request_id);
    }
    down_done = true;
    down_signal.cancel();
  });
  co_await pump_up(t);
  while (!down_done) {
    co_await down_signal.async_wait(nothrow);
  }
  c.deadline.arm(kCloseGrace);
  co_return false;
}

}  // namespace gatehouse::server
