#include "config/value_readers.hpp"

#include <algorithm>

#include "config/units.hpp"
#include "http/canonical_path.hpp"
#include "http/target.hpp"

namespace gatehouse::config::detail {
namespace {

constexpr Millis kMaxDuration = std::chrono::hours(24 * 365);
constexpr std::chrono::seconds kYear = std::chrono::hours(24 * 365);

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// RFC 9110 tchar.
bool is_token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

}  // namespace

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_digit);
}

std::string quoted(std::string_view s) {
  // Appended piecewise: GCC 12 reports a false -Wrestrict for "\"" + std::string(s) + "\"".
  std::string out;
  out.reserve(s.size() + 2);
  out.append(1, '"').append(s).append(1, '"');
  return out;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_token_char);
}

std::string read_choice(const Value& v, const std::vector<std::string_view>& choices) {
  const std::string& text = v.text();
  if (std::find(choices.begin(), choices.end(), text) == choices.end()) {
    v.fail("invalid value " + quoted(text) + " (expected one of: " + join(choices) + ")");
  }
  return text;
}

bool read_bool(const Value& v) {
  const std::string& text = v.text();
  if (text == "true" || text == "True" || text == "TRUE") {
    return true;
  }
  if (text == "false" || text == "False" || text == "FALSE") {
    return false;
  }
  v.fail("expected true or false, got " + quoted(text));
}

Millis read_duration(const Value& v, Zero zero) {
  const std::string& text = v.text();
  auto d = parse_duration(text);
  if (!d && all_digits(text)) {
    v.fail("invalid duration " + quoted(text) + ": a unit is required, e.g. " + quoted(text + "s") +
           " (units: ms, s, m, h, d)");
  }
  if (!d) {
    v.fail("invalid duration " + quoted(text) +
           " (expected a number and a unit: ms, s, m, h or d, e.g. \"250ms\", \"10s\", \"1.5m\")");
  }
  if (zero == Zero::rejected && d->count() == 0) {
    v.fail("must be greater than 0");
  }
  if (*d > kMaxDuration) {
    v.fail("must be at most 365d");
  }
  return *d;
}

std::size_t read_size(const Value& v, Zero zero) {
  const std::string& text = v.text();
  auto size = parse_size(text);
  if (!size) {
    v.fail("invalid size " + quoted(text) +
           " (expected bytes, or a number and a unit: B, KiB, MiB, GiB, KB, MB or GB, e.g. "
           "\"16KiB\")");
  }
  if (zero == Zero::rejected && *size == 0) {
    v.fail("must be greater than 0");
  }
  return *size;
}

std::size_t read_count(const Value& v, std::size_t max) {
  const std::string& text = v.text();
  auto n = all_digits(text) && text.size() <= 9 ? parse_size(text) : std::nullopt;
  if (!n || *n > max) {
    v.fail("invalid value " + quoted(text) + " (expected an integer from 0 to " +
           std::to_string(max) + ")");
  }
  return *n;
}

std::uint64_t read_integer(const Value& v, std::uint64_t min, std::uint64_t max) {
  const std::string& text = v.text();
  // 19 digits always fit in 64 bits; longer inputs are out of range anyway.
  std::optional<std::uint64_t> n;
  if (all_digits(text) && text.size() <= 19) {
    n = std::stoull(text);
  }
  if (!n || *n < min || *n > max) {
    v.fail("invalid value " + quoted(text) + " (expected an integer from " + std::to_string(min) +
           " to " + std::to_string(max) + ")");
  }
  return *n;
}

Endpoint read_endpoint(const Value& v) {
  const std::string& text = v.text();
  auto ep = parse_endpoint(text);
  if (!ep) {
    v.fail("invalid address " + quoted(text) + " (expected HOST:PORT, [IPV6]:PORT or :PORT)");
  }
  return *ep;
}

