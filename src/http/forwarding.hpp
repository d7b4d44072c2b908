#pragma once
// Client identity from forwarding headers: which address, scheme and host a chain of trusted
// proxies vouches for. Pure logic on field values, so every rule is unit-tested on strings.
//
// A proxy appends to these headers; it never vouches for what it received. So the chain is read
// right to left, and only as far as the hops are trusted: the right-most hop that is not a trusted
// proxy is the client. Every field line of a header is part of one list (RFC 9110 section 5.3):
// HAProxy's `option forwardfor` adds its own X-Forwarded-For line after the client's.
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "http/cidr.hpp"

namespace gatehouse::http {

// The header family a deployment's trusted proxies write (`forwarded_headers` in the config).
// Only one is believed: a proxy that appends X-Forwarded-For usually passes a client's own
// `Forwarded` through untouched (and the other way round), so believing both lets a client pick.
enum class ForwardedHeaders {
  x_forwarded,  // X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host (de facto, the default)
  forwarded,    // RFC 7239 Forwarded: for=, proto=, host=
};

// The field lines of one request that matter here, each list in arrival order. Filled only when
// the peer is a trusted proxy: nothing else is read from an untrusted peer.
struct ForwardingLines {
  std::vector<std::string_view> x_forwarded_for;
  std::vector<std::string_view> x_forwarded_proto;
  std::vector<std::string_view> x_forwarded_host;
  std::vector<std::string_view> forwarded;
};

// What the request says about its client once trusted proxies are taken into account.
struct Forwarding {
  bool trusted_peer = false;  // the peer is in trusted_proxies
  std::string client_ip;      // the peer as given when untrusted, else canonical (RFC 5952)
  std::string proto;          // "http" or "https" from the nearest trusted proxy, or empty
  std::string host;           // the nearest trusted proxy's host (a valid Host value), or empty
};

bool is_trusted(std::string_view ip, std::span<const Cidr> trusted);

// The rules of docs/security.md#client-identity. `peer_ip` is the connection's peer (after the
// PROXY protocol, when the listener speaks it).
Forwarding resolve_forwarding(std::string_view peer_ip, const ForwardingLines& lines,
                              std::span<const Cidr> trusted, ForwardedHeaders family);

// The client address from X-Forwarded-For field lines: the right-most hop that is not trusted.
// A hop that is not a bare IPv4/IPv6 address (a port, brackets, "unknown", garbage) stops the walk:
// the last trusted hop is the client then.
std::string client_ip_from_x_forwarded_for(std::string_view peer_ip,
                                           std::span<const std::string_view> lines,
                                           std::span<const Cidr> trusted);

// One field line: client_ip_from_x_forwarded_for with a single line.
std::string client_ip(std::string_view peer_ip, std::string_view x_forwarded_for,
                      std::span<const Cidr> trusted);

// One RFC 7239 forwarded-element with its parameters unquoted (empty when absent).
struct ForwardedElement {
  std::string for_;
  std::string proto;
  std::string host;
};

// Every element of every Forwarded line, left to right; `ok` is false when a line is not valid
// RFC 7239 syntax or repeats a parameter in one element (then none of it is believed).
struct ForwardedList {
  bool ok = true;
  std::vector<ForwardedElement> elements;
};
ForwardedList parse_forwarded(std::span<const std::string_view> lines);

// The address in a Forwarded node ("192.0.2.1", "192.0.2.1:80", "[2001:db8::1]:443"), or nullopt
// for "unknown", obfuscated identifiers ("_hidden") and anything else.
std::optional<IpBytes> forwarded_node_ip(std::string_view node);

// The X-Forwarded-For list to send upstream for a trusted peer, without the peer itself: the
// incoming lines joined (x_forwarded), or the for= nodes as addresses (forwarded; a node without
// an address is sent as written, "unknown" when absent). Empty when there is none.
std::string upstream_forwarded_for(const ForwardingLines& lines, ForwardedHeaders family);

}  // namespace gatehouse::http
