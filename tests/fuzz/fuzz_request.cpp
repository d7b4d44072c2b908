// libFuzzer target: raw client bytes through the request path of a session, over an in-memory
// stream (boost::beast::test::stream) instead of a socket.
//
// The session itself (run_session/serve_one) is bound to ClientStream over a tcp::socket and to a
// Worker, so this drives the same pipeline one level down, with the functions serve_one and
// proxy_request use: read_head with the real RequestParser and the default limits, the status a
// parse error maps to, validate_head, routing, build_upstream_head, then the body as the proxy
// reads it (Content-Length bytes, or read_chunked_piece until the last chunk), and the next
// pipelined request on the same buffer while the client asks for keep-alive.
//
// Oracles beyond sanitizers:
//  - the head forwarded upstream must re-parse cleanly (strict Beast parser), with no bare CR/LF,
//    NUL or obs-fold, the same method and target, and exactly the framing we re-stated;
//  - the outcome (statuses, forwarded heads, decoded bodies) must not depend on how the bytes
//    are split into reads: every input runs twice, whole and in small reads, and both runs must
//    agree;
//  - the canonical path is a fixed point (canonicalising it again changes nothing) and routing
//    agrees with matching the decoded prefixes against the decoded path (first match, in order):
//    the property that makes percent-encoding useless for walking around a route.
#include <boost/beast/_experimental/test/stream.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/router.hpp"
#include "http/canonical_path.hpp"
#include "http/headers.hpp"
#include "http/request_id.hpp"
#include "server/exchange.hpp"
#include "pipeline/request_checks.hpp"

namespace {

using namespace gatehouse::server;
namespace config = gatehouse::config;

// At most this many pipelined requests per input (the keep-alive loop).
constexpr int kMaxRequests = 32;
// The split-invariance check is skipped at and above this size: read_chunked_piece's
// kMaxChunkMetaBytes bound is then reached at different points depending on the split.
constexpr std::size_t kSplitCheckMax = kMaxChunkMetaBytes;

[[noreturn]] void fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_request: %s\n%s\n", what, detail.c_str());
  std::abort();
}

// One upstream, routes whose prefixes hold reserved, escaped and non-ASCII bytes before a
// catch-all, every limit at its default, and a trusted proxy range: the peer is in it for inputs of
// odd length and outside it otherwise, so both X-Forwarded-* paths run.
const config::Config& fuzz_config() {
  static const config::Config cfg = config::load_config_string(
      "upstreams: {app: {targets: [\"127.0.0.1:9\"]}}\n"
      "trusted_proxies: [\"10.0.0.0/8\"]\n"
      "routes:\n"
      "  - {name: gen, match: {path_prefix: /api/gen}, upstream: app}\n"
      "  - {name: cafe, match: {path_prefix: \"/caf\xc3\xa9/\"}, upstream: app}\n"
      "  - {name: params, match: {path_prefix: \"/x;y=1@:\"}, upstream: app}\n"
      "  - {name: percent, match: {path_prefix: \"/p%25q%3f\"}, upstream: app}\n"
      "  - {name: space, match: {path_prefix: \"/sp%20[\"}, upstream: app}\n"
      "  - {name: tilde, match: {path_prefix: \"/%7Eu\"}, upstream: app}\n"
      "  - {name: default, upstream: app}\n",
      "fuzz_request.yaml");
  return cfg;
}

std::string decoded(std::string_view s) {
  std::string out;
  if (!ghttp::percent_decode(s, out, false)) {
    fail("a canonical path or prefix does not decode", std::string(s));
  }
  return out;
}

// The route by decoded prefixes against the decoded path, first match in file order.
std::optional<std::size_t> route_by_decoding(const config::Config& cfg, std::string_view path) {
  auto d = decoded(path);
  for (std::size_t i = 0; i < cfg.routes.size(); ++i) {
    if (d.starts_with(decoded(cfg.routes[i].match.path_prefix))) {
      return i;
    }
  }
  return std::nullopt;
}

std::string_view sv(beast::string_view s) {
  return {s.data(), s.size()};
}

// The forwarded head with the traceparent line removed (its parent id is random per call).
std::string without_traceparent(const std::string& head) {
  auto at = head.find("\r\ntraceparent: ");
  if (at == std::string::npos) {
    fail("no traceparent in the forwarded head", head);
  }
  auto end = head.find("\r\n", at + 2);
  return head.substr(0, at) + head.substr(end);
}

