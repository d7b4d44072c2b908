#pragma once
// Reading HTTP heads and bodies and writing buffers over a stream guarded by a Deadline, shared by
// the client side (src/server) and the upstream side (src/upstream).
#include <cstddef>

#include "http/head_allocator.hpp"
#include "io/deadline.hpp"
#include "io/net.hpp"

namespace gatehouse::io {

// Head fields in blocks from a per-thread cache instead of malloc (http/head_allocator.hpp), like
// pipeline::RequestParser.
using ResponseParser = http::response_parser<http::buffer_body, ghttp::HeadAllocator<char>>;

enum class Framing { none, length, chunked, until_close };

// The time-out error a coroutine reports when its deadline fired.
inline error_code timeout_error() {
  return make_error_code(beast::error::timeout);
}

// Reads until `parser` has a complete head. Bytes past the head stay in `buffer`.
template <class Stream, class Parser>
net::awaitable<error_code> read_head(Stream& socket, beast::flat_buffer& buffer, Deadline& deadline,
                                     Parser& parser) {
  for (;;) {
    if (buffer.size() > 0) {
      error_code ec;
      auto used = parser.put(buffer.data(), ec);
      buffer.consume(used);
      if (!ec && parser.is_header_done()) {
        co_return error_code{};
      }
      if (ec && ec != http::error::need_more) {
        co_return ec;
      }
    }
    auto [ec, n] = co_await socket.async_read_some(buffer.prepare(8192), nothrow);
    if (ec) {
      if (deadline.expired()) {
        co_return timeout_error();
      }
      if (ec == net::error::eof) {
        // A head is never complete at EOF (put_eof() is only for bodies, and asserts got_some()).
        co_return parser.got_some() ? error_code(http::error::partial_message)
                                    : error_code(http::error::end_of_stream);
      }
      co_return ec;
    }
    buffer.commit(n);
  }
}

// Longest chunk-size line (with extensions) or trailer section accepted while decoding.
inline constexpr std::size_t kMaxChunkMetaBytes = 16 * 1024;

struct BodyPiece {
  error_code ec;
  std::size_t size = 0;
  bool done = false;
};

// Beast 1.81 asserts that a last-chunk it is waiting to complete (it needs the end of the trailer
// section) is parsed again with 5 bytes or more, which "0\r\n" and then one byte at a time breaks:
// an abort in builds with assertions (boostorg/beast#2861, found by fuzz_request). After a put()
// that made no progress on a complete last-chunk line, the next put() waits for that many bytes:
// the shortest end of a body ("0\r\n\r\n") is that long, so no outcome changes.
inline constexpr std::size_t kMinLastChunkBytes = 5;

inline bool waiting_for_trailers(const beast::flat_buffer& buffer) {
  std::string_view data(static_cast<const char*>(buffer.data().data()), buffer.size());
  if (data.starts_with("\r\n")) {
    data.remove_prefix(2);  // the end of the previous chunk's data
  }
  return data.starts_with('0') && data.find("\r\n") != std::string_view::npos;
}

// Pulls the next piece of a chunked body, decoded, through `parser` into out[0, cap).
template <class Stream, class Parser>
net::awaitable<BodyPiece> read_chunked_piece(Stream& socket, beast::flat_buffer& buffer,
                                             Deadline& deadline, Clock::duration timeout,
                                             Parser& parser, char* out, std::size_t cap) {
  auto& body = parser.get().body();
  body.data = out;
  body.size = cap;
  // Bytes to have buffered before the next put(): see waiting_for_trailers().
  std::size_t need = 1;
  for (;;) {
    if (buffer.size() >= need) {
      need = 1;
      error_code ec;
      auto used = parser.put(buffer.data(), ec);
      buffer.consume(used);
      std::size_t produced = cap - body.size;
      if (ec == http::error::need_buffer || ec == http::error::need_more) {
        ec = {};
      }
      if (ec) {
        co_return BodyPiece{ec, produced, false};
      }
      if (parser.is_done()) {
        co_return BodyPiece{{}, produced, true};
      }
      if (produced > 0) {
        co_return BodyPiece{{}, produced, false};
      }
      if (used > 0) {
        continue;
      }
      if (waiting_for_trailers(buffer)) {
        need = kMinLastChunkBytes;
      }
      // No progress with this much buffered: a chunk-size line or trailer section that never
      // ends. Beast bounds neither; we do, or it grows the buffer without limit.
      if (buffer.size() >= kMaxChunkMetaBytes) {
        co_return BodyPiece{make_error_code(http::error::bad_chunk), 0, false};
      }
    }
    deadline.arm(timeout);
    auto [ec, n] = co_await socket.async_read_some(buffer.prepare(16384), nothrow);
    if (ec) {
      co_return BodyPiece{deadline.expired() ? timeout_error() : ec, 0, false};
    }
    buffer.commit(n);
  }
}

struct WriteResult {
  error_code ec;          // the deadline's timeout_error() when it fired
  std::size_t bytes = 0;  // written before the end or the error
};

// Writes every buffer, with the client's or upstream's deadline armed.
template <class Stream, class Buffers>
net::awaitable<WriteResult> write_all(Stream& socket, Deadline& deadline, Clock::duration timeout,
                                      const Buffers& buffers) {
  deadline.arm(timeout);
  auto [ec, n] = co_await net::async_write(socket, buffers, nothrow);
  if (ec && deadline.expired()) {
    ec = timeout_error();
  }
  co_return WriteResult{ec, n};
}

}  // namespace gatehouse::io
