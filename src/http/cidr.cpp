#include "http/cidr.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace gatehouse::http {
namespace {

constexpr unsigned kV4MappedBits = 96;  // ::ffff:0:0/96

// The mask byte for byte `index` of a prefix of `bits` bits.
std::uint8_t mask_byte(unsigned bits, unsigned index) {
  unsigned start = index * 8;
  if (bits <= start) {
    return 0;
  }
  unsigned keep = std::min(8u, bits - start);
  return static_cast<std::uint8_t>((0xffu << (8 - keep)) & 0xffu);
}

std::optional<unsigned> parse_bits(std::string_view digits, unsigned max_bits) {
  unsigned bits = 0;
  const char* end = digits.data() + digits.size();
  auto [p, ec] = std::from_chars(digits.data(), end, bits);
  if (digits.empty() || digits.size() > 3 || ec != std::errc() || p != end || bits > max_bits) {
    return std::nullopt;
  }
  return bits;
}

}  // namespace

std::optional<IpBytes> parse_ip(std::string_view text) {
  // inet_pton needs a NUL-terminated string; anything longer than an IPv6 text form is invalid.
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN || text.find('\0') != text.npos) {
    return std::nullopt;
  }
  char buf[INET6_ADDRSTRLEN] = {};
  std::memcpy(buf, text.data(), text.size());
  IpBytes out{};
  in_addr v4{};
  if (::inet_pton(AF_INET, buf, &v4) == 1) {
    out[10] = 0xff;
    out[11] = 0xff;
    std::memcpy(out.data() + 12, &v4, sizeof v4);
    return out;
  }
  in6_addr v6{};
  if (::inet_pton(AF_INET6, buf, &v6) == 1) {
    std::memcpy(out.data(), &v6, sizeof v6);
    return out;
  }
  return std::nullopt;
}

std::optional<Cidr> Cidr::parse(std::string_view text) {
  auto slash = text.find('/');
  auto address = text.substr(0, slash);
  auto ip = parse_ip(address);
  if (!ip) {
    return std::nullopt;
  }
  bool v4 = address.find(':') == std::string_view::npos;
  unsigned max_bits = v4 ? 32 : 128;
  unsigned bits = max_bits;
  if (slash != std::string_view::npos) {
    auto parsed = parse_bits(text.substr(slash + 1), max_bits);
    if (!parsed) {
      return std::nullopt;
    }
    bits = *parsed;
  }
  Cidr c;
  c.v4_ = v4;
  c.bits_ = v4 ? kV4MappedBits + bits : bits;
  c.base_ = *ip;
  for (unsigned i = 0; i < c.base_.size(); ++i) {
    c.base_[i] &= mask_byte(c.bits_, i);
  }
  return c;
}

bool Cidr::contains(const IpBytes& ip) const {
  for (unsigned i = 0; i < ip.size(); ++i) {
    if ((ip[i] & mask_byte(bits_, i)) != base_[i]) {
      return false;
    }
  }
  return true;
}

std::string Cidr::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (v4_) {
    ::inet_ntop(AF_INET, base_.data() + 12, buf, sizeof buf);
    return std::string(buf) + "/" + std::to_string(bits_ - kV4MappedBits);
  }
  ::inet_ntop(AF_INET6, base_.data(), buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(bits_);
}

bool is_v4_mapped(const IpBytes& ip) {
  static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(ip.data(), kMapped, sizeof kMapped) == 0;
}

std::string to_string(const IpBytes& ip) {
  if (is_v4_mapped(ip)) {
    // By hand: glibc's inet_ntop formats IPv4 with sprintf, and ban lookups name the client on
    // every request while bans are active.
    std::string out;  // at most 15 characters: no allocation
    for (int i = 12; i < 16; ++i) {
      unsigned v = ip[i];
      if (v >= 100) {
        out += static_cast<char>('0' + v / 100);
      }
      if (v >= 10) {
        out += static_cast<char>('0' + v / 10 % 10);
      }
      out += static_cast<char>('0' + v % 10);
      if (i != 15) {
        out += '.';
      }
    }
    return out;
  }
  char buf[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET6, ip.data(), buf, sizeof buf);
  return buf;
}

IpBytes client_network(const IpBytes& ip, unsigned ipv6_prefix) {
  if (ipv6_prefix >= 128 || is_v4_mapped(ip)) {
    return ip;
  }
  IpBytes out = ip;
  for (unsigned i = 0; i < out.size(); ++i) {
    out[i] &= mask_byte(ipv6_prefix, i);
  }
  return out;
}

std::string client_network_text(const IpBytes& ip, unsigned ipv6_prefix) {
  if (ipv6_prefix >= 128 || is_v4_mapped(ip)) {
    return to_string(ip);
  }
  std::string out = to_string(client_network(ip, ipv6_prefix));
  out += '/';
  out += std::to_string(ipv6_prefix);
  return out;
}

bool any_contains(std::span<const Cidr> nets, const IpBytes& ip) {
  return std::any_of(nets.begin(), nets.end(), [&](const Cidr& n) { return n.contains(ip); });
}

}  // namespace gatehouse::http
