#pragma once
// The PROXY protocol (HAProxy, versions 1 and 2) that L4 load balancers put before the first byte
// of a connection to say who the client is. Pure and incremental: `parse` is called with the
// bytes received so far (a growing prefix) and answers need_more, done or error; it never needs a
// byte past the header, so whatever follows (a TLS ClientHello, an HTTP request) can stay unread.
// Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "http/cidr.hpp"

namespace gatehouse::http::proxy_protocol {

// v1: at most 107 bytes, "PROXY UNKNOWN" with the longest addresses and ports (spec 2.1).
inline constexpr std::size_t kMaxV1Bytes = 107;
// v2: 12-byte signature, version/command, family/transport, 2-byte length.
inline constexpr std::size_t kV2FixedBytes = 16;
// v2 address block of AF_UNIX, the largest: two 108-byte paths.
inline constexpr std::size_t kV2MaxAddressBytes = 216;
// Enough bytes for `parse` to finish any header (v2 TLVs after the addresses are not needed).
inline constexpr std::size_t kMaxPrefixBytes = kV2FixedBytes + kV2MaxAddressBytes;

enum class Status { need_more, done, error };

struct Header {
  int version = 0;  // 1 or 2
  // True when the header gives no client address to use: v2 LOCAL (a load balancer's own health
  // check), v1 UNKNOWN, v2 PROXY with an unspecified or AF_UNIX family. The socket's peer stays.
  bool local = true;
  IpBytes source{};
  std::uint16_t source_port = 0;
  IpBytes destination{};
  std::uint16_t destination_port = 0;
};

struct Result {
  Status status = Status::need_more;
  // done: the bytes the whole header occupies. For v2 this counts the TLVs after the addresses,
  // which may not have been given yet: the caller skips them unread.
  std::size_t length = 0;
  Header header;
  std::string_view error;  // error: why, for logs and tests
};

Result parse(std::string_view bytes);

}  // namespace gatehouse::http::proxy_protocol
