#include "http/cidr.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace gatehouse::http {
namespace {

IpBytes ip(std::string_view text) {
  auto parsed = parse_ip(text);
  EXPECT_TRUE(parsed.has_value()) << text;
  return parsed.value_or(IpBytes{});
}

Cidr cidr(std::string_view text) {
  auto parsed = Cidr::parse(text);
  EXPECT_TRUE(parsed.has_value()) << text;
  return parsed.value_or(Cidr{});
}

// --- parse_ip ------------------------------------------------------------------------------------

TEST(ParseIp, Ipv4IsMappedIntoIpv6) {
  IpBytes expected{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 1, 7};
  EXPECT_EQ(ip("192.168.1.7"), expected);
  EXPECT_EQ(ip("::ffff:192.168.1.7"), expected);
}

TEST(ParseIp, Ipv6) {
  IpBytes loopback{};
  loopback[15] = 1;
  EXPECT_EQ(ip("::1"), loopback);
  IpBytes doc{0x20, 0x01, 0x0d, 0xb8};
  doc[15] = 0x42;
  EXPECT_EQ(ip("2001:db8::42"), doc);
  EXPECT_EQ(ip("2001:DB8::42"), doc);
}

TEST(ParseIp, RejectsWhatIsNotAnAddress) {
  for (auto text : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", " 1.2.3.4", "1.2.3.4 ",
                    "[::1]", "::1/128", "1.2.3.4:80", "fe80::1%eth0", "example.com",
                    ":::", "1:2:3:4:5:6:7:8:9", "0000:0000:0000:0000:0000:0000:0000:0000:0000"}) {
    EXPECT_FALSE(parse_ip(text).has_value()) << text;
  }
}

TEST(ParseIp, RejectsEmbeddedNul) {
  EXPECT_FALSE(parse_ip(std::string_view("1.2.3.4\0x", 9)).has_value());
}

// --- Cidr::parse / to_string ---------------------------------------------------------------------

TEST(CidrParse, CanonicalTextRoundTrips) {
  for (auto text : {"10.0.0.0/8", "192.168.1.7/32", "0.0.0.0/0", "::1/128", "::/0", "2001:db8::/32",
                    "fe80::/10", "::ffff:10.0.0.0/104"}) {
    EXPECT_EQ(cidr(text).to_string(), text);
  }
}

TEST(CidrParse, BareAddressIsAHostPrefix) {
  EXPECT_EQ(cidr("192.168.1.7").to_string(), "192.168.1.7/32");
  EXPECT_EQ(cidr("::1").to_string(), "::1/128");
}

TEST(CidrParse, HostBitsAreMaskedOff) {
  EXPECT_EQ(cidr("10.1.2.3/8").to_string(), "10.0.0.0/8");
  EXPECT_EQ(cidr("192.168.1.255/25").to_string(), "192.168.1.128/25");
  EXPECT_EQ(cidr("2001:db8:ffff::1/33").to_string(), "2001:db8:8000::/33");
}

TEST(CidrParse, RejectsBadPrefixes) {
  for (auto text : {"", "/8", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/-1", "10.0.0.0/+8",
                    "10.0.0.0/8/8", "10.0.0.0/8a", "10.0.0.0/ 8", "10.0.0.0 /8", "10.0.0/8",
                    "10.0.0.0/0008", "10.0.0.0/4294967304", "[::1]/128", "localhost/8"}) {
    EXPECT_FALSE(Cidr::parse(text).has_value()) << text;
  }
}

// --- contains ------------------------------------------------------------------------------------

TEST(CidrContains, Ipv4Prefix) {
  auto net = cidr("10.0.0.0/8");
  EXPECT_TRUE(net.contains(ip("10.0.0.0")));
  EXPECT_TRUE(net.contains(ip("10.255.255.255")));
  EXPECT_TRUE(net.contains(ip("::ffff:10.1.2.3")));
  EXPECT_FALSE(net.contains(ip("11.0.0.0")));
  EXPECT_FALSE(net.contains(ip("9.255.255.255")));
  // The same 32 bits outside the IPv4-mapped space are a different address.
  EXPECT_FALSE(net.contains(ip("::a00:1")));
}

TEST(CidrContains, OddPrefixLengths) {
  auto net = cidr("192.168.1.128/25");
  EXPECT_TRUE(net.contains(ip("192.168.1.128")));
  EXPECT_TRUE(net.contains(ip("192.168.1.255")));
  EXPECT_FALSE(net.contains(ip("192.168.1.127")));
  auto v6 = cidr("2001:db8::/33");
  EXPECT_TRUE(v6.contains(ip("2001:db8:7fff::1")));
  EXPECT_FALSE(v6.contains(ip("2001:db8:8000::1")));
}

TEST(CidrContains, HostPrefixMatchesOnlyItself) {
  EXPECT_TRUE(cidr("127.0.0.1").contains(ip("127.0.0.1")));
  EXPECT_FALSE(cidr("127.0.0.1").contains(ip("127.0.0.2")));
  EXPECT_TRUE(cidr("::1").contains(ip("::1")));
  EXPECT_FALSE(cidr("::1").contains(ip("::2")));
  EXPECT_FALSE(cidr("::1").contains(ip("127.0.0.1")));
}

