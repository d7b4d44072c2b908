// libFuzzer target: raw client bytes through the request path of a session, over an in-memory
// stream (boost::beast::test::stream) instead of a socket.
//
// The session itself (run_session/serve_one) is bound to ClientStream over a tcp::socket and to a
// Worker, so this drives what serve_one drives, with the real parts: read_head with the real
// RequestParser and the default limits, the status a parse error maps to, the real filter chain
// (server::FilterChain: request id, head checks, health, access rules, CORS, routing, route
// access, TLS redirect, rate limiting with the in-memory store on a fixed clock, security headers,
// access log) built from the real policies, the local reply head it produces, or
// build_upstream_head and the body as the proxy reads it (Content-Length bytes, or
// read_chunked_piece until the last chunk), and the next pipelined request on the same buffer
// while the client asks for keep-alive. Inputs of length 3 mod 4 run with listen_tls.redirect_http.
//
// Oracles beyond sanitizers:
//  - the head forwarded upstream must re-parse cleanly (strict Beast parser), with no bare CR/LF,
//    NUL or obs-fold, the same method and target, and exactly the framing we re-stated;
//  - the outcome (statuses, forwarded heads, decoded bodies) must not depend on how the bytes
//    are split into reads: every input runs twice, whole and in small reads, and both runs must
//    agree;
//  - a local reply's head re-parses as an HTTP response carrying the request id, and every
//    access-log line is valid JSON;
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
#include "filters/registry.hpp"
#include "http/canonical_path.hpp"
#include "http/request_id.hpp"
#include "http/target.hpp"
#include "observability/access_batch.hpp"
#include "ratelimit/clock.hpp"
#include "server/exchange.hpp"
#include "server/filter_chain.hpp"

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
constexpr const char* kFuzzYaml =
    "upstreams: {app: {targets: [\"127.0.0.1:9\"]}}\n"
    "trusted_proxies: [\"10.0.0.0/8\"]\n"
    "cors: {origins: [\"https://app.example\"], credentials: true}\n"
    "rate_limit: {algorithm: sliding_window}\n"
    "routes:\n"
    "  - {name: gen, match: {path_prefix: /api/gen}, upstream: app,\n"
    "     rate_limit: {limits: \"2/minute\", key: ip}, invalidates: [/cached, \"/caf%C3%A9/\"]}\n"
    "  - {name: cafe, match: {path_prefix: \"/caf\xc3\xa9/\"}, upstream: app}\n"
    "  - {name: params, match: {path_prefix: \"/x;y=1@:\"}, upstream: app,\n"
    "     access: {deny: [\"10.0.0.0/8\"]}}\n"
    "  - {name: percent, match: {path_prefix: \"/p%25q%3f\"}, upstream: app,\n"
    "     rate_limit: {limits: \"1/minute\", key: \"header:X-API-Key\"}}\n"
    "  - {name: space, match: {path_prefix: \"/sp%20[\"}, upstream: app}\n"
    "  - {name: tilde, match: {path_prefix: \"/%7Eu\"}, upstream: app}\n"
    "  - {name: cached, match: {path_prefix: /cached}, upstream: app,\n"
    "     cache: {ttl: 60s, key: [method, path, query, \"header:Accept\"]}}\n"
    "  - {name: default, upstream: app}\n";

// One upstream, routes whose prefixes hold reserved, escaped and non-ASCII bytes before a
// catch-all, rate limits keyed by ip and by header, CORS, a route that refuses the trusted range,
// every limit at its default, and a trusted proxy range: the peer is in it for inputs of odd length
// and outside it otherwise, so both X-Forwarded-* paths run. The second config adds
// listen_tls.redirect_http (its certificate and key are only checked for being readable at load; a
// running gateway would parse them).
const config::Config& fuzz_config(bool redirect) {
  static const config::Config plain = config::load_config_string(
      kFuzzYaml, "fuzz_request.yaml", gatehouse::filters::config_sections());
  static const config::Config tls = config::load_config_string(
      std::string(kFuzzYaml) +
          "listen_tls: {address: \"127.0.0.1:8443\", cert: /dev/null, key: "
          "/dev/null, redirect_http: true}\n",
      "fuzz_request_tls.yaml", gatehouse::filters::config_sections());
  return redirect ? tls : plain;
}

std::vector<std::string> route_names(const config::Config& cfg) {
  std::vector<std::string> out;
  for (const auto& r : cfg.routes) {
    out.push_back(r.name);
  }
  return out;
}

