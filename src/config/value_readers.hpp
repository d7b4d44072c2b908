#pragma once
// Typed reads of scalar config values, each with the rejection message a user sees
// ("invalid duration \"30\": a unit is required, ..."). Failures throw ConfigError via Value::fail.
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "config/yaml_reader.hpp"

namespace gatehouse::config::detail {

enum class Zero { allowed, rejected };

std::string quoted(std::string_view s);
bool all_digits(std::string_view s);
bool is_token(std::string_view s);  // RFC 9110 token

// One of `choices`, exactly as written.
std::string read_choice(const Value& v, const std::vector<std::string_view>& choices);
bool read_bool(const Value& v);                           // true/True/TRUE, false/False/FALSE
Millis read_duration(const Value& v, Zero zero);          // parse_duration, at most 365d
std::size_t read_size(const Value& v, Zero zero);         // parse_size
std::size_t read_count(const Value& v, std::size_t max);  // plain integer 0..max
std::uint64_t read_integer(const Value& v, std::uint64_t min, std::uint64_t max);  // min..max
Endpoint read_endpoint(const Value& v);                                            // parse_endpoint
// Whole seconds from 0 to `max`, as a duration ("10m", "600s") or in years of 365 days ("1y"), for
// values sent to clients in seconds (HSTS and CORS max-age).
std::chrono::seconds read_seconds(const Value& v, std::chrono::seconds max);
std::string format_seconds(std::chrono::seconds s);  // "1y" when exact, else format_duration
std::string read_method(const Value& v);             // an upper-case token: GET, POST, M-SEARCH
std::string read_header_name(const Value& v);        // an RFC 9110 token: X-Request-ID
// An RFC 9110 field value gatehouse can send as is: visible ASCII, inner spaces and tabs, no
// leading or trailing blanks. Empty is accepted.
bool is_field_value(std::string_view s);
// "/..." without blanks, '?', '#', in canonical form (http::canonical_path, slashes not merged).
std::string read_path(const Value& v);
std::vector<http::Cidr> read_cidrs(const Value& v);  // list of ADDRESS or ADDRESS/BITS
// Route and upstream names end up in metric labels and log fields: letters, digits, '_', '-'.
std::string check_name(const Value& v, const std::string& name, std::string_view what);
// A Host value without port: a name, an IPv4 address or a bracketed IPv6 address.
bool is_route_host(const std::string& host);

}  // namespace gatehouse::config::detail
