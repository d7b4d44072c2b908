#pragma once
// WebSocket pass-through: the opening handshake is proxied like any request (filters, rate limits
// and access rules have run on it), with Connection: Upgrade and Upgrade restored on the way up;
// an upstream 101 that accepts it turns the connection into a byte tunnel both ways until either
// side closes or limits.idle_timeout passes without a byte either way. A 101 that answers
// anything else is refused (502): gatehouse never tunnels unless it forwarded a handshake and the
// upstream accepted it.
#include <memory>

#include "server/exchange.hpp"
#include "upstream/connection.hpp"

namespace gatehouse::server {

// The client's Upgrade value when the request in `p` is a WebSocket handshake gatehouse forwards
// (GET, HTTP/1.1, no body, Connection: upgrade, Upgrade: websocket); empty otherwise. Cheap for
// ordinary requests: one field lookup.
std::string_view websocket_upgrade(const RequestParser& p);

// Appends the handshake's hop-by-hop lines to an upstream head built by build_upstream_head.
void add_upgrade_lines(std::string& head, std::string_view upgrade);

// After the upstream answered 101 to the request: the tunnel (requested: the request was a
// handshake we forwarded), or a 502 for a 101 nobody asked for. Returns whether the client
// connection may carry another request (false after a tunnel).
net::awaitable<bool> relay_upgrade(Worker& w, ClientConn& c, FilterChain& chain, Context& x,
                                   std::unique_ptr<upstream::Connection> u, ResponseParser& rp,
                                   bool requested);

}  // namespace gatehouse::server
