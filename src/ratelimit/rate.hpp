#pragma once
// Rate notation shared by the config and the limiter: Flask-Limiter's "10/minute",
// "200/day; 50/hour", "10 per 5 minutes". Pure logic.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::ratelimit {

using Nanos = std::int64_t;  // every limiter time is integer nanoseconds on an injected clock

struct Rate {
  std::uint64_t count = 0;       // requests allowed per period, >= 1
  std::uint64_t multiplier = 1;  // the M in "N per M minutes"
  std::string unit;              // "second", "minute", "hour" or "day"
  std::int64_t period_s = 0;     // multiplier x unit, in seconds

  Nanos period_ns() const { return period_s * 1'000'000'000; }
  // "10/minute", "10 per 5 minutes": re-parsable, used in config output and metric labels.
  std::string text() const;
  // The IETF policy item name: "minute", or "5minutes" when the multiplier is not 1.
  std::string name() const;
  // "10 per 1 minute", "10 per 5 minutes": the 429 message.
  std::string message() const;
  bool operator==(const Rate&) const = default;
};

inline constexpr std::uint64_t kMaxCount = 1'000'000'000;
inline constexpr std::int64_t kMaxPeriodSeconds = 366LL * 86400;
inline constexpr std::size_t kMaxRatesPerBlock = 8;

struct ParsedRates {
  std::vector<Rate> rates;
  std::string error;  // set when parsing failed; says what was expected
};

// Items separated by ';', ',' or '|'; each "N/UNIT", "N per UNIT", "N/M UNITs" or "N per M UNITs"
// with UNIT second|minute|hour|day (plural allowed), case-insensitive, blanks ignored ("per" is a
// word of its own). Count 1..kMaxCount, period 1 s..kMaxPeriodSeconds. Errors read
// `invalid rate "10/fortnight": unknown unit "fortnight" (expected second, minute, hour or day)`.
ParsedRates parse_rates(std::string_view text);

}  // namespace gatehouse::ratelimit
