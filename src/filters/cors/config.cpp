#include "filters/cors/config.hpp"

#include <algorithm>

#include "config/config.hpp"
#include "config/value_readers.hpp"
#include "config/yaml_reader.hpp"
#include "http/cidr.hpp"
#include "http/fields.hpp"

namespace gatehouse::filters::cors {
namespace {

using config::detail::Map;
using config::detail::quoted;
using config::detail::read_bool;
using config::detail::Value;

bool is_off(const std::string& text) {
  return text == "off" || text == "false" || text == "False" || text == "FALSE";
}

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string lowered(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), lower);
  return out;
}

bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// RFC 3986 scheme.
bool is_scheme(std::string_view s) {
  return !s.empty() && is_alpha(s.front()) && std::all_of(s.begin(), s.end(), [](char c) {
    return is_alpha(c) || is_digit(c) || c == '+' || c == '-' || c == '.';
  });
}

bool is_label(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(),
                                   [](char c) { return is_alpha(c) || is_digit(c) || c == '-'; });
}

std::vector<std::string_view> split_labels(std::string_view host) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    auto dot = host.find('.', start);
    out.push_back(host.substr(start, dot - start));
    if (dot == std::string_view::npos) {
      return out;
    }
    start = dot + 1;
  }
}

std::string_view default_port(std::string_view scheme) {
  return scheme == "https" ? "443" : scheme == "http" ? "80" : "";
}

ParsedOrigin origin_error(std::string_view text, std::string_view why) {
  std::string message = "invalid origin " + quoted(text);
  if (why.empty()) {
    message +=
        " (expected SCHEME://HOST[:PORT] such as \"https://app.example.com\", or \"*\" or "
        "\"null\")";
  } else {
    message.append(": ").append(why);
  }
  return ParsedOrigin{std::nullopt, std::move(message)};
}

bool same_origin_pattern(const OriginPattern& a, const OriginPattern& b) {
  return a.kind == b.kind && a.scheme == b.scheme && a.host == b.host && a.port == b.port;
}

std::vector<OriginPattern> read_origins(const Value& v, bool credentials) {
  std::vector<OriginPattern> out;
  auto items = v.items();
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto& item = items[i];
    auto parsed = parse_origin_pattern(item.text());
    if (!parsed.pattern) {
      item.fail(parsed.error);
    }
    const OriginPattern& p = *parsed.pattern;
    if (p.kind == OriginPattern::Kind::any) {
      if (credentials) {
        item.fail(
            "\"*\" cannot be used with credentials: true (browsers refuse it; list the "
            "origins instead)");
      }
      if (items.size() > 1) {
        item.fail("\"*\" must be the only origin (it already allows every origin)");
      }
    }
    for (std::size_t j = 0; j < out.size(); ++j) {
      if (same_origin_pattern(out[j], p)) {
        item.fail("duplicate origin " + quoted(item.text()) + " (also origins[" +
                  std::to_string(j) + "])");
      }
    }
    out.push_back(p);
  }
  if (out.empty()) {
    v.fail("at least one origin is required (use cors: off to leave CORS to the app)");
  }
  return out;
}

std::vector<std::string> read_methods(const Value& v) {
  std::vector<std::string> out;
  for (const auto& item : v.items()) {
    auto method = config::detail::read_method(item);
    if (std::find(out.begin(), out.end(), method) != out.end()) {
      item.fail("duplicate method " + quoted(method));
    }
    out.push_back(std::move(method));
  }
  if (out.empty()) {
    v.fail("at least one method is required");
  }
  return out;
}

// A list of header names; "*" alone is a wildcard (`what` says what it allows), and only without
// credentials when `star_needs_no_credentials`.
std::vector<std::string> read_header_names(const Value& v, std::string_view what,
                                           bool star_needs_no_credentials, bool credentials) {
  std::vector<std::string> out;
  auto items = v.items();
  for (const auto& item : items) {
    if (item.node().IsScalar() && item.text() == "*") {
      if (items.size() > 1) {
        item.fail("\"*\" must be the only entry (it already allows " + std::string(what) + ")");
      }
      if (star_needs_no_credentials && credentials) {
        item.fail(
            "\"*\" cannot be used with credentials: true (browsers take it literally; list "
            "the headers instead)");
      }
      out.push_back("*");
      continue;
    }
    auto name = config::detail::read_header_name(item);
    for (const auto& seen : out) {
      if (http::iequals(seen, name)) {
        item.fail("duplicate header " + quoted(name) + " (also " + quoted(seen) + ")");
      }
    }
    out.push_back(std::move(name));
  }
  return out;
}

}  // namespace

