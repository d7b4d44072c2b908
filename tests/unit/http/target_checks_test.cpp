// Tables of accepted and rejected values for the two request-head checks the session applies
// before routing (docs/security.md, "Host and connection" and "Request line and target"):
// is_valid_host (RFC 9112 section 3.2) and canonical_target_path's refusals (path confusion; its
// canonical forms are tested in canonical_path_test.cpp).
#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "http/canonical_path.hpp"
#include "http/target.hpp"

namespace gatehouse::http {
namespace {

using namespace std::string_view_literals;

// Printable form of a test value (controls as \xNN) for failure messages.
std::string show(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c < 0x20 || c >= 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

// --- is_valid_host -------------------------------------------------------------------------------

TEST(IsValidHost, Accepted) {
  constexpr std::string_view kAccepted[] = {
      ""sv,                // empty Host is allowed (RFC 9112 3.2: empty authority)
      "gatehouse.test"sv,  // reg-name
      "localhost"sv,
      "LOCALHOST"sv,  // case is irrelevant
      "a"sv,
      "api-v2.example.com"sv,
      "under_score.example"sv,  // unreserved: '_' and '~'
      "tilde~name"sv,
      "example.com."sv,           // fully qualified, trailing dot
      "xn--bcher-kva.example"sv,  // punycode
      "sub!$&'()*+;=delims"sv,    // sub-delims are legal in a reg-name
      "pct%20encoded"sv,          // pct-encoded
      "127.0.0.1"sv,              // IPv4
      "192.168.1.10"sv,
      "[::1]"sv,  // IP-literal
      "[::]"sv,
      "[2001:db8::42]"sv,
      "[2001:DB8::42]"sv,
      "[::ffff:192.0.2.1]"sv,   // IPv4-mapped form
      "gatehouse.test:8080"sv,  // with a port
      "127.0.0.1:80"sv,
      "[::1]:8443"sv,
      "a:0"sv,
      "a:65535"sv,
      ":8080"sv,  // empty host with a port
  };
  for (auto host : kAccepted) {
    EXPECT_TRUE(is_valid_host(host)) << show(host);
  }
}

TEST(IsValidHost, Rejected) {
  constexpr std::string_view kRejected[] = {
      "a, b"sv,  // two hosts in one line
      "a,b"sv,
      "a b"sv,  // blanks
      " a"sv,
      "a "sv,
      "a\tb"sv,
      "a/b"sv,        // paths
      "a/b@c"sv,      // userinfo and path
      "user@host"sv,  // userinfo
      "user:pw@host"sv,
      "host/"sv,
      "host?q"sv,  // query
      "host#f"sv,  // fragment
      "a\\b"sv,    // backslash
      "a\"b"sv,
      "a<b>"sv,
      "a\x00"
      "b"sv,     // NUL
      "a\rb"sv,  // CR, LF
      "a\nb"sv,
      "a\x7f"sv,                // DEL
      "caf\xc3\xa9.example"sv,  // raw non-ASCII
      "host:port"sv,            // port not digits
      "host:8o"sv,
      "host:-1"sv,
      "host:+80"sv,
      "host:123456"sv,  // more than five digits
      "a:b:c"sv,        // two colons outside brackets
      "::1"sv,          // IPv6 without brackets
      "2001:db8::1"sv,
      "[]"sv,  // empty or too short literal
      "[:]"sv,
      "[::1"sv,  // unclosed
      "::1]"sv,
      "[::1]x"sv,  // junk after the literal
      "[::1]:"sv,  // colon without a port
      "[::1]:80x"sv,
      "[::1]]"sv,
      "[[::1]]"sv,
      "[::1%eth0]"sv,  // zone id
      "[::g]"sv,       // not hex
      "[v1.fe]"sv,     // IPvFuture is not accepted
      "a[b]"sv,
      "host:"sv,  // colon without a port (RFC allows an empty port; refused)
  };
  for (auto host : kRejected) {
    EXPECT_FALSE(is_valid_host(host)) << show(host);
  }
}

// --- canonical_target_path: refusals ------------------------------------------------------------

std::string_view unsafe_target_reason(std::string_view target) {
  return canonical_target_path(target, true).reason;
}

TEST(UnsafeTargetReason, Accepted) {
  constexpr std::string_view kAccepted[] = {
      "/"sv,
      "/a"sv,
      "/a/b/c"sv,
      "/a/"sv,
      "//double//slashes"sv,
      "/a?x=1&y=2"sv,
      "/a?x=/../b"sv,  // dot segments in the query are data
      "/a?x=./"sv,
      "/a?p=a\\b"sv,                      // a backslash in the query is data
      "/.well-known/acme-challenge/x"sv,  // a segment that merely starts with a dot
      "/.hidden"sv,
      "/a/.b"sv,
      "/a/..b"sv,
      "/a/b.."sv,
      "/a/.../b"sv,  // three dots is a name
      "/a/..../b"sv,
      "/file.tar.gz"sv,
      "/a%20b"sv,              // other escapes stay encoded
      "/a/%252e%252e/b"sv,     // double-encoded: one decoding gives "%2e%2e", not ".."
      "/a/%2e%2e%2e/b"sv,      // "..." is a name
      "/a/%2ehidden"sv,        // ".hidden"
      "/\xc3\xa9t\xc3\xa9"sv,  // obs-text is escaped, not refused
  };
  for (auto target : kAccepted) {
    EXPECT_EQ(unsafe_target_reason(target), ""sv) << show(target);
  }
}

TEST(UnsafeTargetReason, DotSegmentsRejected) {
  constexpr std::string_view kRejected[] = {
      "/.."sv,
      "/."sv,
      "/../"sv,
      "/./"sv,
      "/a/.."sv,  // at the end
      "/a/."sv,
      "/a/../b"sv,
      "/a/./b"sv,
      "/public/../admin"sv,
      "/public/./../admin"sv,
      "//.."sv,
      "/a//../b"sv,
      "/a/..?x=1"sv,  // before the query
      "/a/.?x=1"sv,
      "/a/%2e%2e/b"sv,  // percent-encoded dots, any case
      "/a/%2E%2E/b"sv,
      "/a/%2e%2E"sv,
      "/a/.%2e/b"sv,
      "/a/%2e./b"sv,
      "/a/..%3bx"sv,  // an encoded ';' ends the segment name as a raw one does
      "/a/%2E;x/b"sv,
      "/a/%2e/b"sv,
      "/a/%2E"sv,
  };
  for (auto target : kRejected) {
    EXPECT_EQ(unsafe_target_reason(target), "dot segment in path"sv) << show(target);
  }
}

TEST(UnsafeTargetReason, FragmentRejected) {
  constexpr std::string_view kRejected[] = {
      "/a#frag"sv, "/#"sv, "/a?x=1#f"sv, "/a?x=#"sv, "#"sv, "/a/../b#f"sv,
  };
  for (auto target : kRejected) {
    EXPECT_EQ(unsafe_target_reason(target), "fragment in request target"sv) << show(target);
  }
}

TEST(UnsafeTargetReason, BackslashInPathRejected) {
  constexpr std::string_view kRejected[] = {
      "/a\\b"sv,
      "/a\\..\\b"sv,
      "/\\\\evil.example/x"sv,
      "/a\\?x=1"sv,
  };
  for (auto target : kRejected) {
    EXPECT_EQ(unsafe_target_reason(target), "backslash in path"sv) << show(target);
  }
}

// What the proxy used to forward opaquely and now refuses: the application would decode them into
// something else than what was routed (an encoded slash is a slash to Werkzeug and Starlette).
TEST(UnsafeTargetReason, EncodedSlashNulAndBadEscapesRejected) {
  struct Case {
    std::string_view target;
    std::string_view reason;
  };
  constexpr Case kRejected[] = {
      {"/a%2fb"sv, "encoded slash in path"sv},
      {"/a%2F..%2Fb"sv, "encoded slash in path"sv},
      {"/a/%2f../b"sv, "encoded slash in path"sv},
      {"/a%5cb"sv, "backslash in path"sv},
      {"/a%5Cb"sv, "backslash in path"sv},
      {"/a%00b"sv, "NUL in path"sv},
      {"/%2"sv, "bad percent-escape in path"sv},
      {"/a/%"sv, "bad percent-escape in path"sv},
      {"/a/%2g"sv, "bad percent-escape in path"sv},
      {"/a/%g2"sv, "bad percent-escape in path"sv},
      {"/a/%%41"sv, "bad percent-escape in path"sv},
      {"%2f..%2fadmin"sv, "path does not start with '/'"sv},
      {"*"sv, "path does not start with '/'"sv},
      {"\\"sv, "path does not start with '/'"sv},  // validate_head refuses these forms first
      {"http://example.com/a"sv, "path does not start with '/'"sv},
      {""sv, "path does not start with '/'"sv},
  };
  for (const auto& c : kRejected) {
    EXPECT_EQ(unsafe_target_reason(c.target), c.reason) << show(c.target);
  }
}

TEST(UnsafeTargetReason, ReasonIsNonEmptyExactlyWhenUnsafe) {
  // The session treats any non-empty reason as "reply 400": each class names itself.
  EXPECT_FALSE(unsafe_target_reason("/a/../b").empty());
  EXPECT_FALSE(unsafe_target_reason("/a#b").empty());
  EXPECT_FALSE(unsafe_target_reason("/a\\b").empty());
  EXPECT_TRUE(unsafe_target_reason("/a/b").empty());
}

}  // namespace
}  // namespace gatehouse::http
