#include "http/proxy_protocol.hpp"

#include <algorithm>
#include <cstring>

namespace gatehouse::http::proxy_protocol {
namespace {

constexpr std::string_view kV1Prefix = "PROXY ";
constexpr std::string_view kV2Signature("\r\n\r\n\0\r\nQUIT\n", 12);

Result fail(std::string_view why) {
  Result r;
  r.status = Status::error;
  r.error = why;
  return r;
}

// True when `bytes` is a (possibly partial) prefix of `word` or starts with it.
bool matches_start(std::string_view bytes, std::string_view word) {
  auto n = std::min(bytes.size(), word.size());
  return bytes.substr(0, n) == word.substr(0, n);
}

// Decimal 0..65535 without sign or blanks.
bool parse_port(std::string_view s, std::uint16_t& out) {
  if (s.empty() || s.size() > 5) {
    return false;
  }
  unsigned v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      return false;
    }
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v > 65535) {
    return false;
  }
  out = static_cast<std::uint16_t>(v);
  return true;
}

bool parse_v1_address(std::string_view s, bool v6, IpBytes& out) {
  // TCP4 takes dotted quads only, TCP6 IPv6 text only (parse_ip accepts both).
  bool has_colon = s.find(':') != std::string_view::npos;
  if (has_colon != v6) {
    return false;
  }
  auto ip = parse_ip(s);
  if (!ip) {
    return false;
  }
  out = *ip;
  return true;
}

Result parse_v1(std::string_view bytes) {
  auto lf = bytes.substr(0, kMaxV1Bytes).find('\n');
  if (lf == std::string_view::npos) {
    if (bytes.size() >= kMaxV1Bytes) {
      return fail("v1 header longer than 107 bytes");
    }
    Result r;
    if (bytes.find('\r') != std::string_view::npos && bytes.find('\r') != bytes.size() - 1) {
      return fail("v1 header: CR not followed by LF");
    }
    return r;
  }
  if (lf == 0 || bytes[lf - 1] != '\r') {
    return fail("v1 header: line not ended by CRLF");
  }
  std::string_view line = bytes.substr(kV1Prefix.size(), lf - 1 - kV1Prefix.size());
  Result r;
  r.status = Status::done;
  r.length = lf + 1;
  r.header.version = 1;
  if (line.starts_with("UNKNOWN")) {
    // The sender does not know the client (spec 2.1): whatever follows is ignored.
    if (line.size() > 7 && line[7] != ' ') {
      return fail("v1 header: unknown protocol");
    }
    return r;
  }
  std::string_view fields[5];
  std::size_t n = 0;
  while (true) {
    auto space = line.find(' ');
    if (n == 5) {
      return fail("v1 header: too many fields");
    }
    fields[n++] = line.substr(0, space);
    if (space == std::string_view::npos) {
      break;
    }
    line.remove_prefix(space + 1);
  }
  if (n != 5) {
    return fail("v1 header: expected protocol, two addresses and two ports");
  }
  bool v6 = false;
  if (fields[0] == "TCP6") {
    v6 = true;
  } else if (fields[0] != "TCP4") {
    return fail("v1 header: unknown protocol");
  }
  if (!parse_v1_address(fields[1], v6, r.header.source) ||
      !parse_v1_address(fields[2], v6, r.header.destination)) {
    return fail("v1 header: invalid address");
  }
  if (!parse_port(fields[3], r.header.source_port) ||
      !parse_port(fields[4], r.header.destination_port)) {
    return fail("v1 header: invalid port");
  }
  r.header.local = false;
  return r;
}

std::uint16_t be16(const char* p) {
  return static_cast<std::uint16_t>((static_cast<unsigned char>(p[0]) << 8) |
                                    static_cast<unsigned char>(p[1]));
}

Result parse_v2(std::string_view bytes) {
  if (bytes.size() < kV2FixedBytes) {
    return {};
  }
  auto ver_cmd = static_cast<unsigned char>(bytes[12]);
  auto fam = static_cast<unsigned char>(bytes[13]);
  std::size_t len = be16(bytes.data() + 14);
  if ((ver_cmd >> 4) != 2) {
    return fail("v2 header: unsupported version");
  }
  unsigned command = ver_cmd & 0xf;
  if (command > 1) {
    return fail("v2 header: unknown command");
  }
  Result r;
  r.header.version = 2;
  r.length = kV2FixedBytes + len;
  if (command == 0) {
    // LOCAL: the connection is the sender's own (a health check); addresses are ignored.
    r.status = Status::done;
    return r;
  }
  std::size_t need = 0;
  bool v6 = false;
  switch (fam) {
    case 0x00:  // UNSPEC: use the socket's addresses (spec 2.2)
      r.status = Status::done;
      return r;
    case 0x11:  // TCP over IPv4
      need = 12;
      break;
    case 0x21:  // TCP over IPv6
      need = 36;
      v6 = true;
      break;
    case 0x31:  // stream over AF_UNIX: no address a rule can use
      need = kV2MaxAddressBytes;
      break;
    default:
      return fail("v2 header: unsupported address family or transport");
  }
  if (len < need) {
    return fail("v2 header: length shorter than its addresses");
  }
  if (bytes.size() < kV2FixedBytes + need) {
    return {};
  }
  r.status = Status::done;
  if (fam == 0x31) {
    return r;
  }
  const char* a = bytes.data() + kV2FixedBytes;
  if (v6) {
    std::memcpy(r.header.source.data(), a, 16);
    std::memcpy(r.header.destination.data(), a + 16, 16);
    r.header.source_port = be16(a + 32);
    r.header.destination_port = be16(a + 34);
  } else {
    // IPv4 is held as ::ffff:a.b.c.d, like everywhere else.
    r.header.source[10] = r.header.source[11] = 0xff;
    r.header.destination[10] = r.header.destination[11] = 0xff;
    std::memcpy(r.header.source.data() + 12, a, 4);
    std::memcpy(r.header.destination.data() + 12, a + 4, 4);
    r.header.source_port = be16(a + 8);
    r.header.destination_port = be16(a + 10);
  }
  r.header.local = false;
  return r;
}

}  // namespace

Result parse(std::string_view bytes) {
  if (bytes.empty()) {
    return {};
  }
  if (matches_start(bytes, kV2Signature)) {
    return bytes.size() < kV2Signature.size() ? Result{} : parse_v2(bytes);
  }
  if (matches_start(bytes, kV1Prefix)) {
    return bytes.size() < kV1Prefix.size() ? Result{} : parse_v1(bytes);
  }
  return fail("no PROXY protocol header");
}

}  // namespace gatehouse::http::proxy_protocol