std::chrono::seconds read_seconds(const Value& v, std::chrono::seconds max) {
  const std::string& text = v.text();
  std::optional<Millis> d;
  if (text.size() > 1 && text.back() == 'y' && all_digits(text.substr(0, text.size() - 1)) &&
      text.size() <= 4) {
    d = std::chrono::duration_cast<Millis>(std::stoull(text.substr(0, text.size() - 1)) * kYear);
  } else {
    d = parse_duration(text);
  }
  if (!d && all_digits(text)) {
    v.fail("invalid duration " + quoted(text) + ": a unit is required, e.g. " + quoted(text + "s") +
           " (units: s, m, h, d, y)");
  }
  if (!d) {
    v.fail("invalid duration " + quoted(text) +
           " (expected a number and a unit: s, m, h, d or y, e.g. \"600s\", \"10m\", \"1y\")");
  }
  if (d->count() % 1000 != 0) {
    v.fail("must be a whole number of seconds (got " + quoted(text) + ")");
  }
  auto seconds = std::chrono::duration_cast<std::chrono::seconds>(*d);
  if (seconds > max) {
    v.fail("must be at most " + format_seconds(max));
  }
  return seconds;
}

std::string format_seconds(std::chrono::seconds s) {
  if (s.count() > 0 && s % kYear == std::chrono::seconds::zero()) {
    return std::to_string(s / kYear) + "y";
  }
  return format_duration(s);
}

std::string read_method(const Value& v) {
  const std::string& method = v.text();
  bool upper =
      std::none_of(method.begin(), method.end(), [](char c) { return c >= 'a' && c <= 'z'; });
  if (!is_token(method) || !upper) {
    v.fail("invalid method " + quoted(method) +
           " (expected an upper-case token such as GET or POST)");
  }
  return method;
}

std::string read_header_name(const Value& v) {
  const std::string& name = v.text();
  if (!is_token(name)) {
    v.fail("invalid header name " + quoted(name) + " (expected a token such as X-Request-ID)");
  }
  return name;
}

bool is_field_value(std::string_view s) {
  auto visible = [](char c) { return c > 0x20 && c < 0x7f; };
  if (!s.empty() && (!visible(s.front()) || !visible(s.back()))) {
    return false;
  }
  return std::all_of(s.begin(), s.end(),
                     [&](char c) { return visible(c) || c == ' ' || c == '\t'; });
}

std::string read_path(const Value& v) {
  const std::string& text = v.text();
  if (text.empty() || text.front() != '/') {
    v.fail("must start with '/' (got " + quoted(text) + ")");
  }
  if (text.find_first_of(" \t?#") != std::string::npos) {
    v.fail("must not contain blanks, '?' or '#' (got " + quoted(text) + ")");
  }
  // Requests are matched in canonical form, so configured paths are too. Slashes are merged
  // later, once the `paths` block is known (see the loader).
  auto canonical = http::canonical_path(text, false);
  if (!canonical.reason.empty()) {
    v.fail("invalid path " + quoted(text) + ": " + std::string(canonical.reason));
  }
  return canonical.changed ? std::move(canonical.path) : text;
}

std::vector<http::Cidr> read_cidrs(const Value& v) {
  std::vector<http::Cidr> out;
  for (const auto& item : v.items()) {
    auto cidr = http::Cidr::parse(item.text());
    if (!cidr) {
      item.fail("invalid CIDR " + quoted(item.text()) +
                " (expected ADDRESS or ADDRESS/BITS, e.g. \"10.0.0.0/8\" or \"::1/128\")");
    }
    out.push_back(*cidr);
  }
  return out;
}

// Route and upstream names end up in metric labels and log fields: keep them plain.
std::string check_name(const Value& v, const std::string& name, std::string_view what) {
  bool ok = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' || c == '-';
  });
  if (!ok) {
    v.fail("invalid " + std::string(what) + " name " + quoted(name) +
           " (use letters, digits, '_' and '-')");
  }
  return name;
}

// A Host header value without port: a name, an IPv4 address or a bracketed IPv6 address.
bool is_route_host(const std::string& host) {
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    auto ip = http::parse_ip(std::string_view(host).substr(1, host.size() - 2));
    return ip.has_value() && host.find(':') != std::string::npos;
  }
  return http::is_host_name(host);
}

}  // namespace gatehouse::config::detail
