#include "filters/cors/cors_filter.hpp"

#include <algorithm>

#include "http/fields.hpp"

namespace gatehouse::filters::cors {
namespace {

constexpr std::string_view kVaryActual = "Vary: Origin\r\n";
constexpr std::string_view kVaryPreflight =
    "Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers\r\n";
constexpr std::string_view kAllowOrigin = "Access-Control-Allow-Origin: ";

bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return is_alpha(c) || is_digit(c) ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  });
}

// Dot-separated labels of letters, digits and '-', none empty.
bool is_dns_name(std::string_view s) {
  if (s.empty() || s.front() == '.' || s.back() == '.' || s.find("..") != std::string_view::npos) {
    return false;
  }
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return is_alpha(c) || is_digit(c) || c == '-' || c == '.'; });
}

// A serialized origin as browsers send it: scheme "://" host [":" port], nothing else.
struct RequestOrigin {
  std::string_view scheme;
  std::string_view host;
  std::string_view port;  // empty when absent
};

bool parse_request_origin(std::string_view text, RequestOrigin& out) {
  auto sep = text.find("://");
  if (sep == std::string_view::npos || sep == 0 || !is_alpha(text.front())) {
    return false;
  }
  out.scheme = text.substr(0, sep);
  if (!std::all_of(out.scheme.begin(), out.scheme.end(), [](char c) {
        return is_alpha(c) || is_digit(c) || c == '+' || c == '-' || c == '.';
      })) {
    return false;
  }
  std::string_view rest = text.substr(sep + 3);
  std::size_t host_end = 0;
  if (rest.starts_with('[')) {
    host_end = rest.find(']');
    if (host_end == std::string_view::npos) {
      return false;
    }
    ++host_end;
    out.host = rest.substr(0, host_end);
    std::string_view inner = out.host.substr(1, out.host.size() - 2);
    if (inner.empty() || !std::all_of(inner.begin(), inner.end(), [](char c) {
          return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' ||
                 c == '.';
        })) {
      return false;
    }
  } else {
    host_end = std::min(rest.find(':'), rest.size());
    out.host = rest.substr(0, host_end);
    if (!is_dns_name(out.host)) {
      return false;
    }
  }
  std::string_view after = rest.substr(host_end);
  out.port = {};
  if (after.empty()) {
    return true;
  }
  out.port = after.substr(1);
  return after.front() == ':' && !out.port.empty() && out.port.size() <= 5 &&
         std::all_of(out.port.begin(), out.port.end(), is_digit);
}

bool port_matches(const OriginPattern& p, std::string_view port) {
  return p.port == "*" || p.port == port;
}

bool matches(const OriginPattern& p, std::string_view text, const RequestOrigin& o) {
  using Kind = OriginPattern::Kind;
  switch (p.kind) {
    case Kind::any:
      return true;
    case Kind::null:
      return text == "null";
    case Kind::exact:
      return http::iequals(o.scheme, p.scheme) && http::iequals(o.host, p.host) &&
             port_matches(p, o.port);
    case Kind::subdomains: {
      // host = LABELS "." suffix, with at least one label: `is_dns_name` already holds for host.
      if (o.host.size() < p.host.size() + 2) {
        return false;
      }
      std::size_t dot = o.host.size() - p.host.size() - 1;
      return o.host[dot] == '.' && http::iequals(o.host.substr(dot + 1), p.host) &&
             http::iequals(o.scheme, p.scheme) && port_matches(p, o.port);
    }
  }
  return false;
}

// Calls `f(name)` for each non-empty element of a comma-separated list; stops and returns false
// when `f` does.
template <class F>
bool for_each_element(std::string_view list, F&& f) {
  while (!list.empty()) {
    auto comma = list.find(',');
    std::string_view item = http::trim_ows(list.substr(0, comma));
    if (!item.empty() && !f(item)) {
      return false;
    }
    if (comma == std::string_view::npos) {
      break;
    }
    list.remove_prefix(comma + 1);
  }
  return true;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    out += out.empty() ? "" : ", ";
    out += item;
  }
  return out;
}

}  // namespace

