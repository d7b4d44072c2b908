#include "http/headers.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::http {
namespace {

std::string json_string(std::string_view s) {
  std::string out;
  append_json_string(out, s);
  return out;
}

// --- is_hop_by_hop -------------------------------------------------------------------------------

TEST(IsHopByHop, ListedHeadersInAnyCase) {
  for (auto name : {"Connection", "keep-alive", "TE", "Trailer", "Transfer-Encoding", "UPGRADE",
                    "Proxy-Connection", "proxy-authenticate", "Proxy-Authorization"}) {
    EXPECT_TRUE(is_hop_by_hop(name)) << name;
  }
}

TEST(IsHopByHop, EndToEndHeadersAreNot) {
  for (auto name : {"Host", "Content-Length", "Content-Type", "X-Forwarded-For", "Trailers", "T",
                    "Authorization", "Expect", "", "connection ", "Keep-Alive2"}) {
    EXPECT_FALSE(is_hop_by_hop(name)) << '"' << name << '"';
  }
}

// --- split_tokens / named_by_connection
// ------------------------------------------------------------

TEST(SplitTokens, TrimsAndSkipsEmptyTokens) {
  auto tokens = split_tokens(" close ,X-Foo,\t keep-alive\t,, ,x-bar");
  std::vector<std::string_view> expected = {"close", "X-Foo", "keep-alive", "x-bar"};
  EXPECT_EQ(tokens, expected);
}

TEST(SplitTokens, EdgeCases) {
  EXPECT_TRUE(split_tokens("").empty());
  EXPECT_TRUE(split_tokens(" , ,\t,").empty());
  EXPECT_EQ(split_tokens("close"), std::vector<std::string_view>{"close"});
  EXPECT_EQ(split_tokens(",close,"), std::vector<std::string_view>{"close"});
  // Spaces inside a token are kept: only the ends are trimmed.
  EXPECT_EQ(split_tokens(" a b "), std::vector<std::string_view>{"a b"});
}

TEST(NamedByConnection, CaseInsensitiveExactMatch) {
  auto tokens = split_tokens("close, X-Secret-Hop");
  EXPECT_TRUE(named_by_connection("x-secret-hop", tokens));
  EXPECT_TRUE(named_by_connection("X-SECRET-HOP", tokens));
  EXPECT_TRUE(named_by_connection("Close", tokens));
  EXPECT_FALSE(named_by_connection("X-Secret", tokens));
  EXPECT_FALSE(named_by_connection("X-Secret-Hop2", tokens));
  EXPECT_FALSE(named_by_connection("x-secret-hop", {}));
}

// --- redact_target ----------------------------------------------------------------------------

TEST(RedactTarget, NoQueryIsUnchanged) {
  EXPECT_EQ(redact_target("/plain/path"), "/plain/path");
  EXPECT_EQ(redact_target("/"), "/");
  EXPECT_EQ(redact_target(""), "");
  EXPECT_EQ(redact_target("/x?"), "/x?");
}

TEST(RedactTarget, SecretParamsRedactedOthersKept) {
  EXPECT_EQ(redact_target("/x?token=abc&page=2"), "/x?token=REDACTED&page=2");
  EXPECT_EQ(redact_target("/x?api_key=1&password=2&code=3&q=hello"),
            "/x?api_key=REDACTED&password=REDACTED&code=REDACTED&q=hello");
  EXPECT_EQ(redact_target("/cb?state=s1&code=xyz"), "/cb?state=s1&code=REDACTED");
}

TEST(RedactTarget, EveryListedWordCaseInsensitive) {
  for (auto name : {"token", "ACCESS_TOKEN", "apiKey", "client_secret", "Password", "passwd",
                    "authorization", "X-Amz-Signature", "sessionid", "jwt", "Code"}) {
    EXPECT_EQ(redact_target("/p?" + std::string(name) + "=v"),
              "/p?" + std::string(name) + "=REDACTED")
        << name;
  }
  for (auto name : {"page", "q", "user", "tok", "pass"}) {
    EXPECT_EQ(redact_target("/p?" + std::string(name) + "=v"), "/p?" + std::string(name) + "=v")
        << name;
  }
}

TEST(RedactTarget, EmptyValuesAndBareNames) {
  EXPECT_EQ(redact_target("/x?token=&a="), "/x?token=REDACTED&a=");
  // A name without '=' carries no value to hide.
  EXPECT_EQ(redact_target("/x?token&a=1"), "/x?token&a=1");
  // Only the first '=' separates the name.
  EXPECT_EQ(redact_target("/x?token=a=b&c=d=e"), "/x?token=REDACTED&c=d=e");
}

TEST(RedactTarget, RepeatedAmpersandsKept) {
  EXPECT_EQ(redact_target("/x?a=1&&token=s&"), "/x?a=1&&token=REDACTED&");
  EXPECT_EQ(redact_target("/x?&&&"), "/x?&&&");
  EXPECT_EQ(redact_target("/x?&token=s"), "/x?&token=REDACTED");
}

TEST(RedactTarget, RepeatedSecretParam) {
  EXPECT_EQ(redact_target("/x?token=a&token=b"), "/x?token=REDACTED&token=REDACTED");
}

// --- append_json_string -----------------------------------------------------------------------

TEST(AppendJsonString, PlainTextIsQuoted) {
  EXPECT_EQ(json_string(""), R"("")");
  EXPECT_EQ(json_string("hello world"), R"("hello world")");
}

TEST(AppendJsonString, AppendsToExistingContent) {
  std::string out = "{\"k\":";
  append_json_string(out, "v");
  EXPECT_EQ(out, R"({"k":"v")");
}

TEST(AppendJsonString, QuotesAndBackslash) {
  EXPECT_EQ(json_string(R"(a"b\c)"), R"("a\"b\\c")");
  EXPECT_EQ(json_string(R"(\")"), R"("\\\"")");
}

TEST(AppendJsonString, NamedControlEscapes) {
  EXPECT_EQ(json_string("a\nb\rc\td"), R"("a\nb\rc\td")");
}

TEST(AppendJsonString, OtherControlCharsAsUnicodeEscapes) {
  EXPECT_EQ(json_string(std::string_view("\0", 1)), R"("\u0000")");
  EXPECT_EQ(json_string("\x01"), R"("\u0001")");
  EXPECT_EQ(json_string("\x08\x0c"), R"("\u0008\u000c")");
  EXPECT_EQ(json_string("\x1b[31m"), R"("\u001b[31m")");
  EXPECT_EQ(json_string("\x1f"), R"("\u001f")");
  EXPECT_EQ(json_string("\x7f"), R"("\u007f")");
  EXPECT_EQ(json_string(" ~"), R"(" ~")");
}

TEST(AppendJsonString, Utf8PassesThrough) {
  EXPECT_EQ(json_string("caf\xc3\xa9"), "\"caf\xc3\xa9\"");
}

TEST(AppendJsonString, BytesThatAreNotUtf8BecomeReplacementCharacters) {
  EXPECT_EQ(json_string("a\xff"), R"("a\ufffd")");
  EXPECT_EQ(json_string("\xc3"), R"("\ufffd")");                      // truncated sequence
  EXPECT_EQ(json_string("\xc0\xaf"), R"("\ufffd\ufffd")");            // overlong '/'
  EXPECT_EQ(json_string("\xed\xa0\x80"), R"("\ufffd\ufffd\ufffd")");  // a surrogate
  EXPECT_EQ(json_string("\xf4\x90\x80\x80"), R"("\ufffd\ufffd\ufffd\ufffd")");  // > U+10FFFF
  EXPECT_EQ(json_string("\xf0\x9f\x98\x80x"), "\"\xf0\x9f\x98\x80x\"");         // U+1F600 kept
}

TEST(AppendJsonString, EveryByteStringIsValidJson) {
  // Every pair of bytes, so every lead byte meets every follower.
  for (int a = 0; a < 256; ++a) {
    for (int b = 0; b < 256; b += 5) {
      std::string in{static_cast<char>(a), static_cast<char>(b), '\xbf'};
      ASSERT_TRUE(nlohmann::json::accept(json_string(in))) << a << " " << b;
    }
  }
}

TEST(AppendJsonString, RoundTripsThroughJsonParser) {
  std::string input;
  for (int c = 0; c < 0x80; ++c) {
    input.push_back(static_cast<char>(c));
  }
  input += "\xc3\xa9\xe2\x82\xac";
  auto parsed = nlohmann::json::parse(json_string(input));
  ASSERT_TRUE(parsed.is_string());
  EXPECT_EQ(parsed.get<std::string>(), input);
}

}  // namespace
}  // namespace gatehouse::http
