#include "filters/security_headers/security_headers_filter.hpp"

#include <algorithm>

#include "http/fields.hpp"

namespace gatehouse::filters::security_headers {
namespace {

struct Header {
  std::string_view name;
  std::string value;
};

// The preset's headers, in the order they are sent.
std::vector<Header> preset_headers(const Settings& s) {
  std::vector<Header> out;
  if (s.preset == Preset::off) {
    if (!s.content_security_policy.empty()) {
      out.push_back({"Content-Security-Policy", s.content_security_policy});
    }
    return out;
  }
  bool strict = s.preset == Preset::strict;
  out.push_back({"X-Content-Type-Options", "nosniff"});
  out.push_back({"X-Frame-Options", strict ? "DENY" : "SAMEORIGIN"});
  out.push_back({"Referrer-Policy", "strict-origin-when-cross-origin"});
  if (!s.content_security_policy.empty()) {
    out.push_back({"Content-Security-Policy", s.content_security_policy});
  }
  if (strict) {
    out.push_back(
        {"Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()"});
    out.push_back({"Cross-Origin-Opener-Policy", "same-origin"});
  }
  // Turns off the XSS auditor of old browsers, which could be abused to remove scripts from a
  // page or leak information across origins; current browsers ignore the header (OWASP).
  out.push_back({"X-XSS-Protection", "0"});
  return out;
}

// Preset headers with the overrides applied: replaced in place, removed, or added at the end.
std::vector<Header> effective_headers(const Settings& s) {
  std::vector<Header> out = preset_headers(s);
  for (const auto& o : s.overrides) {
    auto it = std::find_if(out.begin(), out.end(),
                           [&](const Header& h) { return http::iequals(h.name, o.name); });
    if (o.value.empty()) {
      if (it != out.end()) {
        out.erase(it);
      }
    } else if (it != out.end()) {
      it->value = o.value;
    } else {
      out.push_back({o.name, o.value});
    }
  }
  return out;
}

std::string line(std::string_view name, std::string_view value) {
  std::string out;
  out.reserve(name.size() + value.size() + 4);
  out.append(name).append(": ").append(value).append("\r\n");
  return out;
}

}  // namespace

std::string hsts_value(const Hsts& hsts) {
  std::string out = "max-age=" + std::to_string(hsts.max_age.count());
  if (hsts.include_subdomains) {
    out += "; includeSubDomains";
  }
  if (hsts.preload) {
    out += "; preload";
  }
  return out;
}

SecurityHeaders::SecurityHeaders(const Settings& settings, config::Environment environment)
    : force_(settings.force) {
  for (const auto& h : effective_headers(settings)) {
    lines_.push_back(Line{std::string(h.name), line(h.name, h.value), false});
  }
  // RFC 6797: browsers ignore HSTS received over plain HTTP, and development hosts (localhost)
  // must not be pinned to HTTPS.
  if (settings.hsts && environment == config::Environment::production) {
    constexpr std::string_view kName = "Strict-Transport-Security";
    lines_.push_back(Line{std::string(kName), line(kName, hsts_value(*settings.hsts)), true});
  }
  if (settings.preset != Preset::off) {
    stripped_ = {"Server", "X-Powered-By"};
  }
  if (force_) {
    for (const auto& l : lines_) {
      stripped_.push_back(l.name);
    }
  }
  for (const auto& l : lines_) {
    if (!l.tls_only) {
      local_plain_ += l.line;
    }
    local_tls_ += l.line;
  }
}

bool SecurityHeaders::strips(std::string_view upstream_header_name) const {
  return std::any_of(stripped_.begin(), stripped_.end(), [&](const std::string& name) {
    return http::iequals(name, upstream_header_name);
  });
}

}  // namespace gatehouse::filters::security_headers
