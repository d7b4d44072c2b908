// canonical_path: the byte tables (every byte raw and escaped), slash merging, refusals, the
// copy-free fast path, idempotence, and the property routing relies on: prefix matching on
// canonical strings equals prefix matching on fully decoded ones.
#include "http/canonical_path.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <string_view>

#include "http/target.hpp"

namespace gatehouse::http {
namespace {

using namespace std::string_view_literals;

constexpr std::string_view kPcharExtra = "-._~!$&'()*+,;=:@";

bool is_pchar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != 0 && kPcharExtra.find(static_cast<char>(c)) != std::string_view::npos);
}

std::string hex2(unsigned char c, bool upper) {
  const char* digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  return {digits[c >> 4], digits[c & 0xf]};
}

std::string show(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c < 0x20 || c >= 0x7f) {
      out += "\\x" + hex2(c, false);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

// The canonical form, or "!reason".
std::string canon(std::string_view raw, bool merge = true) {
  auto r = canonical_path(raw, merge);
  if (!r.reason.empty()) {
    return "!" + std::string(r.reason);
  }
  return std::string(r.view(raw));
}

TEST(CanonicalPath, AlreadyCanonicalTakesNoCopy) {
  constexpr std::string_view kCanonical[] = {
      "/"sv,
      "/api/generate"sv,
      "/static/app.min.js"sv,
      "/.well-known/acme-challenge/x"sv,
      "/a/..b/c.."sv,
      "/a/.../b"sv,
      "/caf%C3%A9"sv,
      "/a%20b%25c%3Fd%23e+f"sv,
      "/x:y@z!$&'()*+,;=~_-."sv,
      "/;x"sv,
      "/a/"sv,
  };
  for (auto raw : kCanonical) {
    auto r = canonical_path(raw, true);
    EXPECT_TRUE(r.reason.empty()) << show(raw) << ": " << r.reason;
    EXPECT_FALSE(r.changed) << show(raw);
    EXPECT_TRUE(r.path.empty()) << show(raw);
    EXPECT_EQ(r.view(raw).data(), raw.data());
  }
}

TEST(CanonicalPath, Examples) {
  EXPECT_EQ(canon("/api/%67enerate"), "/api/generate");
  EXPECT_EQ(canon("/%61dmin"), "/admin");
  EXPECT_EQ(canon("//admin"), "/admin");
  EXPECT_EQ(canon("//admin", false), "//admin");
  EXPECT_EQ(canon("/a///b//c//"), "/a/b/c/");
  EXPECT_EQ(canon("//%61dmin//x"), "/admin/x");
  EXPECT_EQ(canon("/%7e%7Eu"), "/~~u");
  EXPECT_EQ(canon("/caf%c3%a9"), "/caf%C3%A9");
  EXPECT_EQ(canon("/caf\xc3\xa9"), "/caf%C3%A9");
  EXPECT_EQ(canon("/a%20b%25c%3fd%23e%2Bf"), "/a%20b%25c%3Fd%23e+f");
  EXPECT_EQ(canon("/%3a%40%3B%3D%2C"), "/:@;=,");
  EXPECT_EQ(canon("/%252e%252e/x"), "/%252e%252e/x");  // decoded once only
  EXPECT_EQ(canon("/a\"b<c>d[e]f^g`h{i|j}k"), "/a%22b%3Cc%3Ed%5Be%5Df%5Eg%60h%7Bi%7Cj%7Dk");
  EXPECT_EQ(canon("/a?b"), "/a%3Fb");  // only reachable from config: a target's '?' ends the path
  EXPECT_EQ(canon("/%2e%2e%2e/x"), "/.../x");
  EXPECT_EQ(canon("/%2ehidden"), "/.hidden");
}

TEST(CanonicalPath, EveryEscapedByte) {
  for (int i = 0; i < 256; ++i) {
    auto c = static_cast<unsigned char>(i);
    for (bool upper : {false, true}) {
      std::string raw = "/a%" + hex2(c, upper) + "b";
      std::string expected;
      if (c == '/') {
        expected = "!encoded slash in path";
      } else if (c == '\\') {
        expected = "!backslash in path";
      } else if (c == 0) {
        expected = "!NUL in path";
      } else if (is_pchar(c)) {
        expected = std::string("/a") + static_cast<char>(c) + "b";
      } else {
        expected = "/a%" + hex2(c, true) + "b";
      }
      EXPECT_EQ(canon(raw), expected) << show(raw);
    }
  }
}

TEST(CanonicalPath, EveryRawByte) {
  for (int i = 0; i < 256; ++i) {
    auto c = static_cast<unsigned char>(i);
    std::string raw = std::string("/a") + static_cast<char>(c) + "b";
    std::string expected;
    if (c == '/') {
      expected = "/a/b";
    } else if (c == '\\') {
      expected = "!backslash in path";
    } else if (c == '#') {
      expected = "!fragment in request target";
    } else if (c == 0) {
      expected = "!NUL in path";
    } else if (c == '%') {
      expected = "!bad percent-escape in path";  // "%b" then the end
    } else if (is_pchar(c)) {
      expected = raw;
    } else {
      expected = "/a%" + hex2(c, true) + "b";
    }
    EXPECT_EQ(canon(raw), expected) << show(raw);
  }
}

TEST(CanonicalPath, Refusals) {
  struct Case {
    std::string_view raw;
    std::string_view reason;
  };
  constexpr Case kCases[] = {
      {""sv, "path does not start with '/'"sv},
      {"a/b"sv, "path does not start with '/'"sv},
      {"%2Fa"sv, "path does not start with '/'"sv},
      {"/a/.."sv, "dot segment in path"sv},
      {"/a/./b"sv, "dot segment in path"sv},
      {"/a/%2E%2e/b"sv, "dot segment in path"sv},
      {"/a/.%2E"sv, "dot segment in path"sv},
      {"/a//../b"sv, "dot segment in path"sv},
      {"/..;jsessionid=1/admin"sv, "dot segment in path"sv},
      {"/.%3Bx/admin"sv, "dot segment in path"sv},
      {"/a/%"sv, "bad percent-escape in path"sv},
      {"/a/%4"sv, "bad percent-escape in path"sv},
      {"/a/%x1"sv, "bad percent-escape in path"sv},
      {"/a/%1x"sv, "bad percent-escape in path"sv},
      {"/a%2f"sv, "encoded slash in path"sv},
      {"/a%5C"sv, "backslash in path"sv},
      {"/a\\"sv, "backslash in path"sv},
      {"/a%00"sv, "NUL in path"sv},
      {"/a#b"sv, "fragment in request target"sv},
  };
  for (const auto& c : kCases) {
    for (bool merge : {true, false}) {
      auto r = canonical_path(c.raw, merge);
      EXPECT_EQ(r.reason, c.reason) << show(c.raw);
      EXPECT_FALSE(r.changed);
    }
  }
}

TEST(CanonicalTargetPath, QueryIsLeftAlone) {
  auto r = canonical_target_path("/%61pi?x=/../%2f#", true);
  EXPECT_EQ(r.reason, "fragment in request target"sv);
  r = canonical_target_path("/%61pi?x=/../%2f%zz\\", true);
  EXPECT_EQ(r.reason, ""sv);
  EXPECT_EQ(r.path, "/api");
  r = canonical_target_path("/api?x=%61", true);
  EXPECT_FALSE(r.changed);
  EXPECT_EQ(target_path("/a?b?c"), "/a");
}

// --- properties over generated paths ------------------------------------------------------------

// A random path from pieces that exercise every rule: pchar and other literals, escapes of any
// byte in either case, UTF-8 escapes, repeated slashes, dots.
std::string random_path(std::mt19937& rng) {
  static constexpr std::string_view kLiterals = "abcAZ09-._~!$&'()*+,;=:@\"<>[]^`{|}";
  auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
  std::string out = "/";
  std::size_t pieces = 1 + pick(8);
  for (std::size_t i = 0; i < pieces; ++i) {
    switch (pick(9)) {
      case 0:
      case 1:
        out += kLiterals[pick(kLiterals.size())];
        break;
      case 2: {
        auto c = static_cast<unsigned char>(pick(256));
        out += "%" + hex2(c, pick(2) == 0);
        break;
      }
      case 3:
        out += "%" + hex2(static_cast<unsigned char>("agmz"[pick(4)]), pick(2) == 0);
        break;
      case 4:
        out += "/";
        break;
      case 5:
        out += "//";
        break;
      case 6:
        out += pick(2) == 0 ? "." : "%2e";
        break;
      case 7:
        out += "%C3%A9";  // é
        break;
      default:
        out += static_cast<char>(0x80 + pick(128));  // obs-text, raw
        break;
    }
  }
  return out;
}

std::string merged(std::string s) {
  std::string out;
  for (char c : s) {
    if (!(c == '/' && !out.empty() && out.back() == '/')) {
      out += c;
    }
  }
  return out;
}

std::string decode_merged(std::string_view raw) {
  std::string d;
  EXPECT_TRUE(percent_decode(raw, d, false)) << show(raw);
  return merged(d);
}

TEST(CanonicalPathProperty, IdempotentAndDecodesLikeTheRaw) {
  std::mt19937 rng(20261201);
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    auto raw = random_path(rng);
    auto r = canonical_path(raw, true);
    if (!r.reason.empty()) {
      continue;
    }
    ++accepted;
    auto c = std::string(r.view(raw));
    auto again = canonical_path(c, true);
    ASSERT_TRUE(again.reason.empty()) << show(raw) << " -> " << show(c);
    ASSERT_FALSE(again.changed) << show(raw) << " -> " << show(c);
    ASSERT_EQ(decode_merged(c), decode_merged(raw)) << show(raw);
    ASSERT_EQ(r.changed, c != raw);
  }
  EXPECT_GT(accepted, 5000);
}

