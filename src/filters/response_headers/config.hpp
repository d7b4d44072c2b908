#pragma once
// Typed `response_headers` configuration: lines gatehouse adds to every response, proxied or
// local. Today one: X-Process-Time (process_time).
#include <chrono>
#include <cstdint>
#include <string>

namespace gatehouse::config {
struct Config;
class Sections;
namespace detail {
class Value;
}
}  // namespace gatehouse::config

namespace gatehouse::filters::response_headers {

struct Settings {
  // `X-Process-Time: 0.031`: seconds from the start of the request's head to its response head,
  // like the Starlette middleware apps copy. Replaces the upstream's own X-Process-Time.
  bool process_time = false;
  bool operator==(const Settings&) const = default;
};

// The `response_headers` value (null = defaults). Failures throw config::ConfigError.
Settings read_settings(const config::detail::Value& v);

// The loaded settings; defaults for a Config{} not loaded from a file.
const Settings& settings(const config::Config& config);

// Adds the `response_headers` section for filters/registry.cpp.
void register_config(config::Sections& sections);

// Appends "X-Process-Time: S.mmm\r\n" (`elapsed` rounded to the millisecond; negative counts as
// 0) to `out` without a temporary string.
void append_process_time(std::string& out, std::chrono::nanoseconds elapsed);

}  // namespace gatehouse::filters::response_headers
