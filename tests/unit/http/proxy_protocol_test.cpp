#include "http/proxy_protocol.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::http::proxy_protocol {
namespace {

using namespace std::string_literals;

const std::string kSig = "\r\n\r\n\0\r\nQUIT\n"s;

std::string be16(unsigned v) {
  return {static_cast<char>(v >> 8), static_cast<char>(v & 0xff)};
}

// A v2 header: signature, version/command byte, family byte, length, then `body`.
std::string v2(unsigned char ver_cmd, unsigned char fam, const std::string& body) {
  return kSig + static_cast<char>(ver_cmd) + static_cast<char>(fam) + be16(body.size()) + body;
}

std::string v4_body() {
  // 192.0.2.10:51000 -> 198.51.100.1:443
  return "\xc0\x00\x02\x0a"s + "\xc6\x33\x64\x01"s + be16(51000) + be16(443);
}

std::string v6_body() {
  std::string src = "\x20\x01\x0d\xb8"s + std::string(11, '\0') + "\x07"s;  // 2001:db8::7
  std::string dst = std::string(15, '\0') + "\x01"s;                        // ::1
  return src + dst + be16(4711) + be16(8443);
}

// Every prefix shorter than the header is need_more: the parser never decides early.
void expect_prefixes_need_more(const std::string& header, std::size_t upto) {
  for (std::size_t n = 0; n < upto; ++n) {
    EXPECT_EQ(parse(std::string_view(header).substr(0, n)).status, Status::need_more) << n;
  }
}

TEST(ProxyProtocolV1, Tcp4) {
  std::string h = "PROXY TCP4 192.0.2.10 198.51.100.1 51000 443\r\n";
  auto r = parse(h + "GET / HTTP/1.1\r\n");
  ASSERT_EQ(r.status, Status::done) << r.error;
  EXPECT_EQ(r.length, h.size());
  EXPECT_EQ(r.header.version, 1);
  EXPECT_FALSE(r.header.local);
  EXPECT_EQ(to_string(r.header.source), "192.0.2.10");
  EXPECT_EQ(r.header.source_port, 51000);
  EXPECT_EQ(to_string(r.header.destination), "198.51.100.1");
  EXPECT_EQ(r.header.destination_port, 443);
  expect_prefixes_need_more(h, h.size());
}

TEST(ProxyProtocolV1, Tcp6) {
  std::string h = "PROXY TCP6 2001:db8::7 ::1 4711 8443\r\n";
  auto r = parse(h);
  ASSERT_EQ(r.status, Status::done) << r.error;
  EXPECT_EQ(r.length, h.size());
  EXPECT_EQ(to_string(r.header.source), "2001:db8::7");
  EXPECT_EQ(r.header.source_port, 4711);
}

TEST(ProxyProtocolV1, Unknown) {
  for (std::string h : {"PROXY UNKNOWN\r\n"s, "PROXY UNKNOWN ffff::1 ::1 1 2\r\n"s}) {
    auto r = parse(h + "\x16\x03\x01");
    ASSERT_EQ(r.status, Status::done) << h;
    EXPECT_EQ(r.length, h.size());
    EXPECT_TRUE(r.header.local);
  }
}

TEST(ProxyProtocolV1, LongestHeaderIs107Bytes) {
  std::string addr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  std::string tcp6 = "PROXY TCP6 " + addr + " " + addr + " 65535 65535\r\n";
  auto r6 = parse(tcp6);
  ASSERT_EQ(r6.status, Status::done) << r6.error;
  EXPECT_EQ(r6.length, 104u);
  // The spec's worst case: UNKNOWN followed by the longest addresses.
  std::string h = "PROXY UNKNOWN " + addr + " " + addr + " 65535 65535\r\n";
  ASSERT_EQ(h.size(), kMaxV1Bytes);
  auto r = parse(h);
  ASSERT_EQ(r.status, Status::done) << r.error;
  EXPECT_EQ(r.length, kMaxV1Bytes);
  // 107 bytes without the end of the line: no valid header can follow.
  EXPECT_EQ(parse("PROXY UNKNOWN " + std::string(93, 'x')).status, Status::error);
  EXPECT_EQ(parse("PROXY UNKNOWN " + std::string(92, 'x')).status, Status::need_more);
}

TEST(ProxyProtocolV1, Malformed) {
  for (std::string bad : {
           "PROXY TCP4 192.0.2.10 198.51.100.1 51000\r\n"s,        // a field missing
           "PROXY TCP4 192.0.2.10 198.51.100.1 51000 443 1\r\n"s,  // one too many
           "PROXY TCP4 192.0.2.10  198.51.100.1 51000 443\r\n"s,   // double space
           "PROXY TCP4 2001:db8::1 ::1 51000 443\r\n"s,            // family mismatch
           "PROXY TCP6 192.0.2.10 198.51.100.1 51000 443\r\n"s,    // family mismatch
           "PROXY TCP4 192.0.2.300 198.51.100.1 51000 443\r\n"s,   // bad address
           "PROXY TCP4 192.0.2.10 198.51.100.1 65536 443\r\n"s,    // port too big
           "PROXY TCP4 192.0.2.10 198.51.100.1 -1 443\r\n"s,       // not a port
           "PROXY UDP4 192.0.2.10 198.51.100.1 51000 443\r\n"s,    // not TCP
           "PROXY TCP4 192.0.2.10 198.51.100.1 51000 443\n"s,      // bare LF
           "PROXY TCP4 192.0.2.10 198.51.100.1 51000 443\rX\n"s,   // CR not before LF
           "PROXY UNKNOWNX\r\n"s,
           "proxy TCP4 192.0.2.10 198.51.100.1 51000 443\r\n"s,  // case matters
           "GET / HTTP/1.1\r\nHost: x\r\n\r\n"s,                 // no header at all
           "\x16\x03\x01\x02\x00"s,                              // a TLS ClientHello
       }) {
    auto r = parse(bad);
    EXPECT_EQ(r.status, Status::error) << bad;
    EXPECT_FALSE(r.error.empty());
  }
  // Decided from the first byte that cannot start a header.
  EXPECT_EQ(parse("G").status, Status::error);
  EXPECT_EQ(parse("PROXX").status, Status::error);
  EXPECT_EQ(parse("PROX").status, Status::need_more);
}

TEST(ProxyProtocolV2, ProxyIPv4) {
  auto h = v2(0x21, 0x11, v4_body());
  auto r = parse(h + "GET /");
  ASSERT_EQ(r.status, Status::done) << r.error;
  EXPECT_EQ(r.length, h.size());
  EXPECT_EQ(r.header.version, 2);
  EXPECT_FALSE(r.header.local);
  EXPECT_EQ(to_string(r.header.source), "192.0.2.10");
  EXPECT_EQ(r.header.source_port, 51000);
  EXPECT_EQ(to_string(r.header.destination), "198.51.100.1");
  EXPECT_EQ(r.header.destination_port, 443);
  expect_prefixes_need_more(h, h.size());
}

TEST(ProxyProtocolV2, ProxyIPv6) {
  auto h = v2(0x21, 0x21, v6_body());
  auto r = parse(h);
  ASSERT_EQ(r.status, Status::done) << r.error;
  EXPECT_EQ(r.length, h.size());
  EXPECT_EQ(to_string(r.header.source), "2001:db8::7");
  EXPECT_EQ(r.header.source_port, 4711);
  EXPECT_EQ(r.header.destination_port, 8443);
}

TEST(ProxyProtocolV2, TlvsAreSkippedUnread) {
  // PP2_TYPE_AUTHORITY and an AWS VPC endpoint TLV after the addresses.
  std::string tlvs = "\x02"s + be16(11) + "example.com" + "\xea"s + be16(4) + "\x01vpc";
  auto h = v2(0x21, 0x11, v4_body() + tlvs);
  // Done once the addresses are in; the length tells the caller how much more to drop.
  auto r = parse(h.substr(0, kV2FixedBytes + 12));
  ASSERT_EQ(r.status, Status::done) << r.error;
  EXPECT_EQ(r.length, h.size());
  EXPECT_EQ(to_string(r.header.source), "192.0.2.10");
  // The largest length field is accepted: the TLVs are skipped, never buffered.
  auto big = kSig + "\x21\x11"s + be16(65535) + v4_body();
  auto rb = parse(big);
  ASSERT_EQ(rb.status, Status::done);
  EXPECT_EQ(rb.length, kV2FixedBytes + 65535);
}

TEST(ProxyProtocolV2, LocalKeepsThePeer) {
  for (auto h : {v2(0x20, 0x00, ""), v2(0x20, 0x11, v4_body()), v2(0x20, 0x77, "xyz")}) {
    auto r = parse(h);
    ASSERT_EQ(r.status, Status::done) << r.error;
    EXPECT_TRUE(r.header.local);
    EXPECT_EQ(r.length, h.size());
  }
}

TEST(ProxyProtocolV2, UnspecAndUnixKeepThePeer) {
  auto unspec = v2(0x21, 0x00, "");
  EXPECT_TRUE(parse(unspec).header.local);
  auto unix_h = v2(0x21, 0x31, std::string(216, '\0'));
  auto r = parse(unix_h);
  ASSERT_EQ(r.status, Status::done);
  EXPECT_TRUE(r.header.local);
  EXPECT_EQ(parse(unix_h.substr(0, 100)).status, Status::need_more);
  ASSERT_LE(unix_h.size(), kMaxPrefixBytes);
}

TEST(ProxyProtocolV2, Malformed) {
  struct Case {
    std::string bytes;
    const char* what;
  };
  for (const auto& c : {
           Case{v2(0x11, 0x11, v4_body()), "version 1 in a v2 signature"},
           Case{v2(0x31, 0x11, v4_body()), "version 3"},
           Case{v2(0x22, 0x11, v4_body()), "command 2"},
           Case{v2(0x21, 0x12, v4_body()), "UDP over IPv4"},
           Case{v2(0x21, 0x22, v6_body()), "UDP over IPv6"},
           Case{v2(0x21, 0x41, v4_body()), "unknown family"},
           Case{v2(0x21, 0x11, v4_body().substr(0, 11)), "length shorter than IPv4 addresses"},
           Case{v2(0x21, 0x21, v4_body()), "length shorter than IPv6 addresses"},
           Case{v2(0x21, 0x31, std::string(100, '\0')), "length shorter than unix addresses"},
           Case{"\r\n\r\n\0\r\nQUIX\n"s + "\x21\x11"s + be16(12) + v4_body(), "bad signature"},
       }) {
    auto r = parse(c.bytes);
    EXPECT_EQ(r.status, Status::error) << c.what;
    EXPECT_FALSE(r.error.empty()) << c.what;
  }
}

TEST(ProxyProtocolV2, TruncatedIsNeedMore) {
  auto h = v2(0x21, 0x21, v6_body());
  expect_prefixes_need_more(h, h.size());
  EXPECT_EQ(parse(kSig.substr(0, 5)).status, Status::need_more);
  EXPECT_EQ(parse("\r\n\r\n\0\r\nQ"s).status, Status::need_more);
  EXPECT_EQ(parse("\r\n\r\n\1"s).status, Status::error);
}

// The session peeks a growing prefix and acts on the first answer that is not need_more, so an
// answer must never change as bytes are added: error stays error, done keeps its length and
// addresses. Checked on every prefix of mutated valid headers (fixed seed: reproducible).
TEST(ProxyProtocol, AnswersAreStableAsBytesArrive) {
  std::vector<std::string> seeds = {
      "PROXY TCP4 192.0.2.10 198.51.100.1 51000 443\r\nGET / HTTP/1.1\r\n\r\n",
      "PROXY TCP6 2001:db8::7 ::1 4711 8443\r\n\x16\x03\x01",
      "PROXY UNKNOWN\r\nGET /",
      v2(0x21, 0x11, v4_body()) + "GET / HTTP/1.1\r\n",
      v2(0x21, 0x21, v6_body() + "\x02"s + be16(3) + "abc") + "\x16\x03",
      v2(0x20, 0x00, ""),
  };
  std::mt19937 rng(20261201);
  const std::string alphabet = "PROXY TCPUNKOW46:.0123456789abcdef\r\n\x21\x11\x20\x00\x0c"s;
  std::size_t done = 0;
  std::size_t errors = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string s = seeds[rng() % seeds.size()];
    for (int m = rng() % 4; m > 0; --m) {
      auto at = rng() % s.size();
      switch (rng() % 3) {
        case 0:
          s[at] = alphabet[rng() % alphabet.size()];
          break;
        case 1:
          s.erase(at, 1);
          break;
        default:
          s.insert(at, 1, alphabet[rng() % alphabet.size()]);
      }
    }
    Result first;
    std::size_t first_at = 0;
    for (std::size_t n = 0; n <= s.size(); ++n) {
      auto r = parse(std::string_view(s).substr(0, n));
      if (first.status == Status::need_more) {
        first = r;
        first_at = n;
        continue;
      }
      ASSERT_EQ(r.status, first.status) << "prefix " << n << " of " << ::testing::PrintToString(s);
      if (r.status == Status::done) {
        ASSERT_EQ(r.length, first.length);
        ASSERT_EQ(r.header.local, first.header.local);
        ASSERT_EQ(r.header.source, first.header.source);
        ASSERT_EQ(r.header.source_port, first.header.source_port);
      }
    }
    if (first.status == Status::done) {
      ++done;
      // Decided without reading past the header; a v1 line is fully inside what was seen.
      ASSERT_GE(first.length, first_at);
      if (first.header.version == 1) {
        ASSERT_EQ(first.length, first_at);
        ASSERT_LE(first.length, kMaxV1Bytes);
      }
      ASSERT_LE(first_at, kMaxPrefixBytes);
    } else if (first.status == Status::error) {
      ++errors;
      ASSERT_LE(first_at, kMaxPrefixBytes);
    }
  }
  // Both outcomes were exercised.
  EXPECT_GT(done, 300u);
  EXPECT_GT(errors, 300u);
}

}  // namespace
}  // namespace gatehouse::http::proxy_protocol
