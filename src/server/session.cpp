// Client side of a connection: waits for a request without holding buffers, reads and checks
// the head, answers health and error replies itself, and hands everything else to the proxy.
#include <ctime>
#include <exception>
#include <utility>

#include "http/error_reply.hpp"
#include "http/json.hpp"
#include "http/redaction.hpp"
#include "http/request_id.hpp"
#include "pipeline/client_identity.hpp"
#include "pipeline/reply.hpp"
#include "pipeline/request_checks.hpp"
#include "pipeline/security_log.hpp"
#include "server/exchange.hpp"
#include "server/jobs.hpp"
#include "server/proxy_header.hpp"

namespace gatehouse::server {
namespace {

std::string peer_address(const tcp::socket& s) {
  error_code ec;
  auto ep = s.remote_endpoint(ec);
  if (ec) {
    return "unknown";
  }
  auto a = ep.address();
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return net::ip::make_address_v4(net::ip::v4_mapped, a.to_v6()).to_string();
  }
  return a.to_string();
}

const char* reason(unsigned status) {
  return beast::http::obsolete_reason(static_cast<http::status>(status)).data();
}

}  // namespace

void append_date_header(std::string& out) {
  thread_local std::time_t cached_sec = 0;
  thread_local char cached[64];
  std::time_t now = std::time(nullptr);
  if (now != cached_sec) {
    std::tm tm{};
    gmtime_r(&now, &tm);
    std::strftime(cached, sizeof cached, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    cached_sec = now;
  }
  out += cached;
}

void build_reply_head(FilterChain& chain, Context& ctx, std::string& head) {
  const auto& r = ctx.reply;
  if (r.close) {
    ctx.client_keep_alive = false;
  }
  head.clear();
  head += "HTTP/1.1 ";
  head += std::to_string(r.status);
  head += ' ';
  head += reason(r.status);
  if (r.stored_owner) {
    // A cached response: its own fields; the length of its body (HEAD too: RFC 9110 8.6).
    head += "\r\n";
    head += r.stored_lines;
    if (r.status != 204 && r.status != 304) {
      head += "Content-Length: ";
      head += std::to_string(r.stored_body.size());
      head += "\r\n";
    }
  } else if (r.status == 204) {
    head += "\r\n";  // no content, so no Content-Type or Content-Length (RFC 9110 8.6)
  } else {
    head += "\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: ";
    head += std::to_string(r.body.size());
    head += "\r\n";
  }
  append_date_header(head);
  head += r.headers;
  pipeline::ResponseHead response{r.status, nullptr, head};
  if (r.stored_owner) {
    response.stored_lines = r.stored_lines;
  }
  chain.encode_headers(ctx, response);
  head += ctx.client_keep_alive ? "\r\n" : "Connection: close\r\n\r\n";
}

net::awaitable<void> send_reply(Worker& w, ClientConn& c, FilterChain& chain, Context& ctx) {
  auto& r = ctx.reply;
  if (r.error) {
    // stale_if_error: an upstream failure answered with the cached copy instead (issue 14).
    if (!chain.get<filters::cache::CacheFilter>().stale_on_error(ctx)) {
      w.metrics.record_local_reply(r.status);
    }
  }
  std::string& head = c.scratch;
  build_reply_head(chain, ctx, head);
  const std::string_view body = r.stored_owner ? r.stored_body : std::string_view(r.body);
  std::array<net::const_buffer, 2> bufs{
      net::buffer(head), r.head_only ? net::const_buffer() : net::buffer(body.data(), body.size())};
  ctx.status = r.status;
  ctx.bytes_out += r.head_only ? 0 : body.size();
  auto ec = (co_await write_all(c.stream, c.deadline, ctx.cfg.limits.idle_timeout, bufs)).ec;
  if (ec) {
    ctx.client_keep_alive = false;
  }
}

net::awaitable<void> send_local_reply(Worker& w, ClientConn& c, FilterChain& chain, Context& ctx,
                                      unsigned status, bool close, std::string_view detail) {
  pipeline::error_reply(ctx, status, close, detail);
  co_await send_reply(w, c, chain, ctx);
}

// Reads a Content-Length body whole into the connection's buffer (it stays unparsed there for the
// proxy), for a filter that keys on it (the cache). Bounded by the filter's size and idle_timeout.
net::awaitable<bool> buffer_request_body(ClientConn& c, Context& ctx) {
  const std::size_t length = std::exchange(ctx.buffer_body, 0);
  const auto& req = *ctx.request;
  if (c.buffer.size() < length && req.version() >= 11 &&
      ghttp::iequals(
          std::string_view(req[http::field::expect].data(), req[http::field::expect].size()),
          "100-continue")) {
    // The client waits for this before it sends the body the cache keys on (RFC 9110 10.1.1).
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    auto wrote = co_await write_all(c.stream, c.deadline, ctx.cfg.limits.idle_timeout,
                                    net::buffer(kContinue));
    if (wrote.ec) {
      co_return false;
    }
  }
  while (c.buffer.size() < length) {
    c.deadline.arm(ctx.cfg.limits.idle_timeout);
    auto [ec, n] =
        co_await c.stream.async_read_some(c.buffer.prepare(length - c.buffer.size()), nothrow);
    if (ec) {
      co_return false;
    }
    c.buffer.commit(n);
  }
  ctx.buffered_body = {static_cast<const char*>(c.buffer.data().data()), length};
  co_return true;
}

// One request on a connection. A coroutine of its own so that the parser, the context and the
// filters live in a frame only while a request is in flight, not in the idle connection's frame.
net::awaitable<bool> serve_one(Worker& w, ClientConn& c) {
  // The request runs on the generation current now to its end, even if a reload installs another
  // meanwhile. Declared first, so released after everything below that points into it.
  GenerationPin pin(w, *w.gen);
  const auto& limits = pin.g.cfg().limits;
  Context ctx(pin.g.cfg(), Clock::now());
  struct NoteFailure {  // an exception leaving this request: its id for the error line
    Worker& w;
    const Context& ctx;
    int uncaught = std::uncaught_exceptions();
    ~NoteFailure() {
      if (std::uncaught_exceptions() > uncaught) {
        w.failed_request_id = ctx.request_id;
      }
    }
  } note_failure{w, ctx};
  RequestParser parser;
  parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
  parser.body_limit(limits.max_body_bytes == 0 ? std::numeric_limits<std::uint64_t>::max()
                                               : limits.max_body_bytes);
  w.metrics.in_flight.add(1);
  struct InFlight {
    observability::Cell& cell;
    ~InFlight() { cell.add(-1); }
  } in_flight{w.metrics.in_flight};
  FilterChain chain(pin.g.services);
  // on_complete (access log, metrics, in-flight slots) once the exchange is over, however it ends.
  struct Complete {
    FilterChain& chain;
    Context& ctx;
    bool armed = true;
    ~Complete() {
      if (armed) {
        chain.on_complete(ctx);
      }
    }
  } complete{chain, ctx};
  ctx.peer_ip = c.peer_ip;

  c.deadline.arm(limits.header_timeout);
  auto ec = co_await read_head(c.stream, c.buffer, c.deadline, parser);
  if (ec) {
    unsigned status = status_for_parse_error(ec);
    if (status == 0) {
      complete.armed = false;  // timeout, reset or EOF: nothing to answer, nothing to log
      co_return false;
    }
    ctx.client_ip = c.peer_ip;
    ctx.method = "-";
    ctx.target = "-";
    ctx.request_id = ghttp::thread_id_generator().request_id();
    pipeline::log_security(w.gw.security_events(), w.gw.hasher(), ctx,
                           config::SecurityEvent::bad_request, "malformed_request", ec.message());
    co_await send_local_reply(w, c, chain, ctx, status, true, ec.message());
    co_return false;
  }

  const auto& req = parser.get();
  ctx.parser = &parser;
  ctx.request = &req;
  auto sv = [](beast::string_view s) { return std::string_view(s.data(), s.size()); };
  ctx.identity = pipeline::identify_client(ctx.cfg, c.peer_ip, req);
  ctx.client_ip = std::move(ctx.identity.forwarding.client_ip);
  // The scheme the client used: the nearest trusted proxy's word, else this connection's.
  ctx.tls = ctx.identity.forwarding.proto.empty() ? c.stream.tls()
                                                  : ctx.identity.forwarding.proto == "https";
  ctx.method = sv(req.method_string());
  ctx.target = sv(req.target());
  ctx.user_agent = sv(req[http::field::user_agent]);
  ctx.origin = sv(req[http::field::origin]);
  ctx.host = sv(req[http::field::host]);
  ctx.head_request = req.method() == http::verb::head;
  ctx.body_pending = parser.chunked() || parser.content_length().value_or(0) > 0;
  ctx.client_keep_alive = req.keep_alive() && !w.draining;

  if (ctx.body_pending && !parser.chunked()) {
    // A body that came with the head: the cache may key on it without reading (issue 14).
    auto length = *parser.content_length();
    if (c.buffer.size() >= length) {
      ctx.buffered_body = {static_cast<const char*>(c.buffer.data().data()),
                           static_cast<std::size_t>(length)};
    }
  }
  auto next = chain.decode(ctx);
  while (next == pipeline::Next::Suspend) {
    if (ctx.buffer_body > 0) {
      const bool buffered = co_await buffer_request_body(c, ctx);
      if (!buffered) {
        co_return false;  // the client went away or stalled mid-body: nothing to answer
      }
    }
    next = co_await chain.resume(ctx);
  }
  bool keep;
  if (next == pipeline::Next::Reply) {
    co_await send_reply(w, c, chain, ctx);
    keep = ctx.client_keep_alive;
    if (ctx.reply.stored_owner && !ctx.buffered_body.empty() && !ctx.reply.close) {
      c.buffer.consume(ctx.buffered_body.size());  // a cached answer to a keyed body
    }
  } else if (ctx.cfg.routes[ctx.route].mode != config::Route::Mode::sync) {
    keep = co_await serve_job_request(w, c, chain, parser, ctx);  // issue 13: async, hybrid
  } else {
    keep = co_await proxy_request(w, c, chain, parser, ctx);
  }
  co_return keep && !w.draining;
}

// TLS: handshake within the header timeout. Failures (scanners, plain HTTP on the TLS port, bad
// clients) are counted; with tls_error in log.security_events, sampled lines too.
net::awaitable<bool> tls_handshake(Worker& w, ClientConn& c) {
  auto ctx = w.gw.tls_context();
  c.stream.start_tls(*ctx);
  c.deadline.arm(w.cfg().limits.header_timeout);
  auto [ec] = co_await c.stream.tls_stream().async_handshake(ssl::stream_base::server, nothrow);
  if (ec) {
    w.metrics.tls_handshake_errors.add(1);
    if (w.gw.security_events().enabled(config::SecurityEvent::tls_error)) {
      Context x(w.cfg(), Clock::now());
      x.client_ip = c.peer_ip;
      x.request_id = ghttp::thread_id_generator().request_id();
      pipeline::log_security(w.gw.security_events(), w.gw.hasher(), x,
                             config::SecurityEvent::tls_error, "tls_error",
                             c.deadline.expired() ? "handshake timed out" : ec.message());
    }
    co_return false;
  }
  co_return true;
}

namespace {

// The end of a connection. A coroutine of its own: its awaiters would otherwise sit in every
// idle connection's frame.
net::awaitable<void> close_connection(ClientConn& c, bool open) {
  error_code ignore;
  if (c.stream.tls() && open && c.socket().is_open() && !c.deadline.expired()) {
    // close_notify, then wait briefly for the peer's (most clients just close).
    c.deadline.arm(std::chrono::milliseconds(500));
    co_await c.stream.tls_stream().async_shutdown(nothrow);
  } else if (!c.stream.tls()) {
    c.socket().shutdown(tcp::socket::shutdown_send, ignore);
  }
  if (!c.stream.tls() && c.socket().is_open() && !c.deadline.expired()) {
    // Lingering close: read and drop what the client still sends (an unread body after a 413,
    // say) for a moment, so our reply is not destroyed by a reset.
    c.deadline.arm(std::chrono::milliseconds(500));
    std::size_t dropped = 0;
    while (dropped < 1024 * 1024) {
      // Not a local array: locals live in the coroutine frame for the connection's lifetime.
      auto [ec, n] = co_await c.stream.async_read_some(net::buffer(c.idle_bytes), nothrow);
      if (ec) {
        break;
      }
      dropped += n;
    }
  }
  c.socket().close(ignore);
}

}  // namespace

// PROXY protocol: the header's client replaces the peer address. Its own coroutine, so the
// header's result does not take room in the connection's frame for the connection's lifetime.
net::awaitable<bool> take_proxy_header(Worker& w, ClientConn& c) {
  auto client = co_await read_proxy_header(w, c.socket(), c.peer_ip);
  if (!client) {
    w.metrics.proxy_protocol_errors.add(1);
    co_return false;
  }
  c.peer_ip = std::move(*client);
  co_return true;
}

net::awaitable<void> run_session(Worker& w, tcp::socket socket, bool tls) {
  // Every local of this frame lives as long as the connection: 10,000 idle connections hold
  // 10,000 of them (docs/benchmarks.md), so the frame keeps one copy of the peer address.
  ClientConn c(std::move(socket));
  c.peer_ip = peer_address(c.socket());
  if (w.gw.cfg().proxy_protocol) {  // restart-only
    // Before admission: connection caps count the client the header names, not the balancer.
    const bool named = co_await take_proxy_header(w, c);
    if (!named) {
      error_code ignore;
      c.socket().close(ignore);
      co_return;
    }
  }
  if (!w.gw.admit_connection(c.peer_ip)) {
    // Over a connection cap: close at once (RST-free FIN), before any allocation for it.
    w.metrics.connections_rejected.add(1);
    error_code ignore;
    c.socket().close(ignore);
    co_return;
  }
  struct Admitted {
    Gateway& gw;
    const std::string& peer;
    ~Admitted() { gw.release_connection(peer); }
  } admitted{w.gw, c.peer_ip};
  w.clients.push_back(c);
  w.deadlines.push_back(c.deadline);
  w.metrics.connections_active.add(1);
  struct Active {
    observability::Cell& cell;
    ~Active() { cell.add(-1); }  // tied to scope: an exception cannot make the gauge drift
  } active{w.metrics.connections_active};
  w.metrics.connections_total.add(1);
  {
    error_code ec;
    c.socket().set_option(tcp::no_delay(true), ec);
  }
  bool open = !tls || co_await tls_handshake(w, c);

  while (open) {
    if (c.buffer.size() == 0) {
      // Idle: wait for bytes without holding heap buffers.
      c.buffer.shrink_to_fit();
      w.heads.give_back(c.scratch);
      w.heads.give_back(c.upstream_head);
      if (w.draining && !c.first_request) {
        break;  // a connection accepted during the drain still gets its one request
      }
      c.idle = true;
      const auto& limits = w.cfg().limits;  // the current generation's, not the one at accept
      c.deadline.arm(c.first_request ? limits.header_timeout : limits.idle_timeout);
      // The operation lives as long as the idle time: allocated at its own size.
      auto [ec, n] = co_await c.stream.async_read_some_unpooled(net::buffer(c.idle_bytes), nothrow);
      c.idle = false;
      if (ec) {
        error_code ignore;
        // Drain cancelled the wait: a request that already arrived is still served.
        if (!(w.draining && !c.deadline.expired() && c.socket().available(ignore) > 0)) {
          break;
        }
      } else {
        net::buffer_copy(c.buffer.prepare(n), net::buffer(c.idle_bytes.data(), n));
        c.buffer.commit(n);
      }
      w.heads.take(c.scratch);
      w.heads.take(c.upstream_head);
    }
    c.first_request = false;

    if (!co_await serve_one(w, c)) {
      break;
    }
  }

  co_await close_connection(c, open);
}

}  // namespace gatehouse::server
