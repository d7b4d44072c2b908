// Client side of a connection: waits for a request without holding buffers, reads and checks
// the head, answers health and error replies itself, and hands everything else to the proxy.
#include <ctime>
#include <exception>

#include "core/router.hpp"
#include "http/error_reply.hpp"
#include "http/headers.hpp"
#include "http/request_id.hpp"
#include "server/exchange.hpp"
#include "server/forwarding_fields.hpp"
#include "server/proxy_header.hpp"
#include "server/request_checks.hpp"

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

void log_security(Worker& w, const Exchange& x, std::string_view event, std::string_view reason) {
  std::string line;
  line.reserve(256);
  line += "{\"time\":\"";
  observability::append_timestamp(line);
  line += "\",\"type\":\"security\",\"event\":";
  ghttp::append_json_string(line, event);
  line += ",\"client_ip\":";
  ghttp::append_json_string(line, w.gw.hasher()(x.client_ip));
  line += ",\"reason\":";
  ghttp::append_json_string(line, reason);
  line += ",\"request_id\":";
  ghttp::append_json_string(line, x.request_id);
  line += '}';
  w.gw.logs().security(line);
}

void fill_request_id(Worker& w, Exchange& x, const RequestParser& p) {
  const auto& rid_cfg = w.cfg.request_id;
  auto incoming = p.get()[rid_cfg.header];
  if (rid_cfg.trust_incoming && ghttp::is_valid_request_id({incoming.data(), incoming.size()})) {
    x.request_id.assign(incoming.data(), incoming.size());
  } else {
    x.request_id = ghttp::thread_id_generator().request_id();
  }
}

bool admitted_by(const config::AccessRules& rules, const std::string& client_ip) {
  if (rules.empty()) {
    return true;
  }
  auto ip = ghttp::parse_ip(client_ip);
  return ip && rules.admits(*ip);
}

std::string_view request_header(const void* ctx, std::string_view name) {
  const auto& req = *static_cast<const RequestParser::value_type*>(ctx);
  auto v = req[beast::string_view(name.data(), name.size())];
  return {v.data(), v.size()};
}

// A 429 or ban 403 from the rate limiter. An unread body is not worth reading: close after.
net::awaitable<bool> reject(Worker& w, ClientConn& c, Exchange& x, bool body_pending,
                            bool head_only) {
  const auto& v = x.limit;
  if (!v.new_ban.empty()) {
    std::string line;
    line.reserve(256);
    line += "{\"time\":\"";
    observability::append_timestamp(line);
    line += "\",\"type\":\"security\",\"event\":\"ban\",\"key\":";
    ghttp::append_json_string(line, v.new_ban);
    line += ",\"reason\":";
    ghttp::append_json_string(line, v.ban_reason);
    line += ",\"request_id\":";
    ghttp::append_json_string(line, x.request_id);
    line += '}';
    w.gw.logs().security(line);
  }
  if (body_pending) {
    x.client_keep_alive = false;
  }
  w.metrics.record_local_reply(v.status());
  co_await send_json(w, c, x, v.status(),
                     ghttp::error_body(v.code(), v.message, v.retry_after_s, x.request_id),
                     head_only);
  co_return x.client_keep_alive;
}

// 308 to the same host and target on the TLS port (308 keeps the method and body, unlike 301).
net::awaitable<void> send_https_redirect(Worker& w, ClientConn& c, Exchange& x,
                                         std::string_view host, std::string_view target,
                                         bool head_only) {
  auto port = w.gw.tls_port();
  std::string location = "https://";
  location += core::host_without_port(host);
  if (port != 443) {
    location += ':';
    location += std::to_string(port);
  }
  location += target;
  std::string body = R"({"error":"https_required","message":)";
  ghttp::append_json_string(body, "Use HTTPS: " + location);
  body += '}';
  co_await send_json(w, c, x, 308, body, head_only, "Location: " + location + "\r\n");
}