ParsedOrigin parse_origin_pattern(std::string_view text) {
  OriginPattern out;
  out.text = std::string(text);
  if (text == "*") {
    out.kind = OriginPattern::Kind::any;
    return ParsedOrigin{out, {}};
  }
  if (text == "null") {
    out.kind = OriginPattern::Kind::null;
    return ParsedOrigin{out, {}};
  }
  auto sep = text.find("://");
  if (sep == std::string_view::npos || !is_scheme(text.substr(0, sep))) {
    return origin_error(text, {});
  }
  out.scheme = lowered(text.substr(0, sep));
  std::string_view rest = text.substr(sep + 3);
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    return origin_error(
        text, "an origin has no path (write " + quoted(text.substr(0, sep + 3 + slash)) + ")");
  }
  std::string_view host = rest;
  std::string_view port;
  bool has_port = false;
  if (rest.starts_with('[')) {
    auto close = rest.find(']');
    if (close == std::string_view::npos) {
      return origin_error(text, {});
    }
    host = rest.substr(0, close + 1);
    std::string_view after = rest.substr(close + 1);
    if (!after.empty() && after.front() != ':') {
      return origin_error(text, {});
    }
    has_port = !after.empty();
    port = has_port ? after.substr(1) : after;
    auto ip = http::parse_ip(host.substr(1, host.size() - 2));
    if (!ip || host.find(':') == std::string_view::npos) {
      return origin_error(text, "invalid IPv6 address " + quoted(host));
    }
    out.host = lowered(host);
  } else {
    auto colon = rest.find(':');
    if (colon != std::string_view::npos) {
      host = rest.substr(0, colon);
      port = rest.substr(colon + 1);
      has_port = true;
    }
    auto labels = split_labels(host);
    bool wildcard = labels.size() > 1 && labels.front() == "*";
    for (std::size_t i = wildcard ? 1 : 0; i < labels.size(); ++i) {
      if (labels[i].find('*') != std::string_view::npos) {
        return origin_error(text,
                            "\"*\" may only be the first label, as in \"https://*.example.com\"");
      }
      if (!is_label(labels[i])) {
        return origin_error(text, {});
      }
    }
    if (wildcard && labels.size() < 3) {
      return origin_error(text,
                          "\"*.\" must be followed by at least two labels, as in "
                          "\"https://*.example.com\"");
    }
    out.kind = wildcard ? OriginPattern::Kind::subdomains : OriginPattern::Kind::exact;
    out.host = lowered(wildcard ? host.substr(2) : host);
  }
  if (has_port) {
    if (port == "*") {
      out.port = "*";
    } else {
      bool ok = config::detail::all_digits(port) && port.size() <= 5 &&
                std::stoul(std::string(port)) >= 1 && std::stoul(std::string(port)) <= 65535;
      if (!ok) {
        return origin_error(text, "invalid port " + quoted(port) + " (expected 1 to 65535, or *)");
      }
      out.port = std::to_string(std::stoul(std::string(port)));
      if (out.port == default_port(out.scheme)) {
        out.port.clear();
      }
    }
  }
  return ParsedOrigin{out, {}};
}

Settings default_settings(config::Environment environment) {
  Settings out;
  if (environment != config::Environment::development) {
    return out;
  }
  out.enabled = true;
  for (const char* origin : {"http://localhost:*", "https://localhost:*", "http://127.0.0.1:*",
                             "https://127.0.0.1:*", "http://[::1]:*", "https://[::1]:*"}) {
    out.origins.push_back(*parse_origin_pattern(origin).pattern);
  }
  out.methods = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"};
  out.headers = {"*"};
  out.expose_headers = {"X-Request-ID", "RateLimit", "RateLimit-Policy", "Retry-After"};
  return out;
}

Settings read_settings(const Value& v, config::Environment environment) {
  if (v.is_null()) {
    return default_settings(environment);
  }
  if (v.node().IsScalar() && is_off(v.text())) {
    return Settings{};
  }
  if (v.node().IsScalar()) {
    v.fail("invalid value " + quoted(v.text()) + " (expected off or a map)");
  }
  Map m(v, {"origins", "methods", "headers", "expose_headers", "credentials", "max_age"});
  Settings out;
  out.enabled = true;
  if (auto x = m.find("credentials")) {
    out.credentials = read_bool(*x);
  }
  out.origins = read_origins(m.require("origins"), out.credentials);
  if (auto x = m.find("methods")) {
    out.methods = read_methods(*x);
  }
  if (auto x = m.find("headers")) {
    out.headers = read_header_names(*x, "every request header", false, out.credentials);
  }
  if (auto x = m.find("expose_headers")) {
    out.expose_headers = read_header_names(*x, "every response header", true, out.credentials);
  }
  if (auto x = m.find("max_age")) {
    out.max_age = config::detail::read_seconds(*x, kMaxMaxAge);
  }
  return out;
}

}  // namespace gatehouse::filters::cors
