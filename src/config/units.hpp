#pragma once
// Text forms of config values that the loader, the emitter and the CLI share: the inverse of
// parse_duration/parse_size, and upstream targets ("host:port" or "http://host:port").
#include <optional>
#include <string>
#include <string_view>

#include "config/config.hpp"

namespace gatehouse::config::detail {

// Days or hours when exact, else seconds, else milliseconds: "250ms", "10s", "60s", "90s", "1h",
// "1d"; zero is "0s". Minutes are never used, so timeouts read as in the documentation.
std::string format_duration(Millis d);

// The largest exact unit: 16384 -> "16KiB", 10000000 -> "10MB", 1000 -> "1KB", 100 -> "100".
std::string format_size(std::size_t bytes);

// An upstream target or --upstream URL. `error` says what is wrong when `endpoint` is empty.
struct ParsedTarget {
  std::optional<Endpoint> endpoint;
  std::string error;
};
ParsedTarget parse_target(std::string_view text);

}  // namespace gatehouse::config::detail
