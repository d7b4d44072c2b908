// The errors section as config/ sees it: read last (its defaults depend on the environment).
#include <fmt/format.h>

#include "config/config.hpp"
#include "config/sections.hpp"
#include "config/yaml_writer.hpp"
#include "filters/errors/config.hpp"

namespace gatehouse::filters::errors {
namespace {

void read(const config::detail::Value* v, config::Config& config) {
  config.filters.set(v != nullptr ? read_settings(*v, config.environment)
                                  : default_settings(config.environment));
}

void write(config::YamlWriter& w, const config::Config& config) {
  const Settings& s = settings(config);
  w.key("errors").begin_map();
  std::vector<std::string> statuses;
  for (unsigned st : s.intercept) {
    statuses.push_back(std::to_string(st));
  }
  w.key("intercept").list(statuses);
  w.key("log_body").size(s.log_body);
  // issue 15, sentry-seclog
  w.key("sentry").begin_map();
  w.key("dsn").str(s.sentry.dsn);
  w.key("environment").str(s.sentry.environment);
  w.key("release").str(s.sentry.release);
  w.key("sample_rate").str(fmt::format("{}", s.sentry.sample_rate));
  w.key("max_queue").number(s.sentry.max_queue);
  w.key("timeout").duration(s.sentry.timeout);
  w.end_map();
  w.end_map();
}

}  // namespace

const Settings& settings(const config::Config& config) {
  static const Settings production;
  const auto* s = config.filters.get<Settings>();
  return s != nullptr ? *s : production;
}

// The Sentry reporter (its thread, queue and DSN) is built once, at start-up; intercept and
// log_body reload.
std::string restart_needed(const config::Config& running, const config::Config& next) {
  if (settings(running).sentry == settings(next).sentry) {
    return {};
  }
  return config::restart_message("errors.sentry");
}

void register_config(config::Sections& sections) {
  sections.add({.key = "errors",
                .stage = config::Stage::last,
                .read = read,
                .write = write,
                .restart_needed = restart_needed});
}

}  // namespace gatehouse::filters::errors
