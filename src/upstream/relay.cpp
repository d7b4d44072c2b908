#include "upstream/relay.hpp"

#include <algorithm>
#include <array>
#include <limits>

namespace gatehouse::upstream {

using namespace io;  // NOLINT(google-build-using-namespace)
namespace net = io::net;
namespace beast = io::beast;
namespace http = io::http;

namespace {

constexpr std::string_view kCrlf = "\r\n";
constexpr std::string_view kLastChunk = "0\r\n\r\n";

// "1a2b\r\n" for a chunk of `n` bytes; returns the length written into `out` (>= 19 bytes).
std::size_t chunk_size_line(char* out, std::size_t n) {
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

// The buffers for one piece of a body: the head (until sent), then `data`, chunk-framed when
// `chunked` (empty data writes no chunk; `last` appends the terminating zero chunk).
std::array<net::const_buffer, 5> framed_piece(const std::string* head, char* size_line,
                                              net::const_buffer data, bool chunked, bool last) {
  bool frame = chunked && data.size() > 0;
  std::size_t hl = frame ? chunk_size_line(size_line, data.size()) : 0;
  return {head != nullptr ? net::buffer(*head) : net::const_buffer(), net::buffer(size_line, hl),
          data, frame ? net::buffer(kCrlf) : net::const_buffer(),
          (chunked && last) ? net::buffer(kLastChunk) : net::const_buffer()};
}

// How long the next body read may take: the body must keep an average of min_body_rate after a
// grace of header_timeout from the start of the request (Apache mod_reqtimeout's MinRate), and
// no single read may stall longer than idle_timeout.
Clock::duration body_read_timeout(const config::Limits& l, Clock::time_point start,
                                  std::uint64_t bytes_in) {
  if (l.min_body_rate == 0) {
    return l.idle_timeout;
  }
  auto earned = std::chrono::microseconds(bytes_in * 1'000'000 / l.min_body_rate);
  auto due = start + l.header_timeout + earned;
  auto left = due - Clock::now();
  return std::clamp<Clock::duration>(left, Clock::duration::zero(), l.idle_timeout);
}

struct Poll {
  bool ready = false;  // body bytes are buffered (or the read failed: ec says how)
  error_code ec;
};

// Reads what the upstream already sent, without waiting. Needs the socket in non-blocking mode
// (Cluster sets it).
Poll poll_upstream(Connection& u) {
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

std::span<const char> as_span(net::const_buffer b) {
  return {static_cast<const char*>(b.data()), b.size()};
}

}  // namespace

void ReplayBuffer::keep(std::span<const char> piece) {
  if (overflowed_) {
    return;
  }
  std::size_t held = lease_ ? size_ : data_.size();
  if (piece.size() > cap_ - held) {
    overflowed_ = true;
    data_.clear();
    data_.shrink_to_fit();
    lease_.reset();
    size_ = 0;
    return;
  }
  if (pool_ != nullptr) {
    if (!lease_) {
      lease_.emplace(pool_->take());
      leased_ = lease_->data();
    }
    std::copy(piece.begin(), piece.end(), leased_ + size_);
    size_ += piece.size();
    return;
  }
  data_.append(piece.data(), piece.size());
}

net::awaitable<SendOutcome> send_request(BufferPool& buffers, ClientSide c, Connection& u,
                                         Clock::duration upstream_timeout, const std::string& head,
                                         RequestBody body) {
  SendOutcome out;
  auto record = [&](const WriteResult& w) {
    out.ec = w.ec;
    out.wrote_any = out.wrote_any || w.bytes > 0;
  };
  auto fail = [&](SendResult r) {
    out.result = r;
    return out;
  };
  auto& p = body.parser;
  if (body.framing == Framing::none) {
    record(co_await write_all(u.socket, u.deadline, upstream_timeout, net::buffer(head)));
    co_return fail(out.ec ? SendResult::upstream_failed : SendResult::ok);
  }
  if (body.resend != nullptr) {
    // The body is here whole: one write, re-framed as a single chunk when the head says chunked.
    char line[24];
    auto data = net::buffer(body.resend->data().data(), body.resend->data().size());
    auto bufs = framed_piece(&head, line, data, body.framing == Framing::chunked, true);
    record(co_await write_all(u.socket, u.deadline, upstream_timeout, bufs));
    co_return fail(out.ec ? SendResult::upstream_failed : SendResult::ok);
  }
  auto keep = [&](net::const_buffer piece) {
    if (body.replay != nullptr) {
      body.replay->keep(as_span(piece));
    }
  };
  auto lease = buffers.take();
  bool head_sent = false;
  if (body.framing == Framing::length) {
    std::uint64_t remaining = *p.content_length();
    while (remaining > 0) {
      net::const_buffer piece;
      std::size_t from_buffer = 0;
      if (c.buffer.size() > 0) {
        from_buffer = static_cast<std::size_t>(std::min<std::uint64_t>(remaining, c.buffer.size()));
        piece = net::buffer(c.buffer.data().data(), from_buffer);
      } else {
        c.deadline.arm(body_read_timeout(body.limits, body.request_start, body.bytes_in));
        auto [ec, n] = co_await c.stream.async_read_some(
            net::buffer(lease.data(),
                        static_cast<std::size_t>(std::min<std::uint64_t>(remaining, lease.size()))),
            nothrow);
        if (ec) {
          co_return fail(c.deadline.expired() ? SendResult::too_slow : SendResult::client_failed);
        }
        piece = net::buffer(lease.data(), n);
      }
      keep(piece);
      std::array<net::const_buffer, 2> bufs{head_sent ? net::const_buffer() : net::buffer(head),
                                            piece};
      head_sent = true;
      record(co_await write_all(u.socket, u.deadline, upstream_timeout, bufs));
      remaining -= piece.size();
      body.bytes_in += piece.size();
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
    auto piece = co_await read_chunked_piece(
        c.stream, c.buffer, c.deadline,
        body_read_timeout(body.limits, body.request_start, body.bytes_in), p, lease.data(),
        lease.size());
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
    auto data = net::buffer(lease.data(), piece.size);
    keep(data);
    auto bufs = framed_piece(head_sent ? nullptr : &head, size_line, data, true, piece.done);
    head_sent = true;
    body.bytes_in += piece.size;
    record(co_await write_all(u.socket, u.deadline, upstream_timeout, bufs));
    if (out.ec) {
      co_return fail(SendResult::upstream_failed);
    }
    if (piece.done) {
      co_return out;
    }
  }
}

net::awaitable<SendResult> read_request_body(BufferPool& buffers, ClientSide c, RequestBody body) {
  auto& p = body.parser;
  auto lease = buffers.take();
  auto keep = [&](net::const_buffer piece) { body.replay->keep(as_span(piece)); };
  if (body.framing == Framing::length) {
    std::uint64_t remaining = *p.content_length();
    while (remaining > 0) {
      if (c.buffer.size() > 0) {
        auto n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining, c.buffer.size()));
        keep(net::buffer(c.buffer.data().data(), n));
        c.buffer.consume(n);
        remaining -= n;
        body.bytes_in += n;
        continue;
      }
      c.deadline.arm(body_read_timeout(body.limits, body.request_start, body.bytes_in));
      auto [ec, n] = co_await c.stream.async_read_some(
          net::buffer(lease.data(),
                      static_cast<std::size_t>(std::min<std::uint64_t>(remaining, lease.size()))),
          nothrow);
      if (ec) {
        co_return c.deadline.expired() ? SendResult::too_slow : SendResult::client_failed;
      }
      keep(net::buffer(lease.data(), n));
      remaining -= n;
      body.bytes_in += n;
    }
    co_return body.replay->overflowed() ? SendResult::too_large : SendResult::ok;
  }
  for (;;) {
    auto piece = co_await read_chunked_piece(
        c.stream, c.buffer, c.deadline,
        body_read_timeout(body.limits, body.request_start, body.bytes_in), p, lease.data(),
        lease.size());
    if (piece.ec) {
      if (piece.ec == http::error::body_limit) {
        co_return SendResult::too_large;
      }
      if (c.deadline.expired()) {
        co_return SendResult::too_slow;
      }
      co_return piece.ec.category() == http::make_error_code(http::error::bad_chunk).category()
          ? SendResult::bad_body
          : SendResult::client_failed;
    }
    keep(net::buffer(lease.data(), piece.size));
    body.bytes_in += piece.size;
    if (body.replay->overflowed()) {
      co_return SendResult::too_large;
    }
    if (piece.done) {
      co_return SendResult::ok;
    }
  }
}

net::awaitable<error_code> hold_response_body(Connection& u, std::size_t length,
                                              Clock::duration timeout) {
  while (u.buffer.size() < length) {
    u.deadline.arm(timeout);
    auto [ec, n] =
        co_await u.socket.async_read_some(u.buffer.prepare(length - u.buffer.size()), nothrow);
    if (ec) {
      co_return u.deadline.expired() ? timeout_error() : ec;
    }
    u.buffer.commit(n);
  }
  co_return error_code{};
}

void reset_response_parser(std::optional<ResponseParser>& rp, bool head_request) {
  rp.emplace();
  rp->header_limit(64 * 1024);
  rp->body_limit(std::numeric_limits<std::uint64_t>::max());
  rp->skip(head_request);
}

net::awaitable<error_code> read_response_head(Connection& u, std::optional<ResponseParser>& rp,
                                              Clock::duration timeout, bool head_request) {
  for (;;) {
    u.deadline.arm(timeout);
    auto ec = co_await read_head(u.socket, u.buffer, u.deadline, *rp);
    if (ec) {
      co_return ec;
    }
    auto code = rp->get().result_int();
    if (code >= 100 && code < 200 && code != 101) {
      reset_response_parser(rp, head_request);
      continue;
    }
    co_return error_code{};
  }
}

TryFailure classify_head_failure(const error_code& ec) {
  if (ec == beast::error::timeout) {
    return TryFailure::timed_out;
  }
  if (ec == net::error::eof || ec == net::error::connection_reset ||
      ec == http::error::end_of_stream || ec == net::error::broken_pipe ||
      ec == http::error::partial_message) {
    return TryFailure::closed;
  }
  return TryFailure::other;
}

ResponseFraming response_framing(const ResponseParser& rp, bool head_request, bool client_http10) {
  unsigned status = rp.get().result_int();
  Framing in;
  if (head_request || status == 204 || status == 304) {
    in = Framing::none;
  } else if (rp.chunked()) {
    in = Framing::chunked;
  } else if (rp.content_length()) {
    in = Framing::length;
  } else {
    in = Framing::until_close;
  }
  Framing out = in;
  if (in == Framing::chunked || in == Framing::until_close) {
    out = client_http10 ? Framing::until_close : Framing::chunked;
  }
  return {in, out};
}

net::awaitable<RelayResult> relay_response(BufferPool& buffers, ClientSide c, Connection& u,
                                           const std::string& head, ResponseBody body) {
  auto& rp = body.parser;
  const Framing in = body.framing.in;
  const bool chunked_out = body.framing.out == Framing::chunked;
  // Each read waits at most upstream_timeout, and never past the route's deadline.
  auto read_timeout = [&]() -> Clock::duration {
    if (body.deadline == Clock::time_point::max()) {
      return body.upstream_timeout;
    }
    return std::clamp<Clock::duration>(body.deadline - Clock::now(), Clock::duration::zero(),
                                       body.upstream_timeout);
  };
  RelayResult result;
  char size_line[24];
  auto send = [&](net::const_buffer data, bool last) -> net::awaitable<bool> {
    if (body.observer && (data.size() > 0 || last)) {  // not for a head sent alone
      body.observer(as_span(data), last);
    }
    auto bufs =
        framed_piece(result.head_sent ? nullptr : &head, size_line, data, chunked_out, last);
    if ((co_await write_all(c.stream, c.deadline, body.client_timeout, bufs)).ec) {
      co_return false;
    }
    result.head_sent = true;
    body.bytes_out += data.size();
    co_return true;
  };
  auto upstream_failed = [&](error_code ec) {
    result.upstream_ec = ec;
    result.client_ok = !result.head_sent;  // a cut-off body can only be shown by closing
    return result;
  };

  if (in == Framing::none) {
    result.client_ok = co_await send(net::const_buffer(), true);
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
    auto lease = buffers.take();
    for (;;) {
      auto piece = co_await read_chunked_piece(u.socket, u.buffer, u.deadline, read_timeout(), rp,
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
        lease.emplace(buffers.take());
      }
      u.deadline.arm(read_timeout());
      auto want = static_cast<std::size_t>(std::min<std::uint64_t>(remaining, lease->size()));
      auto [ec, n] = co_await u.socket.async_read_some(net::buffer(lease->data(), want), nothrow);
      if (ec) {
        if (until_close && ec == net::error::eof) {
          result.client_ok = co_await send(net::const_buffer(), true);
          result.client_ok = result.client_ok && chunked_out;
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

}  // namespace gatehouse::upstream
