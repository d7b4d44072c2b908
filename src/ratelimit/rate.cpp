#include "ratelimit/rate.hpp"

#include <array>

namespace gatehouse::ratelimit {
namespace {

struct Unit {
  std::string_view name;
  std::int64_t seconds;
};

constexpr std::array<Unit, 4> kUnits{{
    {"second", 1},
    {"minute", 60},
    {"hour", 3600},
    {"day", 86400},
}};

constexpr std::string_view kSeparators = ";,|";
constexpr std::string_view kExpected = "expected N/UNIT such as \"10/minute\"";

bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool is_letter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && is_blank(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

std::string quoted(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out.append(1, '"').append(s).append(1, '"');
  return out;
}

// Reads one input position forward; every step skips blanks first, so "10 / 5 minutes" parses.
class Cursor {
 public:
  explicit Cursor(std::string_view text) : text_(text) {}

  bool at_end() {
    skip_blanks();
    return pos_ == text_.size();
  }
  std::string_view digits() { return take(is_digit); }
  std::string_view letters() { return take(is_letter); }
  bool consume(char c) {
    skip_blanks();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

 private:
  void skip_blanks() {
    while (pos_ < text_.size() && is_blank(text_[pos_])) {
      ++pos_;
    }
  }
  template <typename Pred>
  std::string_view take(Pred pred) {
    skip_blanks();
    std::size_t start = pos_;
    while (pos_ < text_.size() && pred(text_[pos_])) {
      ++pos_;
    }
    return text_.substr(start, pos_ - start);
  }

  std::string_view text_;
  std::size_t pos_ = 0;
};

// Digits to a number, saturating past `cap` so that huge inputs compare as too large.
std::uint64_t to_number(std::string_view digits, std::uint64_t cap) {
  std::uint64_t n = 0;
  for (char c : digits) {
    n = n * 10 + static_cast<std::uint64_t>(c - '0');
    if (n > cap) {
      return cap + 1;
    }
  }
  return n;
}

std::string lowered(std::string_view s) {
  std::string out(s);
  for (auto& c : out) {
    c = lower(c);
  }
  return out;
}

struct ParsedRate {
  std::optional<Rate> rate;
  std::string error;
};

// One item: "N/UNIT", "N per UNIT", "N/M UNITs", "N per M UNITs". `item` is already trimmed.
ParsedRate parse_one(std::string_view item) {
  auto fail = [&](std::string_view why) {
    return ParsedRate{std::nullopt, "invalid rate " + quoted(item) + ": " + std::string(why)};
  };
  Cursor in(item);
  std::string_view count_text = in.digits();
  if (count_text.empty()) {
    return fail(kExpected);
  }
  if (!in.consume('/') && lowered(in.letters()) != "per") {
    return fail(kExpected);
  }
  std::string_view multiplier_text = in.digits();
  std::string unit_text = lowered(in.letters());
  if (unit_text.empty() || !in.at_end()) {
    return fail(kExpected);
  }
  const Unit* unit = nullptr;
  for (const auto& u : kUnits) {
    if (unit_text == u.name || unit_text == std::string(u.name) + "s") {
      unit = &u;
    }
  }
  if (unit == nullptr) {
    return fail("unknown unit " + quoted(unit_text) + " (expected second, minute, hour or day)");
  }
  Rate rate;
  rate.count = to_number(count_text, kMaxCount);
  if (rate.count == 0) {
    return fail("count must be at least 1");
  }
  if (rate.count > kMaxCount) {
    return fail("count must be at most " + std::to_string(kMaxCount));
  }
  auto max_multiplier = static_cast<std::uint64_t>(kMaxPeriodSeconds);
  rate.multiplier = multiplier_text.empty() ? 1 : to_number(multiplier_text, max_multiplier);
  if (rate.multiplier == 0) {
    return fail("the multiplier must be at least 1");
  }
  auto seconds = static_cast<std::uint64_t>(unit->seconds);
  if (rate.multiplier > max_multiplier / seconds) {
    return fail("the period must be at most 366 days");
  }
  rate.unit = std::string(unit->name);
  rate.period_s = static_cast<std::int64_t>(rate.multiplier * seconds);
  return ParsedRate{std::move(rate), {}};
}

}  // namespace

std::string Rate::text() const {
  if (multiplier == 1) {
    return std::to_string(count) + "/" + unit;
  }
  return std::to_string(count) + " per " + std::to_string(multiplier) + " " + unit + "s";
}

std::string Rate::name() const {
  if (multiplier == 1) {
    return unit;
  }
  return std::to_string(multiplier) + unit + "s";
}

std::string Rate::message() const {
  return std::to_string(count) + " per " + std::to_string(multiplier) + " " + unit +
         (multiplier == 1 ? "" : "s");
}

ParsedRates parse_rates(std::string_view text) {
  ParsedRates out;
  if (trim(text).empty()) {
    out.error = "invalid rate " + quoted(trim(text)) + ": " + std::string(kExpected);
    return out;
  }
  std::size_t start = 0;
  for (;;) {
    std::size_t end = text.find_first_of(kSeparators, start);
    std::string_view item =
        trim(text.substr(start, end == std::string_view::npos ? text.size() - start : end - start));
    if (item.empty()) {
      out.rates.clear();
      out.error = "invalid rates " + quoted(trim(text)) +
                  ": empty item (separate rates with \";\", \",\" or \"|\")";
      return out;
    }
    auto parsed = parse_one(item);
    if (!parsed.rate) {
      out.rates.clear();
      out.error = std::move(parsed.error);
      return out;
    }
    out.rates.push_back(std::move(*parsed.rate));
    if (end == std::string_view::npos) {
      return out;
    }
    start = end + 1;
  }
}

}  // namespace gatehouse::ratelimit
