#include "http/json.hpp"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
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

// --- append_integer, append_thousandths ----------------------------------------------------------

std::string thousandths(std::uint64_t n) {
  std::string out = "x";
  append_thousandths(out, n);
  return out.substr(1);
}

TEST(AppendThousandths, ThreeDecimalsAlways) {
  EXPECT_EQ(thousandths(0), "0.000");
  EXPECT_EQ(thousandths(7), "0.007");
  EXPECT_EQ(thousandths(999), "0.999");
  EXPECT_EQ(thousandths(1000), "1.000");
  EXPECT_EQ(thousandths(12345), "12.345");
  EXPECT_EQ(thousandths(108'000'000), "108000.000");
  EXPECT_EQ(thousandths(std::numeric_limits<std::uint64_t>::max()), "18446744073709551.615");
}

// What the access log wrote before (fmt's {:.3f} of n / 1000.0), for durations up to 2^43 us (100
// days): the same text. (Beyond ~2^50 the float has too few digits left for the third decimal;
// the integer form stays exact.)
TEST(AppendThousandths, MatchesFormattingTheQuotientAsAFloat) {
  std::mt19937_64 rng(42);
  for (int i = 0; i < 100'000; ++i) {
    const std::uint64_t n = i < 20'000 ? static_cast<std::uint64_t>(i) : rng() >> (21 + i % 40);
    ASSERT_EQ(thousandths(n), fmt::format("{:.3f}", static_cast<double>(n) / 1000.0)) << n;
  }
}

TEST(AppendInteger, DecimalOfEitherSignedness) {
  for (std::uint64_t n : {std::uint64_t{0}, std::uint64_t{9}, std::uint64_t{10}, std::uint64_t{200},
                          std::numeric_limits<std::uint64_t>::max()}) {
    std::string out = "[";
    append_integer(out, n);
    EXPECT_EQ(out.substr(1), std::to_string(n));
    EXPECT_EQ(out.front(), '[');
  }
  for (std::int64_t n : {std::int64_t{-1}, std::int64_t{0}, std::int64_t{1'700'000'000},
                         std::numeric_limits<std::int64_t>::min()}) {
    std::string out = "[";
    append_integer(out, n);
    EXPECT_EQ(out.substr(1), std::to_string(n));
  }
}

}  // namespace
}  // namespace gatehouse::http
