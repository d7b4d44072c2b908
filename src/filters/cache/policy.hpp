#pragma once
// What the response cache may store and for how long (issue 14): Cache-Control and Vary parsing
// and the storability rules, pure so that they unit-test without sockets.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "filters/cache/config.hpp"

namespace gatehouse::filters::cache {

struct CacheControl {
  bool no_store = false;
  bool no_cache = false;
  bool is_private = false;
  std::optional<std::int64_t> max_age;   // seconds
  std::optional<std::int64_t> s_maxage;  // seconds; wins over max_age for a shared cache
};
// Directives are case-insensitive; unknown ones and malformed numbers are ignored (a bad max-age
// does not lengthen anything).
CacheControl parse_cache_control(std::string_view value);

// Vary: the lower-case field names, sorted and deduplicated; `star` for `Vary: *`.
std::vector<std::string> parse_vary(std::string_view value, bool& star);

// A request's `Cache-Control: no-cache` (or `Pragma: no-cache`): revalidate.
bool request_no_cache(std::string_view cache_control, std::string_view pragma);

// The upstream response as the storability rules see it.
struct ResponseFacts {
  unsigned status = 200;
  std::string_view cache_control;
  bool set_cookie = false;
  bool vary_star = false;
  std::optional<std::uint64_t> content_length;  // none: chunked or until close (a stream)
  std::string_view content_type;
  bool head_request = false;  // a HEAD's response has no body to store
};

enum class Refusal : std::uint8_t {
  none,
  status,      // not in routes[].cache.statuses
  no_store,    // Cache-Control no-store / no-cache / private, or max-age=0
  set_cookie,  // Set-Cookie
  vary_star,   // Vary: *
  streamed,    // no Content-Length (chunked, SSE, until close) or text/event-stream
  too_large,   // Content-Length over max_object
  head,        // a HEAD request's fill
};
const char* refusal_name(Refusal r);

struct Decision {
  Refusal refusal = Refusal::none;
  std::chrono::milliseconds ttl{0};  // fresh this long (when refusal is none)
};
Decision decide(const RouteCache& route, std::size_t max_object, const ResponseFacts& r);

// The header lines a stored entry keeps out of the forwarded ones: Date, Age, Set-Cookie, the
// cache's own header and the request id header (an app that echoes the filler's id must not hand
// it to every later hit, each of which carries its own) are dropped: they are per response.
std::string stored_lines(std::string_view forwarded, std::string_view cache_header,
                         std::string_view request_id_header = {});

// When a stored response stops being fresh and its stale windows end. `age_seconds` is the
// upstream's Age (RFC 9111 4.2.3): the response was already that old when it arrived, so it is
// fresh for `ttl` minus its age (never less than 0); the stale windows follow freshness.
struct Windows {
  std::chrono::steady_clock::time_point fresh_until;
  std::chrono::steady_clock::time_point swr_until;
  std::chrono::steady_clock::time_point stale_until;
};
Windows windows(const RouteCache& route, std::chrono::milliseconds ttl, std::int64_t age_seconds,
                std::chrono::steady_clock::time_point now);

// The upstream's Age value in seconds; 0 when absent or malformed (RFC 9111 5.1).
std::int64_t parse_age(std::string_view age);

// Removes from a request head (as proxy_request builds it) the fields that make a request
// conditional or partial: If-None-Match, If-Modified-Since, If-Match, If-Unmodified-Since,
// If-Range, Range. A background refresh must fetch the whole representation: a client's 304 or
// 206 is not something to store.
void strip_conditional_fields(std::string& head);

}  // namespace gatehouse::filters::cache
