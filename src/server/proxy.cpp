// Upstream side of a request: builds the upstream head, streams the request body as it
// arrives, reads the response head and streams the response body back chunk by chunk.
#include <array>

#include "http/fields.hpp"
#include "http/json.hpp"
#include "http/request_id.hpp"
#include "pipeline/client_identity.hpp"
#include "server/exchange.hpp"

namespace gatehouse::server {
namespace {

constexpr std::string_view kCrlf = "\r\n";
constexpr std::string_view kLastChunk = "0\r\n\r\n";

std::string_view sv(beast::string_view s) {
  return {s.data(), s.size()};
}

// Field names listed by every Connection header of a message.
template <class Fields>
std::vector<std::string_view> connection_tokens(const Fields& fields) {
  std::vector<std::string_view> tokens;
  auto range = fields.equal_range(http::field::connection);
  for (auto it = range.first; it != range.second; ++it) {
    for (auto t : ghttp::split_tokens(sv(it->value()))) {
      tokens.push_back(t);
    }
  }
  return tokens;
}

bool skip_forwarded_field(const std::string_view name, http::field f,
                          std::span<const std::string_view> conn_tokens,
                          const std::string& request_id_header) {
  switch (f) {
    case http::field::content_length:
    case http::field::expect:
      return true;
    default:
      break;
  }
  // Forwarding headers are rebuilt below from what was believed; `Forwarded` is never sent, so
  // the app cannot read a client's own claim there.
  return ghttp::is_hop_by_hop(name) || ghttp::iequals(name, "X-Forwarded-For") ||
         ghttp::iequals(name, "X-Forwarded-Proto") || ghttp::iequals(name, "X-Forwarded-Host") ||
         ghttp::iequals(name, "Forwarded") || ghttp::iequals(name, request_id_header) ||
         ghttp::iequals(name, "traceparent") ||
         (!conn_tokens.empty() && ghttp::named_by_connection(name, conn_tokens));
}

}  // namespace

void build_upstream_head(const config::Config& cfg, std::string_view peer_ip, bool tls,
                         const ClientIdentity& id, const RequestParser& p, std::string_view path,
                         std::string_view request_id, Framing framing, std::string& out) {
  const auto& req = p.get();
  auto tokens = connection_tokens(req);
  out.clear();
  out += sv(req.method_string());
  out += ' ';
  auto target = sv(req.target());
  out += path;
  out += target.substr(ghttp::target_path(target).size());  // the query, unchanged
  out += " HTTP/1.1\r\n";
  for (const auto& f : req) {
    auto name = sv(f.name_string());
    if (skip_forwarded_field(name, f.name(), tokens, cfg.request_id.header)) {
      continue;
    }
    out += name;
    out += ": ";
    out += sv(f.value());
    out += kCrlf;
  }
  // From a trusted peer: its whole chain (every line, or Forwarded's for= nodes) plus the peer,
  // and the nearest proxy's scheme and host; from anyone else only what this hop saw.
  out += "X-Forwarded-For: ";
  if (id.forwarding.trusted_peer) {
    auto chain = ghttp::upstream_forwarded_for(id.lines, cfg.forwarded_headers);
    if (!chain.empty()) {
      out += chain;
      out += ", ";
    }
  }
  out += peer_ip;
  out += kCrlf;
  out += "X-Forwarded-Proto: ";
  out += !id.forwarding.proto.empty() ? std::string_view(id.forwarding.proto)
                                      : std::string_view(tls ? "https" : "http");
  out += kCrlf;
  auto host = !id.forwarding.host.empty() ? std::string_view(id.forwarding.host)
                                          : sv(req[http::field::host]);
  if (!host.empty()) {
    out += "X-Forwarded-Host: ";
    out += host;
    out += kCrlf;
  }
  out += cfg.request_id.header;
  out += ": ";
  out += request_id;
  out += "\r\ntraceparent: ";
  out += ghttp::next_traceparent(sv(req["traceparent"]), request_id, ghttp::thread_id_generator());
  out += kCrlf;
  if (framing == Framing::length) {
    out += "Content-Length: ";
    out += std::to_string(*p.content_length());
    out += kCrlf;
  } else if (framing == Framing::chunked) {
    out += "Transfer-Encoding: chunked\r\n";
  }
  out += kCrlf;
}

namespace {

// The client's head for the upstream response in `rp`: hop-by-hop and framing fields dropped (and
// those a filter strips), `framing` re-stated, then every filter's lines (encode_headers).
void build_client_head(FilterChain& chain, const ResponseParser& rp, Context& x, Framing framing,
                       bool client_http10, bool keep_alive, std::string& out) {
  const auto& res = rp.get();
  auto tokens = connection_tokens(res);
  out.clear();
  out += "HTTP/1.1 ";
  out += std::to_string(res.result_int());
  out += ' ';
  auto reason = sv(res.reason());
  out += reason.empty() ? sv(http::obsolete_reason(res.result())) : reason;
  out += kCrlf;
  for (const auto& f : res) {
    auto name = sv(f.name_string());
    if (f.name() == http::field::content_length || ghttp::is_hop_by_hop(name) ||
        chain.strips(name) || (!tokens.empty() && ghttp::named_by_connection(name, tokens))) {
      continue;
    }
    out += name;
    out += ": ";
    out += sv(f.value());
    out += kCrlf;
  }
  if (framing == Framing::length || (framing == Framing::none && rp.content_length())) {
    // HEAD and 304 keep the length the full response would have had.
    if (res.result_int() != 204 && !(res.result_int() >= 100 && res.result_int() < 200)) {
      out += "Content-Length: ";
      out += std::to_string(*rp.content_length());
      out += kCrlf;
    }
  } else if (framing == Framing::chunked) {
    out += "Transfer-Encoding: chunked\r\n";
  }
  ResponseHead head{res.result_int(), &res, out};
  chain.encode_headers(x, head);
  if (!keep_alive && !client_http10) {
    out += "Connection: close\r\n";
  } else if (keep_alive && client_http10) {
    out += "Connection: keep-alive\r\n";
  }
  out += kCrlf;
}

// The buffers for one piece of a body: the head (until sent), then `data`, chunk-framed when
// `chunked` (empty data writes no chunk; `last` appends the terminating zero chunk).
std::array<net::const_buffer, 5> framed_piece(const std::string* head, char* size_line,
                                              net::const_buffer data, bool chunked, bool last) {
  bool frame = chunked && data.size() > 0;
  std::size_t hl = frame ? chunk_header(size_line, data.size()) : 0;
  return {head != nullptr ? net::buffer(*head) : net::const_buffer(), net::buffer(size_line, hl),
          data, frame ? net::buffer(kCrlf) : net::const_buffer(),
          (chunked && last) ? net::buffer(kLastChunk) : net::const_buffer()};
}

enum class SendResult { ok, upstream_failed, client_failed, too_large, bad_body, too_slow };

struct SendOutcome {
  SendResult result = SendResult::ok;
  bool wrote_any = false;  // some byte of the request reached the upstream's socket
  error_code ec;           // the upstream write error, for upstream_failed

