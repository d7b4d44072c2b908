#include "http/request_id.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <unordered_set>

namespace gatehouse::http {
namespace {

constexpr std::string_view kTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
constexpr std::string_view kParent = "00f067aa0ba902b7";

std::string traceparent(std::string_view version, std::string_view trace, std::string_view parent,
                        std::string_view flags) {
  return std::string(version) + "-" + std::string(trace) + "-" + std::string(parent) + "-" +
         std::string(flags);
}

bool is_lower_hex(std::string_view s) {
  return !s.empty() && s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

struct Parts {
  std::string version, trace, parent, flags;
};

// Splits an outgoing traceparent, failing the test when it is not well-formed.
Parts split(const std::string& tp) {
  EXPECT_EQ(tp.size(), 55u) << tp;
  EXPECT_TRUE(is_valid_traceparent(tp)) << tp;
  if (tp.size() != 55) {
    return {};
  }
  return {tp.substr(0, 2), tp.substr(3, 32), tp.substr(36, 16), tp.substr(53, 2)};
}

// --- is_valid_request_id ----------------------------------------------------------------------

TEST(RequestIdValidation, EmptyIsInvalid) {
  EXPECT_FALSE(is_valid_request_id(""));
}

TEST(RequestIdValidation, LengthLimitIs128) {
  EXPECT_TRUE(is_valid_request_id("a"));
  EXPECT_TRUE(is_valid_request_id(std::string(128, 'a')));
  EXPECT_FALSE(is_valid_request_id(std::string(129, 'a')));
  EXPECT_EQ(kMaxRequestIdLength, 128u);
}

TEST(RequestIdValidation, AllowedCharacters) {
  EXPECT_TRUE(is_valid_request_id("abcdefghijklmnopqrstuvwxyz"));
  EXPECT_TRUE(is_valid_request_id("ABCDEFGHIJKLMNOPQRSTUVWXYZ"));
  EXPECT_TRUE(is_valid_request_id("0123456789"));
  EXPECT_TRUE(is_valid_request_id("req.id_part:1-2"));
  EXPECT_TRUE(is_valid_request_id("-"));
  EXPECT_TRUE(is_valid_request_id("..::__--"));
}

TEST(RequestIdValidation, ForbiddenCharacters) {
  for (std::string_view bad :
       {"a b",      "a\"b", "a\nb", "a\rb",    "a\tb",        "a,b",         "a;b",
        "a=b",      "a/b",  "a\\b", "a{b",     "a}b",         "a+b",         "a@b",
        "<script>", "'",    " ",    "abc\x7f", "caf\xc3\xa9", "\xe2\x82\xac"}) {
    EXPECT_FALSE(is_valid_request_id(bad)) << bad;
  }
  EXPECT_FALSE(is_valid_request_id(std::string_view("ab\0c", 4)));
}

// --- IdGenerator ------------------------------------------------------------------------------

TEST(IdGenerator, RequestIdsAre32LowercaseHexAndDistinct) {
  IdGenerator gen;
  std::unordered_set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    auto id = gen.request_id();
    ASSERT_EQ(id.size(), 32u) << id;
    ASSERT_TRUE(is_lower_hex(id)) << id;
    ASSERT_TRUE(is_valid_request_id(id)) << id;
    seen.insert(std::move(id));
  }
  EXPECT_EQ(seen.size(), 10000u);
}

TEST(IdGenerator, ThreadGeneratorIdsAreDistinct) {
  std::unordered_set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    seen.insert(thread_id_generator().request_id());
  }
  EXPECT_EQ(seen.size(), 10000u);
  EXPECT_EQ(&thread_id_generator(), &thread_id_generator());
}

TEST(IdGenerator, SeparateGeneratorsDiffer) {
  IdGenerator a, b;
  EXPECT_NE(a.request_id(), b.request_id());
}

TEST(IdGenerator, SpanIdsAre16LowercaseHexNotZero) {
  IdGenerator gen;
  std::unordered_set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    auto id = gen.span_id();
    ASSERT_EQ(id.size(), 16u) << id;
    ASSERT_TRUE(is_lower_hex(id)) << id;
    ASSERT_NE(id, "0000000000000000");
    seen.insert(std::move(id));
  }
  EXPECT_EQ(seen.size(), 1000u);
}

// --- traceparent ------------------------------------------------------------------------------

TEST(Traceparent, Validation) {
  EXPECT_TRUE(is_valid_traceparent(traceparent("00", kTrace, kParent, "01")));
  EXPECT_TRUE(is_valid_traceparent(traceparent("00", kTrace, kParent, "00")));
  EXPECT_TRUE(is_valid_traceparent(traceparent("01", kTrace, kParent, "01")));
  EXPECT_FALSE(is_valid_traceparent(""));
  EXPECT_FALSE(is_valid_traceparent(traceparent("ff", kTrace, kParent, "01")));
  EXPECT_FALSE(is_valid_traceparent(traceparent("00", std::string(32, '0'), kParent, "01")));
  EXPECT_FALSE(is_valid_traceparent(traceparent("00", kTrace, std::string(16, '0'), "01")));
  EXPECT_FALSE(
      is_valid_traceparent(traceparent("00", "4BF92F3577B34DA6A3CE929D0E0E4736", kParent, "01")));
  EXPECT_FALSE(is_valid_traceparent(traceparent("00", kTrace, "00F067AA0BA902B7", "01")));
  EXPECT_FALSE(is_valid_traceparent(traceparent("00", kTrace, kParent, "0g")));
  EXPECT_FALSE(is_valid_traceparent(traceparent("00", kTrace.substr(1), kParent, "01")));
  EXPECT_FALSE(is_valid_traceparent(traceparent("00", kTrace, kParent, "01") + "0"));
  std::string no_dashes = traceparent("00", kTrace, kParent, "01");
  no_dashes[2] = '_';
  EXPECT_FALSE(is_valid_traceparent(no_dashes));
}

