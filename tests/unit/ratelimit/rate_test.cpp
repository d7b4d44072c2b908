// The rate notation: every accepted form, every rejection's message, and the text forms.
#include "ratelimit/rate.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace gatehouse::ratelimit {
namespace {

Rate rate(std::uint64_t count, std::uint64_t multiplier, std::string unit, std::int64_t period_s) {
  return Rate{count, multiplier, std::move(unit), period_s};
}

std::vector<Rate> parsed(std::string_view text) {
  auto out = parse_rates(text);
  EXPECT_EQ(out.error, "") << text;
  return out.rates;
}

TEST(ParseRates, AcceptsEveryForm) {
  struct Case {
    std::string text;
    std::vector<Rate> rates;
  };
  const std::vector<Case> cases{
      {"10/minute", {rate(10, 1, "minute", 60)}},
      {"10 per minute", {rate(10, 1, "minute", 60)}},
      {"10/5 minutes", {rate(10, 5, "minute", 300)}},
      {"10 per 5 minutes", {rate(10, 5, "minute", 300)}},
      {"10/5minutes", {rate(10, 5, "minute", 300)}},
      {"10/1 minute", {rate(10, 1, "minute", 60)}},
      {"1/second", {rate(1, 1, "second", 1)}},
      {"3/seconds", {rate(3, 1, "second", 1)}},
      {"100/hour", {rate(100, 1, "hour", 3600)}},
      {"100 per 2 hours", {rate(100, 2, "hour", 7200)}},
      {"1000/day", {rate(1000, 1, "day", 86400)}},
      {"10/366 days", {rate(10, 366, "day", 366 * 86400)}},
      {"10/31622400 seconds", {rate(10, 31622400, "second", 31622400)}},
      {"1000000000/second", {rate(1000000000, 1, "second", 1)}},
      {"10 PER MINUTE", {rate(10, 1, "minute", 60)}},
      {"10/Minutes", {rate(10, 1, "minute", 60)}},
      {"  10 / minute  ", {rate(10, 1, "minute", 60)}},
      {"\t10\tper\t5\tminutes\t", {rate(10, 5, "minute", 300)}},
      {"007/minute", {rate(7, 1, "minute", 60)}},
      {"200/day; 50/hour", {rate(200, 1, "day", 86400), rate(50, 1, "hour", 3600)}},
      {"200/day,50/hour", {rate(200, 1, "day", 86400), rate(50, 1, "hour", 3600)}},
      {"200/day | 50/hour | 1/second",
       {rate(200, 1, "day", 86400), rate(50, 1, "hour", 3600), rate(1, 1, "second", 1)}},
      // Same period twice is the config's business, not the notation's.
      {"10/minute; 20/minute", {rate(10, 1, "minute", 60), rate(20, 1, "minute", 60)}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    EXPECT_EQ(parsed(c.text), c.rates);
  }
}

TEST(ParseRates, RejectsWithExactMessages) {
  struct Case {
    std::string text;
    std::string error;
  };
  const std::string expected = "expected N/UNIT such as \"10/minute\"";
  const std::vector<Case> cases{
      {"", "invalid rate \"\": " + expected},
      {"   ", "invalid rate \"\": " + expected},
      {"minute", "invalid rate \"minute\": " + expected},
      {"10", "invalid rate \"10\": " + expected},
      {"10/", "invalid rate \"10/\": " + expected},
      {"10 minute", "invalid rate \"10 minute\": " + expected},
      {"10 perminute", "invalid rate \"10 perminute\": " + expected},
      {"10//minute", "invalid rate \"10//minute\": " + expected},
      {"10/5", "invalid rate \"10/5\": " + expected},
      {"-1/minute", "invalid rate \"-1/minute\": " + expected},
      {"1.5/minute", "invalid rate \"1.5/minute\": " + expected},
      {"10/minute extra", "invalid rate \"10/minute extra\": " + expected},
      {"10/5 5 minutes", "invalid rate \"10/5 5 minutes\": " + expected},
      {"ten/minute", "invalid rate \"ten/minute\": " + expected},
      {"10/fortnight",
       "invalid rate \"10/fortnight\": unknown unit \"fortnight\" (expected second, minute, hour "
       "or "
       "day)"},
      {"10/Month",
       "invalid rate \"10/Month\": unknown unit \"month\" (expected second, minute, hour or day)"},
      {"10/minutess",
       "invalid rate \"10/minutess\": unknown unit \"minutess\" (expected second, minute, hour or "
       "day)"},
      {"0/minute", "invalid rate \"0/minute\": count must be at least 1"},
      {"1000000001/second", "invalid rate \"1000000001/second\": count must be at most 1000000000"},
      {"99999999999999999999999/second",
       "invalid rate \"99999999999999999999999/second\": count must be at most 1000000000"},
      {"10/0 minutes", "invalid rate \"10/0 minutes\": the multiplier must be at least 1"},
      {"10/367 days", "invalid rate \"10/367 days\": the period must be at most 366 days"},
      {"10/31622401 seconds",
       "invalid rate \"10/31622401 seconds\": the period must be at most 366 days"},
      {"10/99999999999999999999 days",
       "invalid rate \"10/99999999999999999999 days\": the period must be at most 366 days"},
      {"10/minute;",
       "invalid rates \"10/minute;\": empty item (separate rates with \";\", \",\" or \"|\")"},
      {"10/minute;; 5/second",
       "invalid rates \"10/minute;; 5/second\": empty item (separate rates with \";\", \",\" or "
       "\"|\")"},
      {"; 10/minute",
       "invalid rates \"; 10/minute\": empty item (separate rates with \";\", \",\" or \"|\")"},
      {"200/day; 0/hour", "invalid rate \"0/hour\": count must be at least 1"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    auto out = parse_rates(c.text);
    EXPECT_EQ(out.error, c.error);
    EXPECT_TRUE(out.rates.empty());
  }
}

TEST(Rate, TextForms) {
  auto one = parsed("10/minute").at(0);
  EXPECT_EQ(one.text(), "10/minute");
  EXPECT_EQ(one.name(), "minute");
  EXPECT_EQ(one.message(), "10 per 1 minute");
  EXPECT_EQ(one.period_ns(), 60'000'000'000);

  auto five = parsed("10 per 5 minutes").at(0);
  EXPECT_EQ(five.text(), "10 per 5 minutes");
  EXPECT_EQ(five.name(), "5minutes");
  EXPECT_EQ(five.message(), "10 per 5 minutes");
  EXPECT_EQ(five.period_ns(), 300'000'000'000);

  auto day = parsed("1 PER 1 DAYS").at(0);
  EXPECT_EQ(day.text(), "1/day");
  EXPECT_EQ(day.name(), "day");
  EXPECT_EQ(day.message(), "1 per 1 day");
}

TEST(Rate, TextParsesBackToTheSameRate) {
  for (auto text : {"10/minute", "10 per 5 minutes", "1/second", "7/2 seconds", "1000/day",
                    "3 per 366 days", "1000000000/31622400 seconds", "5/hour", "5/24 hours"}) {
    SCOPED_TRACE(text);
    auto first = parsed(text).at(0);
    auto again = parsed(first.text());
    ASSERT_EQ(again.size(), 1u);
    EXPECT_EQ(again[0], first);
    EXPECT_EQ(again[0].text(), first.text());
  }
}

}  // namespace
}  // namespace gatehouse::ratelimit