// CORS preflights never reach the app and never count against rate limits. Returns false when
// the OPTIONS request is not a preflight (it is then routed like any request).
net::awaitable<bool> answer_preflight(Worker& w, ClientConn& c, Exchange& x,
                                      const RequestParser::value_type& req, bool body_pending) {
  auto sv = [](beast::string_view s) { return std::string_view(s.data(), s.size()); };
  std::string lines;
  auto result = w.gw.cors().preflight(sv(req.method_string()), x.origin,
                                      sv(req[http::field::access_control_request_method]),
                                      sv(req[http::field::access_control_request_headers]), lines);
  if (result.kind == filters::cors::Preflight::not_preflight) {
    co_return false;
  }
  x.preflight = true;
  if (body_pending) {
    x.client_keep_alive = false;
  }
  if (result.kind == filters::cors::Preflight::allowed) {
    co_await send_json(w, c, x, 204, std::string(), true, lines);
  } else {
    log_security(w, x, "cors_preflight_denied", result.reason);
    w.metrics.record_local_reply(403);
    auto body = ghttp::error_body({403, filters::cors::kDeniedCode, result.reason}, x.request_id,
                                  w.gw.development());
    co_await send_json(w, c, x, 403, body, false, lines);
  }
  co_return true;
}

}  // namespace

std::size_t chunk_header(char* out, std::size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  char tmp[16];
  std::size_t len = 0;
  do {
    tmp[len++] = kHex[n & 0xf];
    n >>= 4;
  } while (n != 0);
  for (std::size_t i = 0; i < len; ++i) {
    out[i] = tmp[len - 1 - i];
  }
  out[len] = '\r';
  out[len + 1] = '\n';
  return len + 2;
}

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

net::awaitable<void> send_json(Worker& w, ClientConn& c, Exchange& x, unsigned status,
                               const std::string& body, bool head_only,
                               std::string_view extra_headers) {
  std::string& head = c.scratch;
  head.clear();
  head += "HTTP/1.1 ";
  head += std::to_string(status);
  head += ' ';
  head += reason(status);
  if (status == 204) {
    head += "\r\n";  // no content, so no Content-Type or Content-Length (RFC 9110 8.6)
  } else {
    head += "\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: ";
    head += std::to_string(body.size());
    head += "\r\n";
  }
  append_date_header(head);
  head += w.cfg.request_id.header;
  head += ": ";
  head += x.request_id;
  head += "\r\n";
  head += x.limit.headers;
  head += extra_headers;
  w.gw.security_headers().append_local(head, x.tls);
  if (!x.preflight) {
    w.gw.cors().append_actual(x.origin, head);
  }
  head += x.client_keep_alive ? "\r\n" : "Connection: close\r\n\r\n";
  std::array<net::const_buffer, 2> bufs{net::buffer(head),
                                        head_only ? net::const_buffer() : net::buffer(body)};
  x.status = status;
  x.bytes_out += head_only ? 0 : body.size();
  auto ec = (co_await write_all(c.stream, c.deadline, w.cfg.limits.idle_timeout, bufs)).ec;
  if (ec) {
    x.client_keep_alive = false;
  }
}

net::awaitable<void> send_local_reply(Worker& w, ClientConn& c, Exchange& x, unsigned status,
                                      bool close, std::string_view detail) {
  if (close) {
    x.client_keep_alive = false;
  }
  w.metrics.record_local_reply(status);
  auto body =
      ghttp::error_body(ghttp::reply_for_status(status), x.request_id, w.gw.development(), detail);
  co_await send_json(w, c, x, status, body, false);
}

