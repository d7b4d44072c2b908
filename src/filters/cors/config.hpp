#pragma once
// Typed cors configuration: which origins may read responses, with which methods and request
// headers, and what they may see. Absent in production: gatehouse leaves CORS to the app. Absent
// in development: localhost origins are allowed (default_settings), so `gatehouse check` shows it.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::config {
struct Config;
class Sections;
enum class Environment;
namespace detail {
class Value;
}
}  // namespace gatehouse::config

namespace gatehouse::filters::cors {

using Seconds = std::chrono::seconds;

// One entry of `origins`. Scheme and host are compared case-insensitively, the port exactly
// (RFC 6454); a default port written in the config (https://a.example:443) is dropped, as browsers
// never send it.
struct OriginPattern {
  enum class Kind : std::uint8_t {
    any,         // "*": every origin except "null"; only without credentials
    null,        // "null", literally (sandboxed iframes, file: pages)
    exact,       // "https://app.example.com"
    subdomains,  // "https://*.example.com": one or more labels under example.com
  };
  Kind kind = Kind::exact;
  std::string text;    // as written, for messages and `gatehouse check`
  std::string scheme;  // lower-case
  std::string host;    // lower-case, IPv6 bracketed; Kind::subdomains: after "*."
  std::string port;    // digits; empty: none; "*": any port or none ("http://localhost:*")
  bool operator==(const OriginPattern&) const = default;
};

struct ParsedOrigin {
  std::optional<OriginPattern> pattern;
  std::string error;  // why `pattern` is empty
};
ParsedOrigin parse_origin_pattern(std::string_view text);

inline constexpr Seconds kMaxMaxAge = std::chrono::hours(24);  // Firefox's cap; Chromium's is 2h

struct Settings {
  bool enabled = false;  // false: preflights go to the app, its CORS headers pass through
  std::vector<OriginPattern> origins;                       // required when enabled
  std::vector<std::string> methods{"GET", "HEAD", "POST"};  // for preflights; case-sensitive
  std::vector<std::string> headers;         // request headers a preflight may ask for; ["*"]: any
  std::vector<std::string> expose_headers;  // response headers scripts may read
  bool credentials = false;                 // cookies and Authorization; never with "*"
  Seconds max_age = std::chrono::minutes(10);  // how long browsers cache a preflight answer
  bool operator==(const Settings&) const = default;
};

// Without a `cors` block (or with `cors: null`): disabled in production; in development
// http(s)://localhost, 127.0.0.1 and [::1] on any port, common methods, any request header,
// without credentials.
Settings default_settings(config::Environment environment);

// The top-level `cors` value for the section (config_section.cpp): null, `off`/`false`, or a map.
// Failures throw config::ConfigError ("FILE:LINE:COLUMN: cors.origins[1]: ...").
Settings read_settings(const config::detail::Value& v, config::Environment environment);

// The loaded settings (config_section.cpp); a config without a `cors` key that was not
// loaded from a file (Config{}) has Settings{}: disabled.
const Settings& settings(const config::Config& config);

// Adds the `cors` section for filters/registry.cpp.
void register_config(config::Sections& sections);

}  // namespace gatehouse::filters::cors
