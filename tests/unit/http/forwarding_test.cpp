#include "http/forwarding.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::http {
namespace {

std::vector<Cidr> nets(std::initializer_list<std::string_view> texts) {
  std::vector<Cidr> out;
  for (auto t : texts) {
    auto c = Cidr::parse(t);
    EXPECT_TRUE(c.has_value()) << t;
    if (c) {
      out.push_back(*c);
    }
  }
  return out;
}

using Lines = std::vector<std::string_view>;

Forwarding xff(std::string_view peer, Lines for_, Lines proto = {}, Lines host = {},
               std::initializer_list<std::string_view> trusted = {"10.0.0.0/8"}) {
  ForwardingLines lines;
  lines.x_forwarded_for = std::move(for_);
  lines.x_forwarded_proto = std::move(proto);
  lines.x_forwarded_host = std::move(host);
  return resolve_forwarding(peer, lines, nets(trusted), ForwardedHeaders::x_forwarded);
}

Forwarding fwd(std::string_view peer, Lines forwarded,
               std::initializer_list<std::string_view> trusted = {"10.0.0.0/8"}) {
  ForwardingLines lines;
  lines.forwarded = std::move(forwarded);
  return resolve_forwarding(peer, lines, nets(trusted), ForwardedHeaders::forwarded);
}

// --- client_ip, one line
// --------------------------------------------------------------------------------

TEST(ClientIp, UntrustedPeerIsTheClient) {
  auto trusted = nets({"10.0.0.0/8"});
  EXPECT_EQ(client_ip("203.0.113.5", "1.2.3.4", trusted), "203.0.113.5");
  EXPECT_EQ(client_ip("203.0.113.5", "", trusted), "203.0.113.5");
}

TEST(ClientIp, NoTrustedProxiesIgnoresForwardedFor) {
  EXPECT_EQ(client_ip("10.0.0.1", "1.2.3.4", {}), "10.0.0.1");
}

TEST(ClientIp, TrustedPeerWithoutForwardedForIsTheClient) {
  auto trusted = nets({"10.0.0.0/8"});
  EXPECT_EQ(client_ip("10.0.0.1", "", trusted), "10.0.0.1");
}

TEST(ClientIp, UnparsablePeerIsReturnedAsIs) {
  auto trusted = nets({"10.0.0.0/8"});
  EXPECT_EQ(client_ip("not-an-ip", "1.2.3.4", trusted), "not-an-ip");
}

TEST(ClientIp, TrustedPeerGivesRightmostUntrustedHop) {
  auto trusted = nets({"10.0.0.0/8", "192.168.0.0/16"});
  EXPECT_EQ(client_ip("10.0.0.1", "1.2.3.4", trusted), "1.2.3.4");
  EXPECT_EQ(client_ip("10.0.0.1", "1.2.3.4, 10.0.0.2", trusted), "1.2.3.4");
  EXPECT_EQ(client_ip("10.0.0.1", "1.2.3.4,192.168.1.1 ,10.9.9.9", trusted), "1.2.3.4");
  // A client can prepend anything: the leftmost (spoofable) entries are never believed.
  EXPECT_EQ(client_ip("10.0.0.1", "6.6.6.6, 1.2.3.4, 10.0.0.2", trusted), "1.2.3.4");
}

TEST(ClientIp, AllHopsTrustedGivesLeftmost) {
  auto trusted = nets({"10.0.0.0/8"});
  EXPECT_EQ(client_ip("10.0.0.1", "10.1.1.1, 10.2.2.2, 10.3.3.3", trusted), "10.1.1.1");
}

TEST(ClientIp, GarbageHopStopsTheWalk) {
  auto trusted = nets({"10.0.0.0/8"});
  // The walk stops at the garbage: the last trusted hop seen is the answer.
  EXPECT_EQ(client_ip("10.0.0.1", "1.2.3.4, garbage, 10.0.0.2", trusted), "10.0.0.2");
  // Garbage right next to the peer: the peer itself.
  EXPECT_EQ(client_ip("10.0.0.1", "1.2.3.4, garbage", trusted), "10.0.0.1");
  EXPECT_EQ(client_ip("10.0.0.1", "1.2.3.4, 1.2.3.4:80", trusted), "10.0.0.1");
  // Garbage to the left of the first untrusted hop is never looked at.
  EXPECT_EQ(client_ip("10.0.0.1", "garbage, 1.2.3.4", trusted), "1.2.3.4");
}

TEST(ClientIp, IPv6) {
  auto trusted = nets({"2001:db8::/32", "10.0.0.0/8"});
  EXPECT_EQ(client_ip("2001:db8::1", "2a00:1450::5, 2001:db8::2", trusted), "2a00:1450::5");
  EXPECT_EQ(client_ip("2001:db8::1", "2001:db8:1::1, 2001:db8::2", trusted), "2001:db8:1::1");
  EXPECT_EQ(client_ip("2a00:1450::1", "1.2.3.4", trusted), "2a00:1450::1");
  // Mixed families along the chain.
  EXPECT_EQ(client_ip("10.0.0.1", "2a00:1450::5, 2001:db8::2", trusted), "2a00:1450::5");
  EXPECT_EQ(client_ip("2001:db8::1", "198.51.100.7", trusted), "198.51.100.7");
}

// --- several field lines (RFC 9110 section 5.3) ----------------------------------------------

TEST(XForwardedFor, SeveralLinesAreOneList) {
  // HAProxy `option forwardfor` appends its own line after the client's: the client's first line
  // must not be the answer, or every request gets a fresh identity.
  EXPECT_EQ(xff("10.0.0.1", {"1.2.3.7", "9.9.9.9"}).client_ip, "9.9.9.9");
  EXPECT_EQ(xff("10.0.0.1", {"1.2.3.8", "9.9.9.9"}).client_ip, "9.9.9.9");
  EXPECT_EQ(xff("10.0.0.1", {"6.6.6.6, 1.2.3.4", "10.0.0.9", "10.0.0.8"}).client_ip, "1.2.3.4");
  EXPECT_EQ(xff("10.0.0.1", {"1.2.3.4", "", " , "}).client_ip, "1.2.3.4");
  EXPECT_EQ(xff("10.0.0.1", {"1.2.3.4", "garbage", "10.0.0.2"}).client_ip, "10.0.0.2");
}

TEST(XForwardedFor, UntrustedPeerReadsNothing) {
  auto f = xff("203.0.113.5", {"1.2.3.4"}, {"https"}, {"evil.test"});
  EXPECT_FALSE(f.trusted_peer);
  EXPECT_EQ(f.client_ip, "203.0.113.5");
  EXPECT_EQ(f.proto, "");
  EXPECT_EQ(f.host, "");
}

TEST(XForwardedFor, CanonicalAddressIsReturned) {
  EXPECT_EQ(xff("10.0.0.1", {"2001:DB8:0:0::1"}).client_ip, "2001:db8::1");
  EXPECT_EQ(xff("10.0.0.1", {"::ffff:1.2.3.4"}).client_ip, "1.2.3.4");
}

TEST(XForwardedProto, NearestTrustedValueWins) {
  EXPECT_EQ(xff("10.0.0.1", {}, {"http", "https"}).proto, "https");
  EXPECT_EQ(xff("10.0.0.1", {}, {"https, http"}).proto, "http");
  EXPECT_EQ(xff("10.0.0.1", {}, {"HTTPS"}).proto, "https");
  EXPECT_EQ(xff("10.0.0.1", {}, {"https", " "}).proto, "https");
  // Only the two schemes gatehouse can stand behind are passed on.
  EXPECT_EQ(xff("10.0.0.1", {}, {"https", "gopher"}).proto, "");
  EXPECT_EQ(xff("10.0.0.1", {}, {}).proto, "");
}

TEST(XForwardedHost, NearestTrustedValueWins) {
  EXPECT_EQ(xff("10.0.0.1", {}, {}, {"evil.test", "app.example.com"}).host, "app.example.com");
  EXPECT_EQ(xff("10.0.0.1", {}, {}, {"evil.test, app.example.com:8443"}).host,
            "app.example.com:8443");
  EXPECT_EQ(xff("10.0.0.1", {}, {}, {"bad host"}).host, "");
}

TEST(XForwardedFamily, IgnoresForwarded) {
  ForwardingLines lines;
  lines.forwarded = {"for=1.2.3.4;proto=https"};
  auto f =
      resolve_forwarding("10.0.0.1", lines, nets({"10.0.0.0/8"}), ForwardedHeaders::x_forwarded);
  EXPECT_EQ(f.client_ip, "10.0.0.1");
  EXPECT_EQ(f.proto, "");
}

// --- RFC 7239 Forwarded -----------------------------------------------------------------------

TEST(Forwarded, ParsesElementsAcrossLines) {
  Lines lines = {R"(for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711")",
                 R"(For="\"q\"";HOST=example.com)"};
  auto list = parse_forwarded(lines);
  ASSERT_TRUE(list.ok);
  ASSERT_EQ(list.elements.size(), 3u);
  EXPECT_EQ(list.elements[0].for_, "192.0.2.60");
  EXPECT_EQ(list.elements[0].proto, "http");
  EXPECT_EQ(list.elements[1].for_, "[2001:db8:cafe::17]:4711");
  EXPECT_EQ(list.elements[2].for_, "\"q\"");
  EXPECT_EQ(list.elements[2].host, "example.com");
}

