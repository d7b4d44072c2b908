#pragma once
// IPv4/IPv6 network prefixes ("10.0.0.0/8", "::1/128", "192.168.1.7") and address matching.
// Pure logic, no sockets: addresses are compared as 16-byte IPv6 (IPv4 mapped to ::ffff:a.b.c.d).
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace gatehouse::http {

using IpBytes = std::array<std::uint8_t, 16>;

// Parses a textual IPv4 or IPv6 address (no brackets, no port) into mapped IPv6 bytes.
std::optional<IpBytes> parse_ip(std::string_view text);

class Cidr {
 public:
  // Returns nullopt when `text` is not "ADDR" or "ADDR/BITS" with BITS in range.
  static std::optional<Cidr> parse(std::string_view text);
  bool contains(const IpBytes& ip) const;
  std::string to_string() const;
  bool operator==(const Cidr&) const = default;

 private:
  IpBytes base_{};
  unsigned bits_ = 128;  // prefix length in the mapped IPv6 space
  bool v4_ = false;
};

bool any_contains(std::span<const Cidr> nets, const IpBytes& ip);

// The canonical text of an address: dotted IPv4 for v4 and v4-mapped, RFC 5952 IPv6 otherwise.
std::string to_string(const IpBytes& ip);

// Whether `ip` is an IPv4 address (held as ::ffff:a.b.c.d).
bool is_v4_mapped(const IpBytes& ip);

// The network one client is taken to own (rate_limit.ipv6_prefix): an IPv6 address cut to its
// first `ipv6_prefix` bits (1-128); IPv4 and v4-mapped addresses unchanged. A host gets a /64 or
// more from its provider, so counting per /128 would give it billions of identities.
IpBytes client_network(const IpBytes& ip, unsigned ipv6_prefix);
// Its text: to_string(ip) for IPv4 and at prefix 128, else "2001:db8:1:2::/64".
std::string client_network_text(const IpBytes& ip, unsigned ipv6_prefix);

}  // namespace gatehouse::http
