#include "http/json.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace gatehouse::http {
namespace {

std::string json_string(std::string_view s) {
  std::string out;
  append_json_string(out, s);
  return out;
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

TEST(AppendJsonString, EscapesAtTheEdgesAndBetweenRunsOfPlainBytes) {
  EXPECT_EQ(json_string("\"abc\""), R"("\"abc\"")");
  EXPECT_EQ(json_string("\n\n"), R"("\n\n")");
  EXPECT_EQ(json_string("ab\tcd\x01"
                        "ef"),
            R"("ab\tcd\u0001ef")");
  EXPECT_EQ(json_string("caf\xc3\xa9 \xff!"),
            "\"caf\xc3\xa9 \\ufffd!\"");  // UTF-8 kept, not UTF-8 replaced
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