TEST(Forwarded, RejectsBadSyntax) {
  for (std::string_view bad : {"for", "for=", "=1.2.3.4", "for=\"1.2.3.4", "for=1.2.3.4 x",
                               "for=[::1]", "for=1.2.3.4;for=5.6.7.8", "for = 1.2.3.4"}) {
    Lines lines = {bad};
    EXPECT_FALSE(parse_forwarded(lines).ok) << bad;
  }
  Lines empty_elements = {" , ;, for=1.2.3.4 ,"};
  auto list = parse_forwarded(empty_elements);
  ASSERT_TRUE(list.ok);
  EXPECT_EQ(list.elements.size(), 1u);
}

TEST(Forwarded, NodeAddresses) {
  EXPECT_EQ(forwarded_node_ip("192.0.2.1"), parse_ip("192.0.2.1"));
  EXPECT_EQ(forwarded_node_ip("192.0.2.1:8080"), parse_ip("192.0.2.1"));
  EXPECT_EQ(forwarded_node_ip("192.0.2.1:_port"), parse_ip("192.0.2.1"));
  EXPECT_EQ(forwarded_node_ip("[2001:db8::1]"), parse_ip("2001:db8::1"));
  EXPECT_EQ(forwarded_node_ip("[2001:db8::1]:443"), parse_ip("2001:db8::1"));
  EXPECT_FALSE(forwarded_node_ip("2001:db8::1"));  // IPv6 must be bracketed
  EXPECT_FALSE(forwarded_node_ip("[1.2.3.4]"));
  EXPECT_FALSE(forwarded_node_ip("[2001:db8::1]x"));
  EXPECT_FALSE(forwarded_node_ip("unknown"));
  EXPECT_FALSE(forwarded_node_ip("_hidden"));
  EXPECT_FALSE(forwarded_node_ip(""));
}

