#pragma once
// What one request's filters share: the request head and what the session learned about it (client
// identity, canonical path), the route, the reply a filter decided on, and the outcome the access
// log reports. One per request, in the session's per-request coroutine frame; filter-private state
// lives in the filters (pipeline/chain.hpp), not here.
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>

#include "config/config.hpp"
#include "core/path_params.hpp"
#include "http/canonical_path.hpp"
#include "http/fields.hpp"
#include "pipeline/client_identity.hpp"
#include "pipeline/request.hpp"

namespace gatehouse::pipeline {

// What a filter's decode_headers (or resume) says about the request.
enum class Next : std::uint8_t {
  Continue,  // the next filter, then the upstream
  Reply,     // the filter answered: Context::reply holds the answer; the chain stops
  Suspend,   // the filter waits for I/O: the session co_awaits Chain::resume()
};

// A reply gatehouse makes itself: a filter's answer, or an error of the session or the proxy.
// The session writes it; every filter's encode_headers adds its lines on the way out.
struct LocalReply {
  unsigned status = 0;
  std::string body;        // JSON (empty for 204 and for HEAD's head)
  std::string headers;     // complete extra lines ("Location: ...\r\n", preflight lines)
  bool head_only = false;  // HEAD, or a reply without a body
  bool close = false;      // the connection closes after it (bad request, body left unread)
  bool error = false;      // an error reply: counted in gatehouse_local_replies_total
  // A stored response (the response cache, issue 14): sent with its own status, header lines and
  // body instead of the JSON defaults; `stored_owner` keeps the lines and the body alive.
  std::shared_ptr<const void> stored_owner;
  std::string_view stored_lines;
  std::string_view stored_body;
};

struct Context {
  static constexpr std::size_t kNoRoute = std::numeric_limits<std::size_t>::max();

  const config::Config& cfg;
  Clock::time_point start;
  // The request head (null while it failed to parse) and views into it.
  const RequestParser* parser = nullptr;
  const Request* request = nullptr;
  std::string_view method;
  std::string_view target;
  std::string_view user_agent;
  std::string_view origin;  // Origin header, for CORS
  std::string_view host;
  bool head_request = false;  // HEAD: replies carry no body
  bool body_pending = false;  // a body follows the head (a local reply then closes)
  // Who is asking: the connection's peer (or the PROXY header's client), the believed client
  // (trusted proxies applied, not hashed) and what the forwarding fields said.
  std::string_view peer_ip;
  std::string client_ip;
  ClientIdentity identity;
  // The client used https: the nearest trusted proxy's scheme, else this connection's.
  bool tls = false;
  std::string request_id;
  // The path every rule judges (canonical; empty until the target was accepted), the path as
  // received (both point into the parser or into `canonical`), and the canonicalisation result.
  std::string_view path;
  std::string_view raw_path;
  ghttp::CanonicalPath canonical;
  // The route (index into cfg.routes), once matched.
  std::size_t route = kNoRoute;
  const config::Route* route_config = nullptr;
  // issue 15 (routes): what the route's match.path template captured (views into `path`).
  core::PathParams path_params;
  LocalReply reply;  // valid when a filter returned Next::Reply

  // The outcome, for logs and metrics.
  unsigned status = 0;
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  double upstream_ms = -1;
  std::string upstream_address;
  std::string upstream_error;     // set when the upstream cut the response off after its head
  bool client_keep_alive = true;  // what the client asked for and we can honour
  // issue 14: the response cache's verdict for the access log (HIT, MISS, STALE, BYPASS); null
  // on routes without a cache.
  const char* cache = nullptr;
  // The whole request body when it arrived with the head (Content-Length, already buffered);
  // empty otherwise. Set only for routes whose cache key includes the body.
  std::string_view buffered_body;
  // A filter that needs the body before it decides (the cache keys on it) sets this to the body's
  // length and suspends: the session reads the body into its buffer first, sets buffered_body,
  // then resumes the chain.
  std::size_t buffer_body = 0;

  Context(const config::Config& c, Clock::time_point s) : cfg(c), start(s) {}

  // A request header's value; empty when absent (the first line when repeated).
  std::string_view header(std::string_view name) const {
    if (request == nullptr) {
      return {};
    }
    auto v = (*request)[beast::string_view(name.data(), name.size())];
    return {v.data(), v.size()};
  }
  const char* route_name() const {
    return route_config != nullptr ? route_config->name.c_str() : nullptr;
  }
  bool routed() const { return route != kNoRoute; }
};

// The head of the response on its way to the client, as encode_headers sees it: its status, the
// upstream's header fields when proxied, and the lines filters append.
struct ResponseHead {
  unsigned status = 0;
  const Fields* upstream = nullptr;  // null for gatehouse's own replies
  std::string& lines;                // complete "Name: value\r\n" lines are appended here
  // Proxied: lines[fields_begin, fields_end) are the upstream's fields as forwarded (hop-by-hop,
  // framing and stripped fields left out); the response cache stores them.
  std::size_t fields_begin = 0;
  std::size_t fields_end = 0;

  // A response the cache answers: the upstream's fields as stored ("Name: value\r\n" lines).
  // Such a reply is local (no upstream now) but carries the app's fields, which filters treat as
  // they treated them on the miss.
  std::string_view stored_lines;

  bool local() const { return upstream == nullptr; }
  bool stored() const { return !stored_lines.empty(); }
  // Whether the upstream response (or the stored one) has this field (case-insensitive); false
  // for gatehouse's own replies.
  bool upstream_has(std::string_view name) const {
    if (upstream != nullptr) {
      return upstream->find(beast::string_view(name.data(), name.size())) != upstream->end();
    }
    for (std::string_view rest = stored_lines; !rest.empty();) {
      const auto eol = rest.find("\r\n");
      const auto line = rest.substr(0, eol);
      const auto colon = line.find(':');
      if (colon == name.size() && ghttp::iequals(line.substr(0, colon), name)) {
        return true;
      }
      if (eol == std::string_view::npos) {
        break;
      }
      rest.remove_prefix(eol + 2);
    }
    return false;
  }
};

}  // namespace gatehouse::pipeline
