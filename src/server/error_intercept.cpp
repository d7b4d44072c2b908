#include "server/error_intercept.hpp"

#include "filters/errors/config.hpp"
#include "http/error_reply.hpp"
#include "http/json.hpp"
#include "http/redaction.hpp"
#include "server/sentry_reporter.hpp"

namespace gatehouse::server {
namespace {

namespace errors = filters::errors;

std::string_view sv(beast::string_view s) {
  return {s.data(), s.size()};
}

struct BodyRead {
  bool complete = false;  // the whole body was read (the connection may be reused)
  error_code ec;
};

// Reads the body of `rp` into `out`, stopping once `out` holds more than `cap` bytes.
net::awaitable<BodyRead> read_capped_body(BufferPool& buffers, upstream::Connection& u,
                                          ResponseParser& rp, Framing framing,
                                          Clock::duration timeout, std::size_t cap,
                                          std::string& out) {
  if (framing == Framing::none) {
    co_return BodyRead{true, {}};
  }
  auto lease = buffers.take();
  if (framing == Framing::chunked) {
    while (out.size() <= cap) {
      auto piece = co_await read_chunked_piece(u.socket, u.buffer, u.deadline, timeout, rp,
                                               lease.data(), lease.size());
      if (piece.ec) {
        co_return BodyRead{false, piece.ec};
      }
      out.append(lease.data(), piece.size);
      if (piece.done) {
        co_return BodyRead{true, {}};
      }
    }
    co_return BodyRead{false, {}};
  }
  const bool until_close = framing == Framing::until_close;
  std::uint64_t remaining = until_close ? ~std::uint64_t{0} : rp.content_length().value_or(0);
  while (remaining > 0 && out.size() <= cap) {
    if (u.buffer.size() > 0) {
      auto n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining, u.buffer.size()));
      out.append(static_cast<const char*>(u.buffer.data().data()), n);
      u.buffer.consume(n);
      remaining -= until_close ? 0 : n;
      continue;
    }
    u.deadline.arm(timeout);
    auto want = static_cast<std::size_t>(std::min<std::uint64_t>(remaining, lease.size()));
    auto [ec, n] = co_await u.socket.async_read_some(net::buffer(lease.data(), want), nothrow);
    if (ec) {
      if (until_close && ec == net::error::eof) {
        co_return BodyRead{true, {}};  // a close-delimited body ends here
      }
      co_return BodyRead{false, u.deadline.expired() ? timeout_error() : ec};
    }
    out.append(lease.data(), n);
    remaining -= until_close ? 0 : n;
  }
  co_return BodyRead{remaining == 0, {}};
}

void log_intercepted(Worker& w, const Context& x, unsigned status, std::string_view content_type,
                     std::string_view body, std::size_t log_cap, const BodyRead& read) {
  if (!w.gw.logs().should_log(spdlog::level::err)) {
    return;
  }
  std::string extra = "\"request_id\":";
  ghttp::append_json_string(extra, x.request_id);
  extra += ",\"upstream\":";
  ghttp::append_json_string(extra, x.upstream_address);
  fmt::format_to(std::back_inserter(extra), ",\"status\":{},\"method\":", status);
  ghttp::append_json_string(extra, x.method);
  extra += ",\"path\":";
  ghttp::append_json_string(extra, ghttp::redact_target(x.target));
  extra += ",\"content_type\":";
  ghttp::append_json_string(extra, content_type);
  bool truncated = body.size() > log_cap || !read.complete;
  extra += ",\"body\":";
  ghttp::append_json_string(extra, ghttp::redact_text(body.substr(0, log_cap)));
  fmt::format_to(std::back_inserter(extra), ",\"body_truncated\":{}", truncated);
  if (read.ec) {
    extra += ",\"error\":";
    ghttp::append_json_string(extra, read.ec.message());
  }
  w.gw.logs().error(spdlog::level::err, "upstream error intercepted", extra);
}

// The upstream's Retry-After (delay-seconds or an HTTP date), kept on the JSON error.
void keep_retry_after(const ResponseParser& rp, std::string& headers) {
  auto v = sv(rp.get()[http::field::retry_after]);
  if (v.empty() || v.size() > 64) {
    return;
  }
  for (char ch : v) {
    if (ch < 0x20 || ch == 0x7f) {
      return;
    }
  }
  headers += "Retry-After: ";
  headers += v;
  headers += "\r\n";
}

}  // namespace

net::awaitable<InterceptOutcome> intercept_upstream_error(
    Worker& w, ClientConn& c, FilterChain& chain, Context& x, upstream::Connection& u,
    ResponseParser& rp, Framing body_framing, Clock::duration upstream_timeout, bool head_request) {
  const auto& s = errors::settings(x.cfg);
  const unsigned status = rp.get().result_int();
  auto content_type = sv(rp.get()[http::field::content_type]);
  if (!errors::should_intercept(s, status, head_request, content_type)) {
    co_return InterceptOutcome{};
  }
  std::string body;
  auto read = co_await read_capped_body(w.buffers, u, rp, body_framing, upstream_timeout,
                                        errors::kMaxReadBytes, body);
  log_intercepted(w, x, status, content_type, body, s.log_body, read);
  if (status >= 500) {
    report_upstream_failure(w, x, observability::sentry::Failure::intercepted, status,
                            "upstream error page (" + std::to_string(status) + ") from " +
                                x.upstream_address + " replaced",
                            body, read.complete);
  }

  InterceptOutcome out;
  out.replied = true;
  out.upstream_reusable =
      read.complete && !read.ec && body_framing != Framing::until_close && rp.keep_alive();
  auto& r = x.reply;
  r.status = status;
  r.body =
      ghttp::error_body(ghttp::LocalReply{status, "upstream_error",
                                          "The upstream service failed to handle the request."},
                        x.request_id, false);
  r.head_only = false;
  r.close = false;
  r.error = false;  // an upstream answer, counted as such, not as gatehouse's own error
  r.headers.clear();
  keep_retry_after(rp, r.headers);
  co_await send_reply(w, c, chain, x);
  out.client_keep_alive = x.client_keep_alive;
  co_return out;
}

}  // namespace gatehouse::server
