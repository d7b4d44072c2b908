#pragma once
// The bytes of one proxied exchange: the request body streamed up as it arrives from the client,
// the response head read (interim 1xx dropped), and the response body streamed down piece by piece
// with its framing re-stated for the client (chunked for HTTP/1.1, close-delimited for HTTP/1.0;
// none for HEAD, 204 and 304). Heads are built by the caller: the relay only moves bytes.
//
// Two seams for what comes next:
// - BodyObserver sees every response body piece before it is written to the client (the filter
//   chain's encode_data: cache, token counting). Unset, it costs one null check per piece.
// - ReplayBuffer keeps the request body pieces sent upstream, up to a cap, so a retry can send
//   them again (issue 12's buffer_body). send_request fills it when given one.
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "config/config.hpp"
#include "io/buffer_pool.hpp"
#include "io/client_stream.hpp"
#include "io/http_io.hpp"
#include "pipeline/request.hpp"
#include "upstream/connection.hpp"
#include "upstream/retry_policy.hpp"

namespace gatehouse::upstream {

// The client's side of the exchange, as the relay uses it.
struct ClientSide {
  io::ClientStream& stream;
  io::Deadline& deadline;
  boost::beast::flat_buffer& buffer;  // client bytes already read past the request head
};

// Called with every response body piece, in order, before it is written to the client; the last
// call has `last` set (with an empty piece when the end is only known at EOF or there is no body).
// Not called once the upstream failed: the exchange's completion sees the error instead. A
// function pointer and a context rather than std::function: no allocation, nothing to destroy.
struct BodyObserver {
  void (*fn)(void* ctx, std::span<const char> piece, bool last) = nullptr;
  void* ctx = nullptr;
  explicit operator bool() const { return fn != nullptr; }
  void operator()(std::span<const char> piece, bool last) const { fn(ctx, piece, last); }
};

// The request body as sent upstream, kept while it fits in `cap` bytes. Once a piece would pass
// the cap the kept bytes are dropped and the body is no longer replayable. With a pool and a cap
// that fits one transfer buffer (retry.buffer_body's default, 64 KiB), the bytes go into a buffer
// leased from the worker's pool: keeping a body costs no allocation once the pool is warm.
class ReplayBuffer {
 public:
  explicit ReplayBuffer(std::size_t cap, io::BufferPool* pool = nullptr)
      : cap_(cap), pool_(cap <= io::BufferPool::kSize ? pool : nullptr) {}
  void keep(std::span<const char> piece);
  bool overflowed() const { return overflowed_; }
  // The body so far; whole once send_request returned ok. Empty when overflowed.
  std::span<const char> data() const {
    return lease_ ? std::span<const char>(leased_, size_)
                  : std::span<const char>(data_.data(), data_.size());
  }
  void clear() {
    data_.clear();
    size_ = 0;
    overflowed_ = false;
  }

 private:
  std::size_t cap_;
  io::BufferPool* pool_;
  std::optional<io::BufferPool::Lease> lease_;
  char* leased_ = nullptr;  // lease_->data()
  std::size_t size_ = 0;    // bytes in lease_
  std::string data_;        // without a pool
  bool overflowed_ = false;
};

enum class SendResult { ok, upstream_failed, client_failed, too_large, bad_body, too_slow };

struct SendOutcome {
  SendResult result = SendResult::ok;
  bool wrote_any = false;  // some byte of the request reached the upstream's socket
  io::error_code ec;       // the upstream write error, for upstream_failed
};

// What streaming the request body needs besides the two connections.
struct RequestBody {
  pipeline::RequestParser& parser;
  io::Framing framing;  // none, length or chunked (as re-stated in the upstream head)
  // Pacing of body reads from the client (see body_read_timeout in relay.cpp).
  const config::Limits& limits;
  Clock::time_point request_start;
  std::uint64_t& bytes_in;         // counts the body bytes read from the client
  ReplayBuffer* replay = nullptr;  // keeps what was sent, for a retry; null: nothing kept
  // A body kept whole (a retry's replay, or buffer_request): sent from here, the client is not
  // read. Null: the body comes from the client.
  const ReplayBuffer* resend = nullptr;
};

// Sends `head` and then the request body, read from the client as it arrives (already buffered
// bytes first). The head goes out with the first body piece.
io::net::awaitable<SendOutcome> send_request(io::BufferPool& buffers, ClientSide client,
                                             Connection& upstream, Clock::duration upstream_timeout,
                                             const std::string& head, RequestBody body);

// Reads the whole request body from the client into `body.replay` before any upstream connection
// is taken (buffer_request): a slow upload then costs the upstream nothing. `ok` or a client-side
// SendResult (client_failed, too_large, bad_body, too_slow).
io::net::awaitable<SendResult> read_request_body(io::BufferPool& buffers, ClientSide client,
                                                 RequestBody body);

// A response parser ready for the next head (interim responses need a new one each).
void reset_response_parser(std::optional<io::ResponseParser>& parser, bool head_request);

// Reads the response head, dropping interim 1xx responses (101 is kept: it is final).
io::net::awaitable<io::error_code> read_response_head(Connection& upstream,
                                                      std::optional<io::ResponseParser>& parser,
                                                      Clock::duration timeout, bool head_request);

// How a failed read of the response head counts for the retry policy.
TryFailure classify_head_failure(const io::error_code& ec);

// Reads a length-delimited response body of `length` bytes whole into `upstream.buffer` (where
// relay_response takes it from), each read bounded by `timeout`: the invalid_json check holds it.
io::net::awaitable<io::error_code> hold_response_body(Connection& upstream, std::size_t length,
                                                      Clock::duration timeout);

struct ResponseFraming {
  io::Framing in;   // how the upstream delimits the body
  io::Framing out;  // how the client is sent it
};
ResponseFraming response_framing(const io::ResponseParser& parser, bool head_request,
                                 bool client_http10);

struct RelayResult {
  bool client_ok = true;
  bool upstream_reusable = false;
  bool head_sent = false;      // false with upstream_ec set: nothing reached the client, 502 is due
  io::error_code upstream_ec;  // the upstream failed (reset, EOF, timeout) before the body ended
};

struct ResponseBody {
  io::ResponseParser& parser;  // holds the head read by read_response_head
  ResponseFraming framing;
  Clock::duration upstream_timeout;  // per read
  Clock::duration client_timeout;    // per write
  std::uint64_t& bytes_out;          // counts the body bytes written to the client
  BodyObserver observer;
  // The route's deadline: reads stop there too (the connection is cut, as for a timeout).
  Clock::time_point deadline = Clock::time_point::max();
};

// Sends `head` (the client's response head) and streams the body after it. The head goes out with
// the first body piece when that piece is already here, else alone at once (an SSE stream before
// its first event, an LLM's slow first token). Returns whether each side can be reused, and how
// the upstream failed if it did.
io::net::awaitable<RelayResult> relay_response(io::BufferPool& buffers, ClientSide client,
                                               Connection& upstream, const std::string& head,
                                               ResponseBody body);

}  // namespace gatehouse::upstream
