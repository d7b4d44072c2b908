#pragma once
// JSON string literals for the bodies and log lines gatehouse writes itself (error replies, access
// log, admin answers), without building a JSON tree on the request path.
#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

namespace gatehouse::http {

// Appends `s` as a JSON string literal (quotes included) to `out`: quotes, backslashes and
// control bytes escaped; valid UTF-8 kept, any other byte written as \ufffd, so the result is
// always valid JSON.
void append_json_string(std::string& out, std::string_view s);

// The offset of the first byte of `s` that does not start a well-formed UTF-8 sequence (RFC 3629,
// as append_json_string judges it), or std::string_view::npos when all of `s` is UTF-8.
std::size_t invalid_utf8_at(std::string_view s);

// Appends the integer `n` in decimal: to_chars, no format-string parsing on the request path
// (log lines, rate-limit headers, Redis arguments).
template <typename Int>
void append_integer(std::string& out, Int n) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, n);
  out.append(buf, static_cast<std::size_t>(r.ptr - buf));
}

// Appends n / 1000 with three decimals ("12.345", "0.007"): a duration counted in microseconds
// written in milliseconds, or in milliseconds written in seconds, as printf's %.3f would, without
// formatting a float on the request path.
void append_thousandths(std::string& out, std::uint64_t n);

}  // namespace gatehouse::http