void finish_exchange(Worker& w, Exchange& x, std::string_view method, std::string_view target,
                     std::string_view user_agent) {
  auto end = Clock::now();
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(end - x.start).count();
  w.metrics.record_request(x.route, x.status, us);
  auto& logs = w.gw.logs();
  if (!logs.access_enabled()) {
    return;
  }
  thread_local std::string line;  // reused: no allocation per request
  line.clear();
  line += "{\"time\":\"";
  observability::append_timestamp(line);
  line += "\",\"type\":\"access\",\"request_id\":";
  ghttp::append_json_string(line, x.request_id);
  line += ",\"client_ip\":";
  const auto& hasher = w.gw.hasher();
  ghttp::append_json_string(line, hasher.enabled() ? hasher(x.client_ip) : x.client_ip);
  line += ",\"method\":";
  ghttp::append_json_string(line, method);
  line += ",\"path\":";
  if (x.path.empty()) {
    // Refused before its path was judged: as received.
    if (target.find('?') == std::string_view::npos) {
      ghttp::append_json_string(line, target);
    } else {
      ghttp::append_json_string(line, ghttp::redact_target(target));
    }
  } else if (target.size() == x.raw_path.size()) {
    ghttp::append_json_string(line, x.path);
  } else {
    // The canonical path and the query with its secrets redacted.
    std::string logged(x.path);
    logged += std::string_view(ghttp::redact_target(target)).substr(x.raw_path.size());
    ghttp::append_json_string(line, logged);
  }
  if (x.canonical.changed) {
    line += ",\"raw_path\":";
    ghttp::append_json_string(line, x.raw_path);
  }
  line += ",\"route\":";
  if (x.route_name != nullptr) {
    ghttp::append_json_string(line, x.route_name);
  } else {
    line += "null";
  }
  fmt::format_to(std::back_inserter(line),
                 ",\"status\":{},\"bytes_in\":{},\"bytes_out\":{},\"duration_ms\":{:.3f}", x.status,
                 x.bytes_in, x.bytes_out, static_cast<double>(us) / 1000.0);
  if (x.upstream_ms >= 0) {
    fmt::format_to(std::back_inserter(line),
                   ",\"upstream_ms\":{:.3f},\"upstream\":", x.upstream_ms);
    ghttp::append_json_string(line, x.upstream_address);
  } else {
    line += ",\"upstream_ms\":null,\"upstream\":null";
  }
  if (!x.upstream_error.empty()) {
    line += ",\"upstream_error\":";
    ghttp::append_json_string(line, x.upstream_error);
  }
  line += ",\"user_agent\":";
  ghttp::append_json_string(line, user_agent);
  line += '}';
  w.access_log(line);
}