  void record(const WriteResult& w) {
    ec = w.ec;
    wrote_any = wrote_any || w.bytes > 0;
  }
};

// How long the next body read may take: the body must keep an average of min_body_rate after a
// grace of header_timeout from the start of the request (Apache mod_reqtimeout's MinRate), and
// no single read may stall longer than idle_timeout.
Clock::duration body_read_timeout(const config::Limits& l, const Context& x) {
  if (l.min_body_rate == 0) {
    return l.idle_timeout;
  }
  auto earned = std::chrono::microseconds(x.bytes_in * 1'000'000 / l.min_body_rate);
  auto due = x.start + l.header_timeout + earned;
  auto left = due - Clock::now();
  return std::clamp<Clock::duration>(left, Clock::duration::zero(), l.idle_timeout);
}

// Streams the request head and body to the upstream. The head goes out with the first body piece.
net::awaitable<SendOutcome> send_request(Worker& w, ClientConn& c, RequestParser& p,
                                         upstream::Connection& u, Framing framing,
                                         const std::string& head, Context& x) {
  const auto& limits = w.cfg.limits;
  const auto& ucfg = w.pools[w.cfg.routes[x.route].upstream_index]->config();
  SendOutcome out;
  auto fail = [&](SendResult r) {
    out.result = r;
    return out;
  };
  if (framing == Framing::none) {
    out.record(co_await write_all(u.socket, u.deadline, ucfg.timeout, net::buffer(head)));
    co_return fail(out.ec ? SendResult::upstream_failed : SendResult::ok);
  }
  auto lease = w.buffers.take();
  bool head_sent = false;
  if (framing == Framing::length) {
    std::uint64_t remaining = *p.content_length();
    while (remaining > 0) {
      net::const_buffer piece;
      std::size_t from_buffer = 0;
      if (c.buffer.size() > 0) {
        from_buffer = static_cast<std::size_t>(std::min<std::uint64_t>(remaining, c.buffer.size()));
        piece = net::buffer(c.buffer.data().data(), from_buffer);
      } else {
        c.deadline.arm(body_read_timeout(limits, x));
        auto [ec, n] = co_await c.stream.async_read_some(
            net::buffer(lease.data(),
                        static_cast<std::size_t>(std::min<std::uint64_t>(remaining, lease.size()))),
            nothrow);
        if (ec) {
          co_return fail(c.deadline.expired() ? SendResult::too_slow : SendResult::client_failed);
        }
        piece = net::buffer(lease.data(), n);
      }
      std::array<net::const_buffer, 2> bufs{head_sent ? net::const_buffer() : net::buffer(head),
                                            piece};
      head_sent = true;
      out.record(co_await write_all(u.socket, u.deadline, ucfg.timeout, bufs));
      remaining -= piece.size();
      x.bytes_in += piece.size();
      c.buffer.consume(from_buffer);
      if (out.ec) {
        co_return fail(SendResult::upstream_failed);
      }
    }
    co_return out;
  }
  // Chunked: decode with the parser (it enforces body_limit), re-frame each piece as one chunk.
  char size_line[24];
  for (;;) {
    auto piece =
        co_await read_chunked_piece(c.stream, c.buffer, c.deadline, body_read_timeout(limits, x), p,
                                    lease.data(), lease.size());
    if (piece.ec) {
      if (piece.ec == http::error::body_limit) {
        co_return fail(SendResult::too_large);
      }
      if (c.deadline.expired()) {
        co_return fail(SendResult::too_slow);
      }
      co_return fail(piece.ec.category() == http::make_error_code(http::error::bad_chunk).category()
                         ? SendResult::bad_body
                         : SendResult::client_failed);
    }
    auto bufs = framed_piece(head_sent ? nullptr : &head, size_line,
                             net::buffer(lease.data(), piece.size), true, piece.done);
    head_sent = true;
    x.bytes_in += piece.size;
    out.record(co_await write_all(u.socket, u.deadline, ucfg.timeout, bufs));
    if (out.ec) {
      co_return fail(SendResult::upstream_failed);
    }
    if (piece.done) {
      co_return out;
    }
  }
}

struct RelayResult {
  bool client_ok = true;
  bool upstream_reusable = false;
  bool head_sent = false;  // false with upstream_ec set: nothing reached the client, 502 is due
  error_code upstream_ec;  // the upstream failed (reset, EOF, timeout) before the body ended
};

struct Poll {
  bool ready = false;  // body bytes are buffered (or the read failed: ec says how)
  error_code ec;
};

// Reads what the upstream already sent, without waiting. When the body is not there yet (an SSE
// stream before its first event, an LLM's slow first token) the head must go out alone at once;
// when it is, head and body leave in one write. Needs the socket in non-blocking mode (Pool).
Poll poll_upstream(upstream::Connection& u) {
  if (u.buffer.size() > 0) {
    return {true, {}};
  }
  error_code ec;
  auto n = u.socket.read_some(u.buffer.prepare(16384), ec);
  if (ec == net::error::would_block || ec == net::error::try_again) {
    return {false, {}};
  }
  if (ec) {
    return {true, ec};
  }
  u.buffer.commit(n);
  return {true, {}};
}

// Streams the response body from upstream to client after the head. The head goes out with the
// first body piece when that piece is already here, else alone at once. Returns whether each side
// can be reused, and how the upstream failed if it did.
net::awaitable<RelayResult> relay_response(Worker& w, ClientConn& c, FilterChain& chain,
                                           upstream::Connection& u, ResponseParser& rp, Framing in,
                                           Framing out, const std::string& head, Context& x,
                                           Clock::duration up_timeout) {
  const auto client_timeout = w.cfg.limits.idle_timeout;
  RelayResult result;
  char size_line[24];
  auto send = [&](net::const_buffer data, bool last) -> net::awaitable<bool> {
    if constexpr (FilterChain::kObservesBody) {
      chain.encode_data(x, {static_cast<const char*>(data.data()), data.size()}, last);
    }
    auto bufs = framed_piece(result.head_sent ? nullptr : &head, size_line, data,
                             out == Framing::chunked, last);
    if ((co_await write_all(c.stream, c.deadline, client_timeout, bufs)).ec) {
      co_return false;
    }
    result.head_sent = true;
    x.bytes_out += data.size();
    co_return true;
  };
  auto upstream_failed = [&](error_code ec) {
    result.upstream_ec = ec;
    result.client_ok = !result.head_sent;  // a cut-off body can only be shown by closing
    return result;
  };

  if (in == Framing::none) {
    result.client_ok = co_await send(net::const_buffer(), false);
    result.upstream_reusable = rp.keep_alive();
    co_return result;
  }
  bool until_close = in == Framing::until_close;
  std::uint64_t remaining = until_close ? ~std::uint64_t{0} : rp.content_length().value_or(0);
  if (in == Framing::length && remaining == 0) {
    result.client_ok = co_await send(net::const_buffer(), true);
    result.upstream_reusable = rp.keep_alive();
    co_return result;
  }
  auto poll = poll_upstream(u);
  if (poll.ec && !(until_close && poll.ec == net::error::eof)) {
    co_return upstream_failed(poll.ec);
  }
  if (!poll.ready && !co_await send(net::const_buffer(), false)) {
    result.client_ok = false;
    co_return result;
  }

  if (in == Framing::chunked) {
    auto lease = w.buffers.take();
    for (;;) {
      auto piece = co_await read_chunked_piece(u.socket, u.buffer, u.deadline, up_timeout, rp,
                                               lease.data(), lease.size());
      if (piece.ec) {
        co_return upstream_failed(piece.ec);
      }
      if (!co_await send(net::buffer(lease.data(), piece.size), piece.done)) {
        result.client_ok = false;
        co_return result;
      }
      if (piece.done) {
        result.upstream_reusable = rp.keep_alive();
        co_return result;
      }
    }
  }

  // Length-delimited or close-delimited: no parser needed, bytes go straight through.
  std::optional<BufferPool::Lease> lease;
  while (remaining > 0) {
    std::size_t from_buffer = 0;
    net::const_buffer piece;
    if (u.buffer.size() > 0) {
      from_buffer = static_cast<std::size_t>(std::min<std::uint64_t>(remaining, u.buffer.size()));
      piece = net::buffer(u.buffer.data().data(), from_buffer);
    } else {
      if (!lease) {
        lease.emplace(w.buffers.take());
      }
      u.deadline.arm(up_timeout);
      auto want = static_cast<std::size_t>(std::min<std::uint64_t>(remaining, lease->size()));
      auto [ec, n] = co_await u.socket.async_read_some(net::buffer(lease->data(), want), nothrow);
      if (ec) {
        if (until_close && ec == net::error::eof) {
          result.client_ok = co_await send(net::const_buffer(), true);
          result.client_ok = result.client_ok && out == Framing::chunked;
          co_return result;
        }
        co_return upstream_failed(u.deadline.expired() ? timeout_error() : ec);
      }
      piece = net::buffer(lease->data(), n);
    }
    if (!until_close) {
      remaining -= piece.size();
    }
    bool ok = co_await send(piece, remaining == 0);
    u.buffer.consume(from_buffer);
    if (!ok) {
      result.client_ok = false;
      co_return result;
    }
  }
  result.upstream_reusable = rp.keep_alive();
  co_return result;
}

// RFC 9110 section 9.2.2: requests that may be sent again without changing what they do.
bool idempotent(http::verb m) {
  switch (m) {
    case http::verb::get:
    case http::verb::head:
    case http::verb::options:
    case http::verb::trace:
    case http::verb::put:
    case http::verb::delete_:
      return true;
    default:
      return false;
  }
}

void log_upstream_failure(Worker& w, const Context& x, std::string_view message,
                          const error_code& ec) {
  if (!w.gw.logs().should_log(spdlog::level::warn)) {
    return;
  }
  std::string extra = "\"request_id\":";
  ghttp::append_json_string(extra, x.request_id);
  extra += ",\"upstream\":";
  ghttp::append_json_string(extra, x.upstream_address);
  extra += ",\"error\":";
  ghttp::append_json_string(extra, ec.message());
  if (x.status != 0) {
    fmt::format_to(std::back_inserter(extra), ",\"status\":{},\"bytes_out\":{}", x.status,
                   x.bytes_out);
  }
  w.gw.logs().error(spdlog::level::warn, message, extra);
}

}  // namespace

net::awaitable<bool> proxy_request(Worker& w, ClientConn& c, FilterChain& chain, RequestParser& p,
                                   Context& x) {
  const auto& route = w.cfg.routes[x.route];
  auto& pool = *w.pools[route.upstream_index];
  const auto& ucfg = pool.config();
  const auto& req = p.get();
  const bool client_http10 = req.version() < 11;
  const bool is_head = req.method() == http::verb::head;

  Framing req_framing = p.chunked()                          ? Framing::chunked
                        : p.content_length().value_or(0) > 0 ? Framing::length
                                                             : Framing::none;
  const bool has_body = req_framing != Framing::none;
  bool expect_continue = has_body && ghttp::iequals(sv(req[http::field::expect]), "100-continue");

  std::string& head = c.upstream_head;
  build_upstream_head(w.cfg, c.peer_ip, c.stream.tls(), x.identity, p, upstream_path(w.cfg, x),
                      x.request_id, req_framing, head);

  std::optional<ResponseParser> rp;
  auto reset_parser = [&] {
    rp.emplace();
    rp->header_limit(64 * 1024);
    rp->body_limit(std::numeric_limits<std::uint64_t>::max());
    rp->skip(is_head);
  };
  reset_parser();

  auto& stats = w.metrics.upstreams[route.upstream_index];
  // A reused keep-alive connection the upstream had closed is tried once more on a fresh one, but
  // only when a replay cannot run the request twice: nothing was written, or the method is
  // idempotent (RFC 9110 9.2.2), or the client marked it with an Idempotency-Key. A request with a
  // body is never replayed (the body is not kept).
  const bool replayable = idempotent(req.method()) || req.count("Idempotency-Key") > 0;
  std::unique_ptr<upstream::Connection> u;
  Clock::time_point upstream_start{};
  for (int attempt = 0;; ++attempt) {
    auto acquired = co_await pool.acquire(attempt > 0, x.request_id);
    if (!acquired.conn) {
      stats.failures.add();
      co_await send_local_reply(w, c, chain, x, acquired.status, has_body, acquired.detail);
      co_return x.client_keep_alive;
    }
    u = std::move(acquired.conn);
    x.upstream_address = pool.address(u->target);
    upstream_start = Clock::now();
    if (expect_continue) {
      expect_continue = false;
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      if ((co_await write_all(c.stream, c.deadline, w.cfg.limits.idle_timeout,
                              net::buffer(kContinue)))
              .ec) {
        co_return false;
      }
    }
    auto sent = co_await send_request(w, c, p, *u, req_framing, head, x);
    if (sent.result == SendResult::client_failed) {
      co_return false;
    }
    if (sent.result == SendResult::too_slow) {
      // The upstream has part of a body: that connection is not reusable (u is dropped below).
      co_await send_local_reply(w, c, chain, x, 408, true, "request body too slow");
      co_return false;
    }
    if (sent.result == SendResult::too_large || sent.result == SendResult::bad_body) {
      co_await send_local_reply(w, c, chain, x, sent.result == SendResult::too_large ? 413 : 400,
                                true);
      co_return false;
    }
    // Read the response head, skipping interim 1xx responses.
    error_code ec = sent.ec;
    while (!ec) {
      u->deadline.arm(ucfg.timeout);
      ec = co_await read_head(u->socket, u->buffer, u->deadline, *rp);
      if (ec) {
        break;
      }
      auto code = rp->get().result_int();
      if (code >= 100 && code < 200 && code != 101) {
        reset_parser();
        continue;
      }
      break;
    }
    if (!ec) {
      break;
    }
    bool timed_out = ec == beast::error::timeout;
    bool closed = ec == net::error::eof || ec == net::error::connection_reset ||
                  ec == http::error::end_of_stream || ec == net::error::broken_pipe ||
                  ec == http::error::partial_message;
    bool stale = u->reused && !has_body && closed && (replayable || !sent.wrote_any);
    if (stale && attempt == 0) {
      stats.retries.add();
      reset_parser();
      continue;
    }
    if (timed_out) {
      stats.timeouts.add();
    }
    stats.failures.add();
    std::string detail = (timed_out ? "no response head from " : "bad response from ") +
                         x.upstream_address + ": " + ec.message();
    log_upstream_failure(w, x, timed_out ? "upstream timeout" : "upstream failed", ec);
    x.upstream_ms =
        std::chrono::duration<double, std::milli>(Clock::now() - upstream_start).count();
    co_await send_local_reply(w, c, chain, x, timed_out ? 504 : 502,
                              has_body && sent.result != SendResult::ok, detail);
    co_return x.client_keep_alive;
  }

  const auto& res = rp->get();
  unsigned status = res.result_int();
  Framing in;
  if (is_head || status == 204 || status == 304) {
    in = Framing::none;
  } else if (rp->chunked()) {
    in = Framing::chunked;
  } else if (rp->content_length()) {
    in = Framing::length;
  } else {
    in = Framing::until_close;
  }
  Framing out = in;
  if (in == Framing::chunked || in == Framing::until_close) {
    out = client_http10 ? Framing::until_close : Framing::chunked;
  }
  bool keep = x.client_keep_alive && !w.draining && out != Framing::until_close;
  x.client_keep_alive = keep;
  x.status = status;
  build_client_head(chain, *rp, x, out, client_http10, keep, c.scratch);
  auto relay = co_await relay_response(w, c, chain, *u, *rp, in, out, c.scratch, x, ucfg.timeout);
  x.upstream_ms = std::chrono::duration<double, std::milli>(Clock::now() - upstream_start).count();
  if (relay.upstream_ec) {
    bool timed_out = relay.upstream_ec == beast::error::timeout;
    if (timed_out) {
      stats.timeouts.add();
    }
    stats.failures.add();
    if (!relay.head_sent) {
      // Nothing reached the client yet: it gets a clear 502/504 instead of an empty reply.
      log_upstream_failure(w, x, "upstream failed before the response body", relay.upstream_ec);
      x.status = 0;
      co_await send_local_reply(
          w, c, chain, x, timed_out ? 504 : 502, false,
          "response from " + x.upstream_address + " cut off: " + relay.upstream_ec.message());
      co_return x.client_keep_alive;
    }
    // The head is out: closing the connection is the only way to show the client the truncation.
    log_upstream_failure(w, x, "upstream response cut off", relay.upstream_ec);
    x.upstream_error = relay.upstream_ec.message();
    co_return false;
  }
  if (relay.upstream_reusable && in != Framing::until_close && !w.draining) {
    pool.release(std::move(u));
  }
  co_return keep&& relay.client_ok;
}

}  // namespace gatehouse::server