// What a worker's filters are built from, with the real policies: one per run, so both runs of
// an input start from the same state. The rate limiter's clock stands still.
struct FuzzGateway {
  explicit FuzzGateway(const config::Config& c)
      : cfg(c),
        metrics(1, route_names(c), {"app"}),
        health(c, 1, "fuzz"),
        router(c),
        cors(gatehouse::filters::cors::settings(c)),
        security_headers(gatehouse::filters::security_headers::settings(c), c.environment),
        limiter(c, 1, std::make_shared<gatehouse::filters::rate_limit::SharedState>(1000),
                std::make_shared<gatehouse::ratelimit::ManualClock>()) {}

  static gatehouse::observability::Logs& logs() {
    static gatehouse::observability::Logs l([] {
      config::LogConfig lc;
      lc.access = "off";
      lc.error = "off";
      lc.security = "off";
      return lc;
    }());
    return l;
  }

  const config::Config& cfg;
  gatehouse::observability::ClientIpHasher hasher{false, ""};
  gatehouse::observability::Metrics metrics;
  std::vector<std::size_t> route_slots = *metrics.route_slots(route_names(cfg));
  gatehouse::observability::AccessBatch batch{logs()};
  gatehouse::observability::Health health;
  bool draining = false;
  gatehouse::core::Router router;
  gatehouse::filters::cors::Cors cors;
  gatehouse::filters::security_headers::SecurityHeaders security_headers;
  gatehouse::filters::rate_limit::RateLimiter limiter;
  std::uint16_t tls_port = 8443;
  gatehouse::observability::SecurityEvents security_events{&logs(), cfg.log};
  // Nothing is ever stored (no upstream answers here): every run of an input sees a cold cache.
  gatehouse::filters::cache::Store cache{{.max_memory = 1 << 20}};
  // routes[].invalidates purges only after a 2xx from the upstream, which never answers here.
  gatehouse::filters::cache_bus::Invalidator invalidator{
      [this](std::string_view prefix) { return cache.purge_prefix(prefix); }};
  FilterServices services{
      .cfg = cfg,
      .worker = 0,
      .logs = logs(),
      .hasher = hasher,
      .metrics = metrics.worker(0),
      .none_route = metrics.none_route(),
      .route_slots = route_slots.data(),
      .access_batch = batch,
      .health = health,
      .draining = draining,
      .router = router,
      .cors = cors,
      .security_headers = security_headers,
      .rate_limiter = limiter,
      .store = nullptr,
      .tls_port = tls_port,
      .security_events = security_events,
      .cache = &cache,
      .invalidator = &invalidator,
      .cache_hooks = {},
  };
};

// `text` with every occurrence of `id` (a request id generated at random) replaced.
std::string without_id(std::string text, std::string_view id, bool generated) {
  if (!generated || id.empty()) {
    return text;
  }
  for (auto at = text.find(id); at != std::string::npos; at = text.find(id, at)) {
    text.replace(at, id.size(), "<id>");
  }
  return text;
}

// The reply head with its Date line removed (it changes every second).
std::string without_date(const std::string& head) {
  auto at = head.find("\r\nDate: ");
  if (at == std::string::npos) {
    fail("no Date in a local reply", head);
  }
  auto end = head.find("\r\n", at + 2);
  return head.substr(0, at) + head.substr(end);
}

// What a client would make of a local reply's head.
void check_reply_head(const std::string& head, const Context& ctx) {
  http::response_parser<http::empty_body> p;
  p.skip(true);
  error_code ec;
  auto used = p.put(net::buffer(head), ec);
  if (ec || !p.is_header_done() || used != head.size()) {
    fail(("local reply head does not parse: " + ec.message()).c_str(), head);
  }
  const auto& res = p.get();
  if (res.result_int() != ctx.reply.status) {
    fail("local reply status differs", head);
  }
  auto id = res[ctx.cfg.request_id.header];
  if (std::string_view(id.data(), id.size()) != ctx.request_id) {
    fail("local reply without its request id", head);
  }
  if (ctx.reply.status != 204 &&
      p.content_length().value_or(~std::uint64_t{0}) != ctx.reply.body.size()) {
    fail("local reply length differs from its body", head);
  }
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

// beast::test::stream initiates through async_result<Token>::return_type, which Asio's deferred
// token (`nothrow`) lacks; like io::ClientStream, this initiates with async_initiate and hands
// the test stream a plain handler.
class FuzzStream {
 public:
  explicit FuzzStream(beast::test::stream& s) : s_(s) {}
  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return net::async_initiate<Token, void(error_code, std::size_t)>(
        [this](auto handler, const MutableBuffers& b) {
          s_.async_read_some(b, std::move(handler));
        },
        token, buffers);
  }

 private:
  beast::test::stream& s_;
};

