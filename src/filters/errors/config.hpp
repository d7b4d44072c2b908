#pragma once
// Typed `errors` configuration: which upstream error responses gatehouse replaces by its own JSON
// error (error masking), and how much of the original body goes to the error log. The decision
// itself (should_intercept) is pure; the proxy applies it (src/server/error_intercept.cpp).
#include <chrono>
#include <cstddef>
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

namespace gatehouse::filters::errors {

// The body of an intercepted response read to log it: up to this much is read (and the upstream
// connection kept when the body ended within it), of which log_body is logged.
inline constexpr std::size_t kMaxReadBytes = 64 * 1024;

// --- Sentry error reports (issue 15, sentry-seclog) ---
// `errors.sentry`: where upstream failures are reported (observability/sentry.hpp builds the
// envelopes, server/sentry_reporter_net.cpp sends them).
struct SentrySettings {
  std::string dsn;  // as configured, after interpolation; empty: reporting is off
  std::string environment = "production";  // default: the config's environment
  std::string release;                     // empty: no release sent
  double sample_rate = 1.0;                // the share of failures reported, 0..1
  std::size_t max_queue = 1000;  // events waiting for delivery; more are dropped and counted
  std::chrono::milliseconds timeout{5'000};  // one delivery (connect, TLS, request, response)
  bool enabled() const { return !dsn.empty(); }
  bool operator==(const SentrySettings&) const = default;
};

struct Settings {
  // Upstream statuses replaced by gatehouse's JSON error when the body is not JSON. Default:
  // 500, 502, 503, 504 in production, none in development (bodies pass through).
  std::vector<unsigned> intercept{500, 502, 503, 504};
  std::size_t log_body = 4096;  // bytes of the original body in the error log (0: none)
  SentrySettings sentry;        // issue 15, sentry-seclog
  bool operator==(const Settings&) const = default;
};

Settings default_settings(config::Environment environment);
// The `errors` value (null = defaults). Failures throw config::ConfigError.
Settings read_settings(const config::detail::Value& v, config::Environment environment);

// The loaded settings; production defaults for a Config{} not loaded from a file.
const Settings& settings(const config::Config& config);

void register_config(config::Sections& sections);

// application/json, application/problem+json, any */*+json; parameters and case ignored.
bool is_json_content_type(std::string_view content_type);

// Whether an upstream response with this status and Content-Type is replaced: a listed status, a
// body that can exist (not HEAD; listed statuses are 4xx/5xx, never 204/304) and is not JSON (an
// API's own JSON errors are meant for the client).
bool should_intercept(const Settings& s, unsigned status, bool head_request,
                      std::string_view content_type);

}  // namespace gatehouse::filters::errors
