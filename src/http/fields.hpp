#pragma once
// Header rules a proxy must apply in both directions (RFC 9110 section 7.6.1), kept free of Beast
// so they are unit-tested on plain strings.
#include <span>
#include <string_view>
#include <vector>

namespace gatehouse::http {

bool iequals(std::string_view a, std::string_view b);

// `s` without the optional whitespace (RFC 9110 5.6.3: spaces and tabs) around it.
std::string_view trim_ows(std::string_view s);

// Connection, Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade, Proxy-Connection,
// Proxy-Authenticate, Proxy-Authorization. Transfer-Encoding is re-framed by the proxy itself.
bool is_hop_by_hop(std::string_view name);

// Calls f(token) for each element of a comma-separated list value, trimmed of optional
// whitespace, empty elements skipped (RFC 9110 5.6.1). Allocates nothing: for hot paths.
template <class F>
void for_each_token(std::string_view value, F&& f) {
  while (!value.empty()) {
    auto comma = value.find(',');
    auto token = trim_ows(value.substr(0, comma));
    if (!token.empty()) {
      f(token);
    }
    if (comma == std::string_view::npos) {
      break;
    }
    value.remove_prefix(comma + 1);
  }
}

// The field names listed in a Connection header value ("close, X-Foo" -> {"close", "X-Foo"}).
std::vector<std::string_view> split_tokens(std::string_view value);

// True when `name` appears (case-insensitively) in any of the Connection values.
bool named_by_connection(std::string_view name,
                         std::span<const std::string_view> connection_tokens);

// A WebSocket opening handshake (RFC 6455 4.1) gatehouse passes through: GET over HTTP/1.1 with
// "upgrade" among the Connection tokens and "websocket" among the Upgrade protocols.
bool is_websocket_upgrade(std::string_view method, unsigned version,
                          std::span<const std::string_view> connection_tokens,
                          std::string_view upgrade);
// Whether a 101 answers such a handshake: its Upgrade names websocket, its Connection upgrade.
bool accepts_websocket(std::span<const std::string_view> connection_tokens,
                       std::string_view upgrade);

}  // namespace gatehouse::http
