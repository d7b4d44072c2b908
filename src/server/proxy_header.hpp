#pragma once
// The PROXY protocol read at the start of a connection on a listener with `proxy_protocol: true`.
#include <optional>
#include <string>
#include <string_view>

#include "server/worker.hpp"

namespace gatehouse::server {

// Reads the PROXY v1/v2 header off `socket` within limits.header_timeout and returns the client
// address to use instead of `peer` (the peer itself for v2 LOCAL and v1 UNKNOWN); nullopt when the
// peer is not a trusted proxy, the header is missing, malformed or late, or the peer closes. Only
// the header's bytes are consumed: what follows stays in the socket for the TLS handshake or the
// HTTP parser.
net::awaitable<std::optional<std::string>> read_proxy_header(Worker& w, tcp::socket& socket,
                                                             std::string_view peer);

}  // namespace gatehouse::server