TEST(CidrContains, Ipv4ZeroPrefixIsEveryIpv4AddressOnly) {
  auto net = cidr("0.0.0.0/0");
  EXPECT_TRUE(net.contains(ip("1.2.3.4")));
  EXPECT_TRUE(net.contains(ip("255.255.255.255")));
  EXPECT_FALSE(net.contains(ip("::1")));
  EXPECT_FALSE(net.contains(ip("2001:db8::1")));
}

TEST(CidrContains, Ipv6ZeroPrefixIsEverything) {
  auto net = cidr("::/0");
  EXPECT_TRUE(net.contains(ip("1.2.3.4")));
  EXPECT_TRUE(net.contains(ip("2001:db8::1")));
}

TEST(CidrContains, MappedIpv6PrefixMatchesIpv4Text) {
  auto net = cidr("::ffff:10.0.0.0/104");
  EXPECT_TRUE(net.contains(ip("10.9.8.7")));
  EXPECT_FALSE(net.contains(ip("11.0.0.1")));
}

TEST(CidrContains, DefaultConstructedIsAnEmptyHostPrefix) {
  EXPECT_TRUE(Cidr{}.contains(IpBytes{}));
  EXPECT_FALSE(Cidr{}.contains(ip("::1")));
}

// --- any_contains --------------------------------------------------------------------------------

TEST(AnyContains, ChecksEveryNetwork) {
  std::vector<Cidr> nets{cidr("10.0.0.0/8"), cidr("fd00::/8"), cidr("192.168.0.1")};
  EXPECT_TRUE(any_contains(nets, ip("10.2.3.4")));
  EXPECT_TRUE(any_contains(nets, ip("fd12::1")));
  EXPECT_TRUE(any_contains(nets, ip("192.168.0.1")));
  EXPECT_FALSE(any_contains(nets, ip("192.168.0.2")));
  EXPECT_FALSE(any_contains(nets, ip("fe80::1")));
  EXPECT_FALSE(any_contains({}, ip("10.2.3.4")));
}

// --- to_string / client_network ------------------------------------------------------------------

TEST(IpToString, Ipv4ByHandMatchesInetNtop) {
  for (auto text : {"0.0.0.0", "1.2.3.4", "10.0.0.255", "192.168.100.7", "255.255.255.255"}) {
    EXPECT_EQ(to_string(ip(text)), text);
  }
  EXPECT_EQ(to_string(ip("::ffff:203.0.113.9")), "203.0.113.9");
  EXPECT_EQ(to_string(ip("2001:DB8::0:1")), "2001:db8::1");
}

TEST(ClientNetwork, Ipv6IsCutToThePrefix) {
  EXPECT_EQ(client_network_text(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), 64), "2001:db8:1:2::/64");
  EXPECT_EQ(client_network_text(ip("2001:db8:1:2::1"), 64), "2001:db8:1:2::/64");
  EXPECT_EQ(client_network(ip("2001:db8:1:2:ffff::"), 64), ip("2001:db8:1:2::"));
  EXPECT_EQ(client_network_text(ip("2001:db8:1:2::1"), 48), "2001:db8:1::/48");
  EXPECT_EQ(client_network_text(ip("2001:db8:1:2::1"), 56), "2001:db8:1::/56");
  EXPECT_EQ(client_network_text(ip("2001:db8:1:2ff::1"), 56), "2001:db8:1:200::/56");
  EXPECT_EQ(client_network_text(ip("ffff::1"), 1), "8000::/1");
  EXPECT_EQ(client_network_text(ip("2001:db8::7"), 127), "2001:db8::6/127");
  // Two addresses of one /64 are one client; the next /64 is another.
  EXPECT_EQ(client_network(ip("2001:db8:0:1::1"), 64),
            client_network(ip("2001:db8:0:1:ffff::9"), 64));
  EXPECT_NE(client_network(ip("2001:db8:0:1::1"), 64), client_network(ip("2001:db8:0:2::1"), 64));
}

TEST(ClientNetwork, Prefix128IsTheAddressItself) {
  EXPECT_EQ(client_network_text(ip("2001:db8::1"), 128), "2001:db8::1");
  EXPECT_EQ(client_network(ip("2001:db8::1"), 128), ip("2001:db8::1"));
}

TEST(ClientNetwork, Ipv4AndMappedAreUnchanged) {
  for (unsigned bits : {1u, 64u, 96u, 128u}) {
    EXPECT_EQ(client_network_text(ip("203.0.113.7"), bits), "203.0.113.7");
    EXPECT_EQ(client_network_text(ip("::ffff:203.0.113.7"), bits), "203.0.113.7");
    EXPECT_EQ(client_network(ip("203.0.113.7"), bits), ip("203.0.113.7"));
  }
  // ::/64 holds the mapped range's neighbours, but a real IPv6 address there is still cut.
  EXPECT_EQ(client_network_text(ip("::1"), 64), "::/64");
}

}  // namespace
}  // namespace gatehouse::http
