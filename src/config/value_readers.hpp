#pragma once
// Typed reads of scalar config values, each with the rejection message a user sees
// ("invalid duration \"30\": a unit is required, ..."). Failures throw ConfigError via Value::fail.
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
std::string read_path(const Value& v);               // "/..." without blanks, '?', '#'
std::vector<http::Cidr> read_cidrs(const Value& v);  // list of ADDRESS or ADDRESS/BITS
// Route and upstream names end up in metric labels and log fields: letters, digits, '_', '-'.
std::string check_name(const Value& v, const std::string& name, std::string_view what);
// A Host value without port: a name, an IPv4 address or a bracketed IPv6 address.
bool is_route_host(const std::string& host);

}  // namespace gatehouse::config::detail