// One request on a connection. A coroutine of its own so that the parser and per-request state
// live in a frame only while a request is in flight, not in the idle connection's frame.
net::awaitable<bool> serve_one(Worker& w, ClientConn& c) {
  const auto& limits = w.cfg.limits;
  const auto& health = w.cfg.health;
  Exchange x;
  x.start = Clock::now();
  struct NoteFailure {  // an exception leaving this request: its id for the error line
    Worker& w;
    const Exchange& x;
    int uncaught = std::uncaught_exceptions();
    ~NoteFailure() {
      if (std::uncaught_exceptions() > uncaught) {
        w.failed_request_id = x.request_id;
      }
    }
  } note_failure{w, x};
  x.route = w.gw.metrics().none_route();
  RequestParser parser;
  parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
  parser.body_limit(limits.max_body_bytes == 0 ? std::numeric_limits<std::uint64_t>::max()
                                               : limits.max_body_bytes);
  w.metrics.in_flight.add(1);
  struct InFlight {
    observability::Cell& cell;
    ~InFlight() { cell.add(-1); }
  } in_flight{w.metrics.in_flight};

  c.deadline.arm(limits.header_timeout);
  auto ec = co_await read_head(c.stream, c.buffer, c.deadline, parser);
  if (ec) {
    unsigned status = status_for_parse_error(ec);
    if (status == 0) {
      co_return false;  // timeout, reset or EOF: nothing to answer
    }
    x.client_ip = c.peer_ip;
    x.request_id = ghttp::thread_id_generator().request_id();
    log_security(w, x, "malformed_request", ec.message());
    co_await send_local_reply(w, c, x, status, true, ec.message());
    finish_exchange(w, x, "-", "-", "");
    co_return false;
  }

  const auto& req = parser.get();
  x.identity = identify_client(w.cfg, c.peer_ip, req);
  x.client_ip = std::move(x.identity.forwarding.client_ip);
  // The scheme the client used: the nearest trusted proxy's word, else this connection's.
  x.tls =
      x.identity.forwarding.proto.empty() ? c.stream.tls() : x.identity.forwarding.proto == "https";
  fill_request_id(w, x, parser);
  {
    auto origin = req[http::field::origin];
    x.origin = {origin.data(), origin.size()};
  }
  x.client_keep_alive = req.keep_alive() && !w.draining;
  std::string_view method(req.method_string().data(), req.method_string().size());
  std::string_view target(req.target().data(), req.target().size());
  auto ua = req[http::field::user_agent];
  std::string_view user_agent(ua.data(), ua.size());
  bool body_pending = parser.chunked() || parser.content_length().value_or(0) > 0;

  std::string why;
  if (unsigned status = validate_head(w.cfg.limits, parser, why); status != 0) {
    log_security(w, x, "malformed_request", why);
    co_await send_local_reply(w, c, x, status, true, why);
    finish_exchange(w, x, method, target, user_agent);
    co_return false;
  }
  // The one path every rule below judges, and the upstream serves (paths.forward).
  x.raw_path = ghttp::target_path(target);
  x.canonical = ghttp::canonical_target_path(target, w.cfg.paths.merge_slashes);
  if (!x.canonical.reason.empty()) {
    log_security(w, x, "malformed_request", x.canonical.reason);
    co_await send_local_reply(w, c, x, 400, true, x.canonical.reason);
    finish_exchange(w, x, method, target, user_agent);
    co_return false;
  }
  x.path = x.canonical.view(x.raw_path);

  bool keep = false;
  const auto path = x.path;
  bool is_get = req.method() == http::verb::get || req.method() == http::verb::head;
  bool head_only = req.method() == http::verb::head;
  if (is_get &&
      (path == health.live_path || path == health.ready_path || path == health.summary_path)) {
    if (path == health.live_path) {
      co_await send_json(w, c, x, 200, R"({"status":"ok"})", head_only);
    } else if (path == health.ready_path) {
      auto& h = w.gw.health();
      bool ready = h.ready() && !w.draining;
      co_await send_json(w, c, x, ready ? 200 : 503,
                         ready ? R"({"status":"ready"})"
                               : (h.draining() || w.draining ? R"({"status":"draining"})"
                                                             : R"({"status":"unavailable"})"),
                         head_only);
    } else {
      auto s = w.gw.health().summary();
      co_await send_json(w, c, x, observability::Health::is_down(s) ? 503 : 200,
                         observability::Health::to_json_text(s), head_only);
    }
    keep = x.client_keep_alive && !body_pending;
  } else if (!admitted_by(w.cfg.access, x.client_ip)) {
    log_security(w, x, "access_denied", "access rules");
    co_await send_local_reply(w, c, x, 403, body_pending);
    keep = x.client_keep_alive;
  } else if (w.gw.cors().enabled() && req.method() == http::verb::options &&
             co_await answer_preflight(w, c, x, req, body_pending)) {
    keep = x.client_keep_alive;
  } else if (auto route = w.gw.router().match(method, path, [&] {
               auto h = req[http::field::host];
               return std::string_view(h.data(), h.size());
             }())) {
    x.route = *route;
    x.route_name = w.cfg.routes[*route].name.c_str();
    if (!admitted_by(w.cfg.routes[*route].access, x.client_ip)) {
      log_security(w, x, "access_denied", "route access rules");
      co_await send_local_reply(w, c, x, 403, body_pending);
      finish_exchange(w, x, method, target, user_agent);
      co_return x.client_keep_alive && !w.draining;
    }
    // x.tls, not the connection: behind a trusted proxy that terminated TLS, redirecting a
    // request that came in over https would loop.
    if (w.cfg.listen_tls && w.cfg.listen_tls->redirect_http && !x.tls) {
      auto h = req[http::field::host];
      if (core::host_without_port({h.data(), h.size()}).empty()) {
        // No host to redirect to (HTTP/1.0 without Host, or an empty Host).
        co_await send_local_reply(w, c, x, 400, true, "https redirect needs a Host header");
        finish_exchange(w, x, method, target, user_agent);
        co_return false;
      }
      co_await send_https_redirect(w, c, x, {h.data(), h.size()}, target, head_only);
      finish_exchange(w, x, method, target, user_agent);
      co_return x.client_keep_alive && !body_pending && !w.draining;
    }
    auto& limiter = w.gw.rate_limiter();
    if (limiter.route_limited(*route)) {
      filters::rate_limit::RequestInfo info{*route, x.client_ip, path, &request_header, &req};
      if (!w.store_client) {
        limiter.check(info, w.index, x.limit);
      } else if (limiter.begin(info, w.index, x.limit, true)) {
        // Shared store: the request waits for Redis (bounded by redis.timeout; at once while the
        // circuit breaker is open), then falls back as configured.
        if (co_await w.store_client->decide(x.limit.store)) {
          limiter.finish(info, w.index, x.limit, true);
        } else {
          switch (w.cfg.rate_limit.on_store_failure) {
            case filters::rate_limit::OnStoreFailure::local:
              if (!limiter.refused_by_local_ban(info, w.index, x.limit)) {
                limiter.decide_local(x.limit);
                limiter.finish(info, w.index, x.limit, false);
              }
              break;
            case filters::rate_limit::OnStoreFailure::allow:
              limiter.fail_open(x.limit);
              break;
            case filters::rate_limit::OnStoreFailure::deny:
              limiter.fail_closed(x.limit);
              break;
          }
        }
      }
    }
    struct Release {
      filters::rate_limit::RateLimiter& limiter;
      filters::rate_limit::Verdict& verdict;
      ~Release() {
        if (!verdict.held.empty()) {
          limiter.release(verdict);
        }
      }
    } release{limiter, x.limit};
    if (x.limit.allowed()) {
      keep = co_await proxy_request(w, c, parser, x);
    } else {
      keep = co_await reject(w, c, x, body_pending, head_only);
    }
  } else {
    co_await send_local_reply(w, c, x, 404, body_pending);
    keep = x.client_keep_alive;
  }
  finish_exchange(w, x, method, target, user_agent);
  co_return keep && !w.draining;
}