net::awaitable<void> run_pipeline(FuzzStream& stream, tcp::socket& socket, bool trusted_peer,
                                  bool redirect, Trace& trace) {
  const auto& cfg = fuzz_config(redirect);
  const auto& limits = cfg.limits;
  FuzzGateway gateway(cfg);
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
    // What serve_one does with a head: the context, then the chain.
    const auto& req = parser.get();
    Context ctx(cfg, Clock::now());
    FilterChain chain(gateway.services);
    ctx.peer_ip = peer;
    ctx.parser = &parser;
    ctx.request = &req;
    ctx.identity = gatehouse::pipeline::identify_client(cfg, peer, req);
    ctx.client_ip = std::move(ctx.identity.forwarding.client_ip);
    ctx.tls = ctx.identity.forwarding.proto == "https";
    ctx.method = sv(req.method_string());
    ctx.target = sv(req.target());
    ctx.user_agent = sv(req[http::field::user_agent]);
    ctx.origin = sv(req[http::field::origin]);
    ctx.host = sv(req[http::field::host]);
    ctx.head_request = req.method() == http::verb::head;
    ctx.body_pending = parser.chunked() || parser.content_length().value_or(0) > 0;
    ctx.client_keep_alive = req.keep_alive();
    auto next = chain.decode(ctx);
    if (next == gatehouse::pipeline::Next::Suspend) {
      fail("a filter suspended with the in-memory store", std::string(ctx.target));
    }
    auto incoming_id = sv(req[cfg.request_id.header]);
    const bool generated_id = !ghttp::is_valid_request_id(incoming_id);
    if (!ctx.path.empty()) {
      auto again = ghttp::canonical_path(ctx.path, cfg.paths.merge_slashes);
      if (!again.reason.empty() || again.changed) {
        fail("the canonical path is not canonical", std::string(ctx.path));
      }
    }
    if (ctx.routed() && !ctx.path.empty() && ctx.route != route_by_decoding(cfg, ctx.path)) {
      fail("routing differs from matching decoded prefixes", std::string(ctx.path));
    }
    if (next == gatehouse::pipeline::Next::Reply) {
      std::string head;
      build_reply_head(chain, ctx, head);
      check_reply_head(head, ctx);
      ctx.status = ctx.reply.status;
      chain.on_complete(ctx);
      std::string line;
      gatehouse::filters::access_log::append_access_line(line, ctx, gateway.hasher, 1234);
      if (!nlohmann::json::accept(line)) {
        fail("the access-log line is not JSON", line);
      }
      trace.events.push_back(
          without_id("reply " + without_date(head) + ctx.reply.body, ctx.request_id, generated_id));
      if (!ctx.client_keep_alive) {
        co_return;  // the session closes (a body left unread is never parsed)
      }
      if (ctx.body_pending) {
        fail("keep-alive after a local reply with a body left unread", head);
      }
      continue;
    }
    if (!ctx.routed() || ctx.path.empty()) {
      fail("the chain let an unrouted or unchecked request through", std::string(ctx.target));
    }
    const auto path = ctx.path;
    const auto target = ctx.target;
    const std::string request_id = ctx.request_id;
    std::string log_line;
    gatehouse::filters::access_log::append_access_line(log_line, ctx, gateway.hasher, 1234);
    if (!nlohmann::json::accept(log_line)) {
      fail("the access-log line is not JSON", log_line);
    }
    chain.on_complete(ctx);

    Framing framing = parser.chunked()                          ? Framing::chunked
                      : parser.content_length().value_or(0) > 0 ? Framing::length
                                                                : Framing::none;
    std::string head;
    build_upstream_head(cfg, peer, false, ctx.identity, parser, path, request_id, framing, head);
    std::string expected_target(path);
    expected_target += target.substr(ghttp::target_path(target).size());
    check_forwarded_head(head, parser, expected_target, framing);
    trace.events.push_back(
        without_id("route " + without_traceparent(head), request_id, generated_id));

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

Trace run(std::string_view input, std::size_t read_size, bool trusted_peer, bool redirect) {
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
        FuzzStream fuzz_stream(stream);
        co_await run_pipeline(fuzz_stream, socket, trusted_peer, redirect, trace);
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
  bool redirect = (size & 3) == 3;
  Trace whole = run(input, 0, trusted_peer, redirect);
  if (size < kSplitCheckMax) {
    // A split that varies with the input, 1 to 8 bytes per read.
    std::size_t step = 1 + (size == 0 ? 0 : data[size - 1] % 8);
    Trace split = run(input, step, trusted_peer, redirect);
    if (!same_outcome(whole, split)) {
      fail("outcome depends on how the input is split into reads",
           "read_size " + std::to_string(step) + "\nwhole:\n" + describe(whole) + "split:\n" +
               describe(split));
    }
  }
  return 0;
}