Cors::Cors(const Settings& settings)
    : enabled_(settings.enabled),
      origins_(settings.origins),
      methods_(settings.methods),
      headers_(settings.headers) {
  any_origin_ = origins_.size() == 1 && origins_[0].kind == OriginPattern::Kind::any;
  any_header_ = headers_.size() == 1 && headers_[0] == "*";
  std::string credentials =
      settings.credentials ? "Access-Control-Allow-Credentials: true\r\n" : "";
  preflight_lines_ = credentials + "Access-Control-Allow-Methods: " + join(methods_) + "\r\n" +
                     "Access-Control-Max-Age: " + std::to_string(settings.max_age.count()) + "\r\n";
  actual_lines_ = credentials;
  if (!settings.expose_headers.empty()) {
    actual_lines_ += "Access-Control-Expose-Headers: " + join(settings.expose_headers) + "\r\n";
  }
}

bool Cors::allows(std::string_view origin) const {
  if (!enabled_ || origin.empty()) {
    return false;
  }
  RequestOrigin parsed;
  bool well_formed = parse_request_origin(origin, parsed);
  return std::any_of(origins_.begin(), origins_.end(), [&](const OriginPattern& p) {
    if (p.kind == OriginPattern::Kind::null) {
      return origin == "null";
    }
    return well_formed && matches(p, origin, parsed);
  });
}

bool Cors::strips(std::string_view upstream_header_name) const {
  constexpr std::string_view kPrefix = "Access-Control-";
  return enabled_ && upstream_header_name.size() > kPrefix.size() &&
         http::iequals(upstream_header_name.substr(0, kPrefix.size()), kPrefix);
}

PreflightResult Cors::preflight(std::string_view method, std::string_view origin,
                                std::string_view request_method, std::string_view request_headers,
                                std::string& out) const {
  if (!enabled_ || method != "OPTIONS" || origin.empty() || request_method.empty()) {
    return {Preflight::not_preflight, {}};
  }
  out += kVaryPreflight;
  if (!allows(origin)) {
    return {Preflight::denied, "origin not allowed by CORS policy"};
  }
  if (std::find(methods_.begin(), methods_.end(), request_method) == methods_.end()) {
    return {Preflight::denied, "method not allowed by CORS policy"};
  }
  auto configured = [&](std::string_view name) {
    return std::find_if(headers_.begin(), headers_.end(),
                        [&](const std::string& h) { return http::iequals(h, name); });
  };
  bool any_requested = false;
  bool headers_ok = for_each_element(request_headers, [&](std::string_view name) {
    any_requested = true;
    return is_token(name) && (any_header_ || configured(name) != headers_.end());
  });
  if (!headers_ok) {
    return {Preflight::denied, "request header not allowed by CORS policy"};
  }
  if (any_origin_) {
    out.append(kAllowOrigin).append("*\r\n");
  } else {
    out.append(kAllowOrigin).append(origin).append("\r\n");
  }
  out += preflight_lines_;
  if (any_requested) {
    // The requested names, in the configured spelling (echoed as sent with headers: ["*"]).
    out += "Access-Control-Allow-Headers: ";
    bool first = true;
    for_each_element(request_headers, [&](std::string_view name) {
      out.append(first ? "" : ", ")
          .append(any_header_ ? name : std::string_view(*configured(name)));
      first = false;
      return true;
    });
    out += "\r\n";
  }
  return {Preflight::allowed, {}};
}

void Cors::append_actual(std::string_view origin, std::string& out) const {
  if (!enabled_) {
    return;
  }
  out += kVaryActual;
  if (!allows(origin)) {
    return;
  }
  if (any_origin_) {
    out.append(kAllowOrigin).append("*\r\n");
  } else {
    out.append(kAllowOrigin).append(origin).append("\r\n");
  }
  out += actual_lines_;
}

}  // namespace gatehouse::filters::cors