// TLS: handshake within the header timeout. Failures (scanners, plain HTTP on the TLS port, bad
// clients) are counted, not logged one by one.
net::awaitable<bool> tls_handshake(Worker& w, ClientConn& c) {
  auto ctx = w.gw.tls_context();
  c.stream.start_tls(*ctx);
  c.deadline.arm(w.cfg.limits.header_timeout);
  auto [ec] = co_await c.stream.tls_stream().async_handshake(ssl::stream_base::server, nothrow);
  if (ec) {
    w.metrics.tls_handshake_errors.add(1);
    co_return false;
  }
  co_return true;
}

net::awaitable<void> run_session(Worker& w, tcp::socket socket, bool tls) {
  std::string peer = peer_address(socket);
  if (w.cfg.proxy_protocol) {
    // Before admission: connection caps count the client the header names, not the balancer.
    auto client = co_await read_proxy_header(w, socket, peer);
    if (!client) {
      w.metrics.proxy_protocol_errors.add(1);
      error_code ignore;
      socket.close(ignore);
      co_return;
    }
    peer = std::move(*client);
  }
  if (!w.gw.admit_connection(peer)) {
    // Over a connection cap: close at once (RST-free FIN), before any allocation for it.
    w.metrics.connections_rejected.add(1);
    error_code ignore;
    socket.close(ignore);
    co_return;
  }
  struct Admitted {
    Gateway& gw;
    const std::string& peer;
    ~Admitted() { gw.release_connection(peer); }
  } admitted{w.gw, peer};
  ClientConn c(std::move(socket));
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
  c.peer_ip = peer;
  const auto& limits = w.cfg.limits;
  bool open = !tls || co_await tls_handshake(w, c);

  while (open) {
    if (c.buffer.size() == 0) {
      // Idle: wait for bytes without holding heap buffers.
      c.buffer.shrink_to_fit();
      c.scratch = std::string();
      c.upstream_head = std::string();
      if (w.draining && !c.first_request) {
        break;  // a connection accepted during the drain still gets its one request
      }
      c.idle = true;
      c.deadline.arm(c.first_request ? limits.header_timeout : limits.idle_timeout);
      auto [ec, n] = co_await c.stream.async_read_some(net::buffer(c.idle_bytes), nothrow);
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
    }
    c.first_request = false;

    if (!co_await serve_one(w, c)) {
      break;
    }
  }

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

}  // namespace gatehouse::server