TEST(Traceparent, ValidIncomingKeepsTraceAndFlagsWithNewParent) {
  IdGenerator gen;
  for (std::string_view flags : {"01", "00", "03"}) {
    auto incoming = traceparent("00", kTrace, kParent, flags);
    auto out = next_traceparent(incoming, "some-request-id", gen);
    auto p = split(out);
    EXPECT_EQ(p.version, "00");
    EXPECT_EQ(p.trace, kTrace);
    EXPECT_EQ(p.flags, flags);
    EXPECT_NE(p.parent, kParent);
    EXPECT_TRUE(is_lower_hex(p.parent));
  }
}

TEST(Traceparent, IncomingWinsOverHexRequestId) {
  IdGenerator gen;
  auto out = next_traceparent(traceparent("00", kTrace, kParent, "00"),
                              "0123456789abcdef0123456789abcdef", gen);
  EXPECT_EQ(split(out).trace, kTrace);
}

TEST(Traceparent, OtherIncomingVersionIsAnsweredAsVersion00) {
  IdGenerator gen;
  auto out = next_traceparent(traceparent("01", kTrace, kParent, "01"), "rid", gen);
  auto p = split(out);
  EXPECT_EQ(p.version, "00");
  EXPECT_EQ(p.trace, kTrace);
}

TEST(Traceparent, NewParentIdEachCall) {
  IdGenerator gen;
  auto incoming = traceparent("00", kTrace, kParent, "01");
  EXPECT_NE(split(next_traceparent(incoming, "", gen)).parent,
            split(next_traceparent(incoming, "", gen)).parent);
}

TEST(Traceparent, InvalidIncomingStartsNewTrace) {
  IdGenerator gen;
  std::string wrong_dash = traceparent("00", kTrace, kParent, "01");
  wrong_dash[35] = 'x';
  const std::string invalid[] = {
      "",
      "garbage",
      traceparent("00", kTrace, kParent, "01").substr(1),                    // too short
      traceparent("00", kTrace, kParent, "01") + "-extra",                   // too long
      traceparent("00", "4BF92F3577B34DA6A3CE929D0E0E4736", kParent, "01"),  // uppercase
      traceparent("00", std::string(32, '0'), kParent, "01"),                // all-zero trace
      traceparent("00", kTrace, std::string(16, '0'), "00"),                 // all-zero parent
      traceparent("ff", kTrace, kParent, "00"),                              // forbidden version
      wrong_dash,
  };
  for (const auto& in : invalid) {
    auto p = split(next_traceparent(in, "not-hex-request-id", gen));
    EXPECT_EQ(p.version, "00") << in;
    EXPECT_NE(p.trace, kTrace) << in;
    EXPECT_NE(p.trace, std::string(32, '0')) << in;
    EXPECT_EQ(p.flags, "01") << in;
  }
}

TEST(Traceparent, NewTracesAreDistinct) {
  IdGenerator gen;
  auto a = split(next_traceparent("", "x", gen));
  auto b = split(next_traceparent("", "x", gen));
  EXPECT_NE(a.trace, b.trace);
  EXPECT_NE(a.parent, b.parent);
}

TEST(Traceparent, HexRequestIdReusedAsTraceId) {
  IdGenerator gen;
  auto rid = gen.request_id();
  auto p = split(next_traceparent("", rid, gen));
  EXPECT_EQ(p.trace, rid);
  EXPECT_EQ(p.flags, "01");
  // Also when the incoming traceparent is present but invalid.
  EXPECT_EQ(split(next_traceparent(traceparent("ff", kTrace, kParent, "01"), rid, gen)).trace, rid);
}

TEST(Traceparent, NonTraceIdRequestIdsAreNotReused) {
  IdGenerator gen;
  const std::string not_usable[] = {
      "0123456789ABCDEF0123456789ABCDEF",   // uppercase
      std::string(32, '0'),                 // all zero: an invalid trace id
      "0123456789abcdef0123456789abcde",    // 31 chars
      "0123456789abcdef0123456789abcdef0",  // 33 chars
      "0123456789abcdef0123456789abcdeg",   // not hex
  };
  for (const auto& rid : not_usable) {
    auto p = split(next_traceparent("", rid, gen));
    EXPECT_NE(p.trace, rid) << rid;
    EXPECT_TRUE(is_lower_hex(p.trace)) << rid;
  }
}

}  // namespace
}  // namespace gatehouse::http
