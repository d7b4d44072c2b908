#pragma once
// Header rules a proxy must apply in both directions (RFC 9110 section 7.6.1), kept free of Beast
// so they are unit-tested on plain strings.
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "http/cidr.hpp"

namespace gatehouse::http {

bool iequals(std::string_view a, std::string_view b);

// Connection, Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade, Proxy-Connection,
// Proxy-Authenticate, Proxy-Authorization. Transfer-Encoding is re-framed by the proxy itself.
bool is_hop_by_hop(std::string_view name);

// The field names listed in a Connection header value ("close, X-Foo" -> {"close", "X-Foo"}).
std::vector<std::string_view> split_tokens(std::string_view value);

// True when `name` appears (case-insensitively) in any of the Connection values.
bool named_by_connection(std::string_view name,
                         std::span<const std::string_view> connection_tokens);

// Request target for logs: query values of token-like parameters replaced by "REDACTED".
std::string redact_target(std::string_view target);

// Appends `s` as a JSON string literal (quotes included) to `out`.
// A Host header value RFC 9112 section 3.2 accepts: empty, reg-name or IPv4 or [IPv6], with an
// optional :port. Lists ("a, b"), userinfo, paths and blanks are not hosts.
bool is_valid_host(std::string_view host);

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

// A JSON string literal: quotes, backslashes and control bytes escaped; valid UTF-8 kept, any
// other byte written as \ufffd, so the result is always valid JSON.
void append_json_string(std::string& out, std::string_view s);

}  // namespace gatehouse::http