TEST(Forwarded, RightmostUntrustedNode) {
  EXPECT_EQ(fwd("10.0.0.1", {"for=1.2.3.4"}).client_ip, "1.2.3.4");
  EXPECT_EQ(fwd("10.0.0.1", {"for=6.6.6.6, for=1.2.3.4", "for=10.0.0.2"}).client_ip, "1.2.3.4");
  EXPECT_EQ(fwd("10.0.0.1", {R"(for="[2001:db8::7]:1234")"}).client_ip, "2001:db8::7");
  EXPECT_EQ(fwd("10.0.0.1", {R"(for="1.2.3.4:5678")"}).client_ip, "1.2.3.4");
  // Untrusted peer: nothing read.
  EXPECT_EQ(fwd("203.0.113.5", {"for=1.2.3.4"}).client_ip, "203.0.113.5");
}

TEST(Forwarded, UnknownAndObfuscatedStopTheWalk) {
  EXPECT_EQ(fwd("10.0.0.1", {"for=1.2.3.4, for=unknown"}).client_ip, "10.0.0.1");
  EXPECT_EQ(fwd("10.0.0.1", {"for=1.2.3.4, for=_hidden, for=10.0.0.3"}).client_ip, "10.0.0.3");
  EXPECT_EQ(fwd("10.0.0.1", {"proto=https"}).client_ip, "10.0.0.1");  // no for=
  // A line that is not RFC 7239 is not believed at all.
  auto f = fwd("10.0.0.1", {"for=1.2.3.4;proto=https", "for=\"oops"});
  EXPECT_EQ(f.client_ip, "10.0.0.1");
  EXPECT_EQ(f.proto, "");
}

TEST(Forwarded, ProtoAndHostFromTheNearestElement) {
  auto f = fwd("10.0.0.1", {"for=1.2.3.4;proto=http;host=evil.test",
                            "for=5.6.7.8;proto=https;host=\"app.example.com:443\""});
  EXPECT_EQ(f.proto, "https");
  EXPECT_EQ(f.host, "app.example.com:443");
  auto g = fwd("10.0.0.1", {"for=1.2.3.4;proto=https, for=5.6.7.8"});
  EXPECT_EQ(g.proto, "");  // the nearest proxy did not say
}

TEST(UpstreamForwardedFor, JoinsAllLines) {
  ForwardingLines lines;
  lines.x_forwarded_for = {"1.2.3.4", " 5.6.7.8 ,9.9.9.9", ""};
  EXPECT_EQ(upstream_forwarded_for(lines, ForwardedHeaders::x_forwarded),
            "1.2.3.4, 5.6.7.8, 9.9.9.9");
  lines.forwarded = {
      R"(for=1.2.3.4, for="[2001:db8::1]:80";proto=https, for=_gw, for="a,b", by=x)"};
  EXPECT_EQ(upstream_forwarded_for(lines, ForwardedHeaders::forwarded),
            "1.2.3.4, 2001:db8::1, _gw, unknown, unknown");
  lines.forwarded = {"for=\"broken"};
  EXPECT_EQ(upstream_forwarded_for(lines, ForwardedHeaders::forwarded), "");
}

}  // namespace
}  // namespace gatehouse::http
