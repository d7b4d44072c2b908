#pragma once
// Request target and Host checks and decoding, on plain strings (no Beast).
#include <optional>
#include <string>
#include <string_view>

namespace gatehouse::http {

// A Host header value RFC 9112 section 3.2 accepts: empty, reg-name or IPv4 or [IPv6], with an
// optional :port. Lists ("a, b"), userinfo, paths and blanks are not hosts.
bool is_valid_host(std::string_view host);

// A host name or IPv4 address as configs and URLs name them: letters, digits, '.', '-' and '_'
// only (no port, no brackets). The empty string passes: callers say "missing" themselves.
bool is_host_name(std::string_view host);

// The value of one hex digit (either case), or -1.
constexpr int hex_value(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  return -1;
}

// Decodes %XX escapes (and '+' as a space when `plus_is_space`) into `out`; false on a truncated
// or non-hex escape.
bool percent_decode(std::string_view in, std::string& out, bool plus_is_space);

// The percent-decoded value of query parameter `name` in a request target ("+" is a space);
// nullopt when absent or badly encoded.
std::optional<std::string> query_param(std::string_view target, std::string_view name);

}  // namespace gatehouse::http
