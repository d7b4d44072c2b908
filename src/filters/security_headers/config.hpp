#pragma once
// Typed security_headers configuration: a preset, the Content-Security-Policy, HSTS, per-header
// overrides and whether our values replace the upstream's. Defaults depend on the environment, so
// the loader resolves them (default_settings) and `gatehouse check` shows the effective values.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::config {
struct Config;
class Sections;
enum class Environment;
namespace detail {
class Value;
}
}  // namespace gatehouse::config

namespace gatehouse::filters::security_headers {

using Seconds = std::chrono::seconds;

enum class Preset : std::uint8_t { strict, relaxed, off };

std::string_view preset_name(Preset p);  // "strict", "relaxed", "off"

// The strict preset's Content-Security-Policy when none is configured.
inline constexpr std::string_view kStrictCsp =
    "default-src 'self'; frame-ancestors 'none'; object-src 'none'; base-uri 'self'";
inline constexpr Seconds kYear = std::chrono::hours(24 * 365);
inline constexpr Seconds kMaxHstsAge = 2 * kYear;

struct Hsts {
  Seconds max_age = kYear;         // 0 tells browsers to forget an earlier policy
  bool include_subdomains = true;  // OWASP's recommendation; every subdomain must serve HTTPS
  bool preload = false;            // needs include_subdomains and max_age >= 1y
  bool operator==(const Hsts&) const = default;
};

// One `overrides` entry. An empty value removes the header from the preset.
struct Override {
  std::string name;  // as written
  std::string value;
  bool operator==(const Override&) const = default;
};

struct Settings {
  Preset preset = Preset::strict;  // strict in production, relaxed in development
  // Effective value: the configured one, else the preset's (strict: kStrictCsp; relaxed, off:
  // none). Empty: no Content-Security-Policy.
  std::string content_security_policy{kStrictCsp};
  std::optional<Hsts> hsts;         // none unless configured; sent in production over TLS only
  std::vector<Override> overrides;  // file order
  bool force = false;               // true: our values replace the upstream's
  bool operator==(const Settings&) const = default;
};

// The settings of a config without a `security_headers` block (or with `security_headers: null`).
Settings default_settings(config::Environment environment);

// The top-level `security_headers` value for the section (config_section.cpp): null, `off`/`false`,
// or a map. Failures throw config::ConfigError ("FILE:LINE:COLUMN: security_headers.hsts.preload:
// ...").
Settings read_settings(const config::detail::Value& v, config::Environment environment);

// The loaded settings (config_section.cpp); a Config{} not loaded from a file has Settings{}:
// the production defaults.
const Settings& settings(const config::Config& config);

// Adds the `security_headers` section for filters/registry.cpp.
void register_config(config::Sections& sections);

}  // namespace gatehouse::filters::security_headers
