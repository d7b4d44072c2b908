#include "redis/url.hpp"

#include <algorithm>
#include <charconv>

#include "http/target.hpp"

namespace gatehouse::redis {
namespace {

template <typename T>
bool parse_number(std::string_view s, T& out, T max) {
  if (s.empty()) {
    return false;
  }
  unsigned long long v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size() || v > max) {
    return false;
  }
  out = static_cast<T>(v);
  return true;
}

}  // namespace

std::string Url::redacted() const {
  std::string out = "redis://";
  if (!username.empty() || !password.empty()) {
    out += username;
    out += password.empty() ? "@" : ":***@";
  }
  out += host.find(':') != std::string::npos ? "[" + host + "]" : host;
  out += ':';
  out += std::to_string(port);
  out += '/';
  out += std::to_string(db);
  return out;
}

bool parse_url(std::string_view text, Url& out, std::string& error) {
  out = Url{};
  constexpr std::string_view kScheme = "redis://";
  if (!text.starts_with(kScheme)) {
    error = "expected memory or redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]";
    return false;
  }
  std::string_view rest = text.substr(kScheme.size());
  if (auto q = rest.find_first_of("?#"); q != std::string_view::npos) {
    error = "query strings and fragments are not supported in the store URL";
    return false;
  }
  std::string_view path;
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    path = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
  }
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    std::string_view user = userinfo;
    std::string_view pass;
    if (auto colon = userinfo.find(':'); colon != std::string_view::npos) {
      user = userinfo.substr(0, colon);
      pass = userinfo.substr(colon + 1);
    } else {
      // redis://PASSWORD@host is a common spelling for AUTH without a user.
      pass = userinfo;
      user = {};
    }
    if (!http::percent_decode(user, out.username, false) ||
        !http::percent_decode(pass, out.password, false)) {
      error = "invalid percent-escape in the user or password";
      return false;
    }
  }
  std::string_view host = rest;
  std::string_view port;
  if (rest.starts_with('[')) {
    auto close = rest.find(']');
    if (close == std::string_view::npos) {
      error = "unterminated [ in the host";
      return false;
    }
    host = rest.substr(1, close - 1);
    auto after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') {
        error = "expected :PORT after ]";
        return false;
      }
      port = after.substr(1);
      if (port.empty()) {
        error = "empty port";
        return false;
      }
    }
  } else if (auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    if (port.empty()) {
      error = "empty port";
      return false;
    }
  }
  if (host.empty()) {
    error = "the host is missing";
    return false;
  }
  // A name or IPv4 address, or (in brackets) an IPv6 address: anything else would print as a URL
  // that does not read back (`gatehouse check`) and that no resolver takes.
  const bool ok =
      rest.starts_with('[')
          ? std::all_of(host.begin(), host.end(),
                        [](char c) { return http::hex_value(c) >= 0 || c == ':' || c == '.'; })
          : http::is_host_name(host);
  if (!ok) {
    error =
        "invalid host \"" + std::string(host) + "\" (expected a name, an IPv4 address or [IPv6])";
    return false;
  }
  out.host = std::string(host);
  if (!port.empty() && (!parse_number<std::uint16_t>(port, out.port, 65535) || out.port == 0)) {
    error = "invalid port \"" + std::string(port) + "\" (expected 1-65535)";
    return false;
  }
  if (!path.empty() && !parse_number<unsigned>(path, out.db, 15'999)) {
    error = "invalid database index \"" + std::string(path) + "\" (expected a number)";
    return false;
  }
  return true;
}

}  // namespace gatehouse::redis
