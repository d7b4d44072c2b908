#include "config/units.hpp"

#include <arpa/inet.h>

#include <array>
#include <cstdint>
#include <limits>

#include "http/target.hpp"

namespace gatehouse::config {
namespace {

struct Unit {
  std::string_view suffix;
  std::uint64_t factor;
};

// Largest first: format_* picks the first exact one.
constexpr std::array<Unit, 5> kDurationUnits{{
    {"d", 86'400'000},
    {"h", 3'600'000},
    {"m", 60'000},
    {"s", 1'000},
    {"ms", 1},
}};

constexpr std::array<Unit, 7> kSizeUnits{{
    {"GiB", 1ull << 30},
    {"MiB", 1ull << 20},
    {"KiB", 1ull << 10},
    {"GB", 1'000'000'000},
    {"MB", 1'000'000},
    {"KB", 1'000},
    {"B", 1},
}};

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool all_digits(std::string_view s) {
  if (s.empty()) {
    return false;
  }
  for (char c : s) {
    if (!is_digit(c)) {
      return false;
    }
  }
  return true;
}

// Decimal digits to a number; nullopt on overflow or when not all digits.
std::optional<std::uint64_t> to_u64(std::string_view digits) {
  if (!all_digits(digits)) {
    return std::nullopt;
  }
  std::uint64_t value = 0;
  for (char c : digits) {
    if (__builtin_mul_overflow(value, 10u, &value) ||
        __builtin_add_overflow(value, static_cast<unsigned>(c - '0'), &value)) {
      return std::nullopt;
    }
  }
  return value;
}

std::optional<std::uint64_t> times(std::uint64_t value, std::uint64_t factor) {
  std::uint64_t out = 0;
  if (__builtin_mul_overflow(value, factor, &out)) {
    return std::nullopt;
  }
  return out;
}

bool is_ipv6(const std::string& text) {
  in6_addr out{};
  return ::inet_pton(AF_INET6, text.c_str(), &out) == 1;
}

}  // namespace

std::optional<Millis> parse_duration(const std::string& text) {
  std::string_view s = text;
  std::size_t number_end = 0;
  while (number_end < s.size() && (is_digit(s[number_end]) || s[number_end] == '.')) {
    ++number_end;
  }
  std::string_view number = s.substr(0, number_end);
  std::string_view suffix = s.substr(number_end);
  const Unit* unit = nullptr;
  for (const auto& u : kDurationUnits) {
    if (u.suffix == suffix) {
      unit = &u;
    }
  }
  if (unit == nullptr) {
    return std::nullopt;
  }
  auto dot = number.find('.');
  auto whole = to_u64(number.substr(0, dot));
  if (!whole) {
    return std::nullopt;
  }
  auto total = times(*whole, unit->factor);
  if (!total) {
    return std::nullopt;
  }
  if (dot != std::string_view::npos) {
    // "1.5s": the fraction must come to a whole number of milliseconds.
    std::string_view fraction = number.substr(dot + 1);
    auto digits = to_u64(fraction);
    if (!digits || fraction.size() > 9) {
      return std::nullopt;
    }
    std::uint64_t scale = 1;
    for (std::size_t i = 0; i < fraction.size(); ++i) {
      scale *= 10;
    }
    auto scaled = times(*digits, unit->factor);  // < 1e9 * 8.64e7, no overflow
    if (!scaled || *scaled % scale != 0 ||
        __builtin_add_overflow(*total, *scaled / scale, &*total)) {
      return std::nullopt;
    }
  }
  if (*total > static_cast<std::uint64_t>(std::numeric_limits<Millis::rep>::max())) {
    return std::nullopt;
  }
  return Millis{static_cast<Millis::rep>(*total)};
}

std::optional<std::size_t> parse_size(const std::string& text) {
  std::string_view s = text;
  std::size_t number_end = 0;
  while (number_end < s.size() && is_digit(s[number_end])) {
    ++number_end;
  }
  auto number = to_u64(s.substr(0, number_end));
  if (!number) {
    return std::nullopt;
  }
  std::string_view suffix = s.substr(number_end);
  std::uint64_t factor = 0;
  if (suffix.empty()) {
    factor = 1;
  }
  for (const auto& u : kSizeUnits) {
    if (u.suffix == suffix) {
      factor = u.factor;
    }
  }
  if (factor == 0) {
    return std::nullopt;
  }
  auto bytes = times(*number, factor);
  if (!bytes || *bytes > std::numeric_limits<std::size_t>::max()) {
    return std::nullopt;
  }
  return static_cast<std::size_t>(*bytes);
}

std::optional<Endpoint> parse_endpoint(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos) {
    return std::nullopt;
  }
  std::string host = text.substr(0, colon);
  std::string port_text = text.substr(colon + 1);
  if (port_text.size() > 5) {
    return std::nullopt;
  }
  auto port = to_u64(port_text);
  if (!port || *port > 65535) {
    return std::nullopt;
  }
  if (host.empty()) {
    host = "0.0.0.0";
  } else if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') {
      return std::nullopt;
    }
    host = host.substr(1, host.size() - 2);
    if (!is_ipv6(host)) {
      return std::nullopt;
    }
  } else if (!http::is_host_name(host)) {
    return std::nullopt;
  }
  return Endpoint{host, static_cast<std::uint16_t>(*port)};
}

std::string Endpoint::to_string() const {
  if (host.find(':') != std::string::npos) {
    return "[" + host + "]:" + std::to_string(port);
  }
  return host + ":" + std::to_string(port);
}

namespace detail {

std::string format_duration(Millis d) {
  auto ms = static_cast<std::uint64_t>(d.count() < 0 ? 0 : d.count());
  if (ms == 0) {
    return "0s";
  }
  for (const auto& u : kDurationUnits) {
    if (u.suffix != "m" && ms % u.factor == 0) {
      return std::to_string(ms / u.factor) + std::string(u.suffix);
    }
  }
  return std::to_string(ms) + "ms";
}

std::string format_size(std::size_t bytes) {
  for (const auto& u : kSizeUnits) {
    if (bytes != 0 && u.factor != 1 && bytes % u.factor == 0) {
      return std::to_string(bytes / u.factor) + std::string(u.suffix);
    }
  }
  return std::to_string(bytes);
}

ParsedTarget parse_target(std::string_view text) {
  constexpr std::string_view kExpected = "(expected HOST:PORT or http://HOST:PORT)";
  std::string rest(text);
  auto scheme_end = rest.find("://");
  bool url = scheme_end != std::string::npos;
  if (url) {
    std::string scheme = rest.substr(0, scheme_end);
    if (scheme != "http") {
      return {std::nullopt, "unsupported scheme \"" + scheme + "\" (only http:// is supported)"};
    }
    rest = rest.substr(scheme_end + 3);
    if (!rest.empty() && rest.back() == '/') {
      rest.pop_back();
    }
    auto extra = rest.find_first_of("/?#@");
    if (extra != std::string::npos) {
      return {std::nullopt, "unexpected \"" + rest.substr(extra) + "\" after the address " +
                                std::string(kExpected)};
    }
    bool has_port = rest.rfind(':') != std::string::npos &&
                    (rest.front() != '[' || rest.rfind(':') > rest.rfind(']'));
    if (!rest.empty() && !has_port) {
      rest += ":80";
    }
  }
  auto endpoint = parse_endpoint(rest);
  if (!endpoint) {
    return {std::nullopt,
            "invalid address \"" + std::string(text) + "\" " + std::string(kExpected)};
  }
  if (rest.front() == ':') {
    return {std::nullopt,
            "missing host in \"" + std::string(text) + "\" " + std::string(kExpected)};
  }
  if (endpoint->port == 0) {
    return {std::nullopt, "port 0 is not allowed in \"" + std::string(text) + "\""};
  }
  return {endpoint, ""};
}

}  // namespace detail
}  // namespace gatehouse::config