// What an upstream would make of the forwarded head.
void check_forwarded_head(const std::string& head, const RequestParser& original,
                          std::string_view expected_target, Framing framing) {
  for (std::size_t i = 0; i < head.size(); ++i) {
    char c = head[i];
    if (c == '\0') {
      fail("NUL in the forwarded head", head);
    }
    if (c == '\r' && (i + 1 >= head.size() || head[i + 1] != '\n')) {
      fail("bare CR in the forwarded head", head);
    }
    if (c == '\n' && (i == 0 || head[i - 1] != '\r')) {
      fail("bare LF in the forwarded head", head);
    }
    if (c == '\n' && i + 1 < head.size() && (head[i + 1] == ' ' || head[i + 1] == '\t')) {
      fail("obs-fold in the forwarded head", head);
    }
  }
  http::request_parser<http::empty_body> p;
  p.header_limit(std::numeric_limits<std::uint32_t>::max());
  p.body_limit(std::numeric_limits<std::uint64_t>::max());  // the upstream's limit is its own
  error_code ec;
  auto used = p.put(net::buffer(head), ec);
  if (ec || !p.is_header_done() || used != head.size()) {
    fail(("forwarded head does not re-parse: " + ec.message()).c_str(), head);
  }
  const auto& a = original.get();
  const auto& b = p.get();
  if (sv(a.method_string()) != sv(b.method_string()) || sv(b.target()) != expected_target) {
    fail("forwarded request line differs", head);
  }
  if (b.count(http::field::host) > 1 || b.count(http::field::content_length) > 1 ||
      b.count(http::field::transfer_encoding) > 1) {
    fail("duplicate Host or framing field forwarded", head);
  }
  bool ok = false;
  switch (framing) {
    case Framing::none:
      ok = !p.chunked() && !p.content_length() && b.count(http::field::transfer_encoding) == 0;
      break;
    case Framing::length:
      ok = !p.chunked() && p.content_length() == original.content_length();
      break;
    case Framing::chunked:
      ok = p.chunked() && !p.content_length();
      break;
    case Framing::until_close:
      break;
  }
  if (!ok) {
    fail("forwarded framing differs from the decoded one", head);
  }
}

// What happened to each request of the input, in order, for the split-invariance check.
struct Trace {
  std::vector<std::string> events;
};

net::awaitable<void> run_pipeline(beast::test::stream& stream, tcp::socket& socket,
                                  bool trusted_peer, Trace& trace) {
  const auto& cfg = fuzz_config();
  const auto& limits = cfg.limits;
  static const gatehouse::core::Router router(cfg);
  Deadline deadline(socket);  // never swept here: there is no worker
  beast::flat_buffer buffer;
  std::vector<char> lease(16 * 1024);
  const std::string peer = trusted_peer ? "10.1.2.3" : "192.0.2.7";

  for (int n = 0; n < kMaxRequests; ++n) {
    RequestParser parser;
    parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
    parser.body_limit(limits.max_body_bytes == 0 ? std::numeric_limits<std::uint64_t>::max()
                                                 : limits.max_body_bytes);
    deadline.arm(limits.header_timeout);
    auto ec = co_await read_head(stream, buffer, deadline, parser);
    if (ec) {
      trace.events.push_back("head error -> " + std::to_string(status_for_parse_error(ec)) + " " +
                             ec.message());
      co_return;
    }
    std::string why;
    if (unsigned status = validate_head(limits, parser, why); status != 0) {
      trace.events.push_back("rejected " + std::to_string(status) + " " + why);
      co_return;
    }
    const auto& req = parser.get();
    std::string_view method = sv(req.method_string());
    std::string_view target = sv(req.target());
    std::string_view host = sv(req[http::field::host]);
    auto canonical = ghttp::canonical_target_path(target, cfg.paths.merge_slashes);
    if (!canonical.reason.empty()) {
      trace.events.push_back("rejected 400 " + std::string(canonical.reason));
      co_return;
    }
    auto path = canonical.view(ghttp::target_path(target));
    auto again = ghttp::canonical_path(path, cfg.paths.merge_slashes);
    if (!again.reason.empty() || again.changed) {
      fail("the canonical path is not canonical", std::string(path));
    }

    // What serve_one computes from the head before routing.
    auto client_ip = ghttp::client_ip(peer, sv(req["X-Forwarded-For"]), cfg.trusted_proxies);
    auto incoming_id = sv(req[cfg.request_id.header]);
    std::string request_id = ghttp::is_valid_request_id(incoming_id)
                                 ? std::string(incoming_id)
                                 : std::string("0123456789abcdef0123456789abcdef");
    std::string log_line;
    ghttp::append_json_string(log_line, method);
    ghttp::append_json_string(log_line, ghttp::redact_target(target));
    ghttp::append_json_string(log_line, sv(req[http::field::user_agent]));
    ghttp::append_json_string(log_line, client_ip);
    auto route = router.match(method, path, host);
    if (route != route_by_decoding(cfg, path)) {
      fail("routing differs from matching decoded prefixes", std::string(path));
    }
    (void)gatehouse::core::host_without_port(host);

    Framing framing = parser.chunked()                          ? Framing::chunked
                      : parser.content_length().value_or(0) > 0 ? Framing::length
                                                                : Framing::none;
    std::string head;
    build_upstream_head(cfg, peer, false, identify_client(cfg, peer, parser.get()), parser, path,
                        request_id, framing, head);
    std::string expected_target(path);
    expected_target += target.substr(ghttp::target_path(target).size());
    check_forwarded_head(head, parser, expected_target, framing);
    trace.events.push_back((route ? "route " : "404 ") + without_traceparent(head));

    if (framing == Framing::length) {
      std::uint64_t remaining = *parser.content_length();
      std::string body;
      while (remaining > 0) {
        if (buffer.size() > 0) {
          auto from_buffer =
              static_cast<std::size_t>(std::min<std::uint64_t>(remaining, buffer.size()));
          body.append(static_cast<const char*>(buffer.data().data()), from_buffer);
          buffer.consume(from_buffer);
          remaining -= from_buffer;
          continue;
        }
        auto want = static_cast<std::size_t>(std::min<std::uint64_t>(remaining, lease.size()));
        auto [rec, got] = co_await stream.async_read_some(net::buffer(lease.data(), want), nothrow);
        if (rec) {
          trace.events.push_back("body truncated after " + std::to_string(body.size()));
          co_return;
        }
        body.append(lease.data(), got);
        remaining -= got;
      }
      trace.events.push_back("body " + body);
    } else if (framing == Framing::chunked) {
      std::string body;
      for (;;) {
        auto piece = co_await read_chunked_piece(stream, buffer, deadline, limits.idle_timeout,
                                                 parser, lease.data(), lease.size());
        if (piece.size > lease.size()) {
          fail("read_chunked_piece produced more than its buffer", std::to_string(piece.size));
        }
        body.append(lease.data(), piece.size);
        if (piece.ec) {
          // proxy_request: body_limit -> 413, a chunk framing error -> 400, else the client left.
          unsigned status =
              piece.ec == http::error::body_limit ? 413
              : piece.ec.category() == http::make_error_code(http::error::bad_chunk).category()
                  ? 400
                  : 0;
          trace.events.push_back("chunked body error -> " + std::to_string(status) + " " +
                                 piece.ec.message());
          co_return;
        }
        if (piece.done) {
          break;
        }
      }
      if (!parser.is_done()) {
        fail("chunked body reported done before the parser", body);
      }
      trace.events.push_back("chunked body " + body);
    }
    if (!req.keep_alive()) {
      trace.events.push_back("close");
      co_return;
    }
  }
}

