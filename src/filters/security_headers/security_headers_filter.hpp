#pragma once
// The security headers of every response: built once from the settings as complete
// "Name: value\r\n" lines, so a response costs a few name lookups and appends. Pure; one instance
// is shared read-only by every worker.
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "filters/security_headers/config.hpp"

namespace gatehouse::filters::security_headers {

class SecurityHeaders {
 public:
  SecurityHeaders(const Settings& settings, config::Environment environment);

  // False when there is nothing to add or remove (preset off and nothing configured).
  bool enabled() const { return !lines_.empty() || !stripped_.empty(); }

  // Whether to drop this upstream response header: Server and X-Powered-By (strict and relaxed),
  // and with `force` every header we may set. Case-insensitive.
  bool strips(std::string_view upstream_header_name) const;

  // Appends our lines to a proxied response's head. Without `force`, a header the upstream
  // response already has (after strips) is left to the upstream: `has_upstream_header(name)` is
  // any callable bool(std::string_view) answering that, case-insensitively. HSTS only when `tls`
  // and in production. Allocates nothing beyond the growth of `out`.
  template <class HasHeader>
  void append(std::string& out, bool tls, const HasHeader& has_upstream_header) const {
    for (const auto& l : lines_) {
      if ((tls || !l.tls_only) && (force_ || !has_upstream_header(std::string_view(l.name)))) {
        out += l.line;
      }
    }
  }

  // Every line, for replies gatehouse makes itself (404, 429, 502, CORS preflights, ...).
  void append_local(std::string& out, bool tls) const { out += tls ? local_tls_ : local_plain_; }

  // One header we send: its name and its complete line.
  struct Line {
    std::string name;
    std::string line;       // "Name: value\r\n"
    bool tls_only = false;  // Strict-Transport-Security
  };
  const std::vector<Line>& lines() const { return lines_; }

 private:
  std::vector<Line> lines_;
  std::vector<std::string> stripped_;  // names dropped from upstream responses
  std::string local_plain_;
  std::string local_tls_;
  bool force_ = false;
};

// "max-age=31536000; includeSubDomains; preload".
std::string hsts_value(const Hsts& hsts);

}  // namespace gatehouse::filters::security_headers
