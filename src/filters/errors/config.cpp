#include "filters/errors/config.hpp"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "config/config.hpp"
#include "config/value_readers.hpp"
#include "config/yaml_reader.hpp"
#include "http/fields.hpp"
#include "observability/sentry.hpp"

namespace gatehouse::filters::errors {

Settings default_settings(config::Environment environment) {
  Settings s;
  if (environment == config::Environment::development) {
    s.intercept.clear();
    s.sentry.environment = "development";
  } else {
    s.sentry.environment = "production";
  }
  return s;
}

// --- Sentry error reports (issue 15, sentry-seclog) ---
SentrySettings read_sentry(const config::detail::Value& v, config::Environment environment) {
  SentrySettings out;
  out.environment = environment == config::Environment::development ? "development" : "production";
  config::detail::Map m(v,
                        {"dsn", "environment", "release", "sample_rate", "max_queue", "timeout"});
  if (auto x = m.find("dsn")) {
    // Empty after interpolation (SENTRY_DSN unset): reporting is off, as with no DSN at all.
    if (!x->is_null() && !x->text().empty()) {
      auto parsed = observability::sentry::parse_dsn(x->text());
      if (!parsed.dsn) {
        x->fail(parsed.error);
      }
      out.dsn = parsed.dsn->to_string();
    }
  }
  auto label = [](const config::detail::Value& x) {
    const std::string& t = x.text();
    if (t.empty() || t.size() > 200 || !config::detail::is_field_value(t)) {
      x.fail("must be 1 to 200 printable characters");
    }
    return t;
  };
  if (auto x = m.find("environment")) {
    out.environment = label(*x);
  }
  if (auto x = m.find("release")) {
    out.release = x->is_null() || x->text().empty() ? std::string{} : label(*x);
  }
  if (auto x = m.find("sample_rate")) {
    const std::string& text = x->text();
    char* end = nullptr;
    double d = std::strtod(text.c_str(), &end);
    if (text.empty() || end != text.c_str() + text.size() || !(d >= 0.0 && d <= 1.0)) {
      x->fail("invalid sample rate " + config::detail::quoted(text) +
              " (expected a number from 0 to 1, e.g. 0.25)");
    }
    out.sample_rate = d;
  }
  if (auto x = m.find("max_queue")) {
    out.max_queue = static_cast<std::size_t>(config::detail::read_integer(*x, 1, 100'000));
  }
  if (auto x = m.find("timeout")) {
    out.timeout = config::detail::read_duration(*x, config::detail::Zero::rejected);
  }
  return out;
}

Settings read_settings(const config::detail::Value& v, config::Environment environment) {
  Settings out = default_settings(environment);
  config::detail::Map m(v, {"intercept", "log_body", "sentry"});
  if (auto x = m.find("intercept")) {
    out.intercept.clear();
    if (!(x->node().IsScalar() && (x->text() == "off" || x->text() == "false"))) {
      for (const auto& item : x->items()) {
        auto status = static_cast<unsigned>(config::detail::read_integer(item, 400, 599));
        if (std::find(out.intercept.begin(), out.intercept.end(), status) != out.intercept.end()) {
          item.fail("duplicate status " + std::to_string(status));
        }
        out.intercept.push_back(status);
      }
    }
  }
  if (auto x = m.find("log_body")) {
    out.log_body = config::detail::read_size(*x, config::detail::Zero::allowed);
    if (out.log_body > kMaxReadBytes) {
      x->fail("must be at most 64KiB");
    }
  }
  if (auto x = m.find("sentry")) {
    out.sentry = read_sentry(*x, environment);
  }
  return out;
}

bool is_json_content_type(std::string_view ct) {
  auto semi = ct.find(';');
  auto type = ct.substr(0, semi);
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) {
    type.remove_suffix(1);
  }
  while (!type.empty() && (type.front() == ' ' || type.front() == '\t')) {
    type.remove_prefix(1);
  }
  auto slash = type.find('/');
  if (slash == std::string_view::npos) {
    return false;
  }
  auto sub = type.substr(slash + 1);
  return http::iequals(sub, "json") ||
         (sub.size() > 5 && http::iequals(sub.substr(sub.size() - 5), "+json"));
}

bool should_intercept(const Settings& s, unsigned status, bool head_request,
                      std::string_view content_type) {
  if (head_request || status == 204 || status == 304 || status < 400) {
    return false;
  }
  if (std::find(s.intercept.begin(), s.intercept.end(), status) == s.intercept.end()) {
    return false;
  }
  return !is_json_content_type(content_type);
}

}  // namespace gatehouse::filters::errors