Trace run(std::string_view input, std::size_t read_size, bool trusted_peer) {
  net::io_context ioc(1);
  beast::test::stream stream(ioc);
  if (read_size != 0) {
    stream.read_size(read_size);
  }
  stream.append(beast::string_view(input.data(), input.size()));
  stream.close_remote();    // reads past the input end in EOF, as when the client half-closes
  tcp::socket socket(ioc);  // unopened: only for the Deadline
  Trace trace;
  bool finished = false;
  net::co_spawn(
      ioc,
      [&]() -> net::awaitable<void> {
        co_await run_pipeline(stream, socket, trusted_peer, trace);
        finished = true;
      },
      [](std::exception_ptr e) {
        if (e) {
          std::rethrow_exception(e);  // no exceptions on the data path: a finding
        }
      });
  ioc.run();
  if (!finished) {
    fail("the pipeline did not finish (a read waiting forever on a closed stream)",
         std::string(input));
  }
  return trace;
}

std::string describe(const Trace& t) {
  std::string out;
  for (const auto& e : t.events) {
    out += "  [";
    out += e;
    out += "]\n";
  }
  return out;
}

// Beast parses a head on the first put() and, when that needs more, waits until it holds the
// terminating blank line before trying again. An incomplete head whose first bytes are already
// invalid is therefore rejected (400) when it arrives in one read but reported as a truncated
// message at EOF when it trickles in: the client sent no complete request either way and gets
// closed. That difference, on the last request only, is expected.
bool same_outcome(const Trace& whole, const Trace& split) {
  if (whole.events == split.events) {
    return true;
  }
  auto n = whole.events.size();
  if (n == 0 || split.events.size() != n ||
      !std::equal(whole.events.begin(), whole.events.end() - 1, split.events.begin())) {
    return false;
  }
  const auto& w = whole.events.back();
  const auto& s = split.events.back();
  return w.rfind("head error -> 4", 0) == 0 && s.rfind("head error -> 0 partial message", 0) == 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  // The peer alternates between a trusted proxy and an untrusted client.
  bool trusted_peer = (size & 1) != 0;
  Trace whole = run(input, 0, trusted_peer);
  if (size < kSplitCheckMax) {
    // A split that varies with the input, 1 to 8 bytes per read.
    std::size_t step = 1 + (size == 0 ? 0 : data[size - 1] % 8);
    Trace split = run(input, step, trusted_peer);
    if (!same_outcome(whole, split)) {
      fail("outcome depends on how the input is split into reads",
           "read_size " + std::to_string(step) + "\nwhole:\n" + describe(whole) + "split:\n" +
               describe(split));
    }
  }
  return 0;
}
