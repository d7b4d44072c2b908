#pragma once
// CORS at the edge: origin matching, preflight answers and the headers of actual responses. The
// constant lines are built once; a request costs an origin match and a few appends. Pure; one
// instance is shared read-only by every worker.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "filters/cors/config.hpp"

namespace gatehouse::filters::cors {

enum class Preflight : std::uint8_t {
  not_preflight,  // not OPTIONS with Origin and Access-Control-Request-Method, or CORS disabled
  allowed,        // answer 204 with the appended lines; never forwarded, never rate limited
  denied,         // answer 403 (kDeniedCode) with the appended lines; never forwarded
};

struct PreflightResult {
  Preflight kind = Preflight::not_preflight;
  std::string_view reason;  // denied: the 403's message, e.g. "origin not allowed by CORS policy"
};

// The `error` code of a denied preflight's JSON body.
inline constexpr std::string_view kDeniedCode = "cors_preflight_denied";

class Cors {
 public:
  explicit Cors(const Settings& settings);

  // False without a cors block in production (or with `cors: off`): gatehouse then does nothing
  // for CORS, preflights go to the app and its Access-Control-* headers pass through.
  bool enabled() const { return enabled_; }

  // Whether the request header Origin value `origin` is allowed. "null" only when listed.
  bool allows(std::string_view origin) const;

  // Whether to drop this upstream response header: every Access-Control-* when enabled, since
  // gatehouse's answer replaces the app's. Case-insensitive.
  bool strips(std::string_view upstream_header_name) const;

  // Classifies a request and, for a preflight, appends the answer's header lines to `out` (Vary
  // in both cases; the Access-Control-Allow-* lines when allowed). `origin`, `request_method` and
  // `request_headers` are the values of Origin, Access-Control-Request-Method and
  // Access-Control-Request-Headers, empty when absent.
  PreflightResult preflight(std::string_view method, std::string_view origin,
                            std::string_view request_method, std::string_view request_headers,
                            std::string& out) const;

  // For every other response when enabled, proxied or local (so scripts can read a 429): appends
  // `Vary: Origin` and, when `origin` is allowed, Access-Control-Allow-Origin, -Allow-Credentials
  // and -Expose-Headers. Nothing when disabled.
  void append_actual(std::string_view origin, std::string& out) const;

 private:
  bool enabled_ = false;
  bool any_origin_ = false;  // origins: ["*"]
  bool any_header_ = false;  // headers: ["*"]
  std::vector<OriginPattern> origins_;
  std::vector<std::string> methods_;
  std::vector<std::string> headers_;
  std::string preflight_lines_;  // -Allow-Credentials, -Allow-Methods, -Max-Age
  std::string actual_lines_;     // -Allow-Credentials, -Expose-Headers
};

}  // namespace gatehouse::filters::cors