// Prefix matching on canonical strings equals prefix matching on decoded strings (slashes merged):
// canonicalisation spells every decoded byte one fixed way, with no spelling a prefix of another.
TEST(CanonicalPathProperty, PrefixMatchingEqualsDecodedPrefixMatching) {
  std::mt19937 rng(7);
  std::vector<std::pair<std::string, std::string>> prefixes;  // canonical, decoded
  while (prefixes.size() < 200) {
    auto raw = random_path(rng);
    auto r = canonical_path(raw, true);
    if (r.reason.empty()) {
      prefixes.emplace_back(std::string(r.view(raw)), decode_merged(raw));
    }
  }
  int matches = 0;
  int compared = 0;
  for (int i = 0; i < 5000; ++i) {
    auto raw = random_path(rng);
    // Paths that extend a prefix's raw spelling, re-spelled, so that matches are common.
    if (i % 2 == 0) {
      std::string spelled;
      for (unsigned char ch : prefixes[i % prefixes.size()].second) {
        if (ch != '/' && ch != '%' && ch != '.' && rng() % 2 == 0) {
          spelled += "%" + hex2(ch, rng() % 2 == 0);
        } else if (ch == '/' && rng() % 3 == 0) {
          spelled += "//";
        } else if (ch == '%' || ch == '#') {
          spelled += "%" + hex2(ch, true);
        } else {
          spelled += static_cast<char>(ch);
        }
      }
      raw = spelled + raw;
    }
    auto r = canonical_path(raw, true);
    if (!r.reason.empty()) {
      continue;
    }
    auto c = r.view(raw);
    auto d = decode_merged(raw);
    for (const auto& [pc, pd] : prefixes) {
      bool by_canonical = c.starts_with(pc);
      ASSERT_EQ(by_canonical, std::string_view(d).starts_with(pd))
          << show(raw) << " prefix " << show(pc);
      matches += by_canonical;
      ++compared;
    }
  }
  EXPECT_GT(compared, 200'000);
  EXPECT_GT(matches, 1000);
}

}  // namespace
}  // namespace gatehouse::http
