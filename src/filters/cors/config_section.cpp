// The cors section as config/ sees it: read last (its defaults depend on the environment) and
// written for `gatehouse check` ("off" when disabled).
#include "config/config.hpp"
#include "config/sections.hpp"
#include "config/yaml_writer.hpp"
#include "filters/cors/config.hpp"

namespace gatehouse::filters::cors {
namespace {

void read(const config::detail::Value* v, config::Config& config) {
  config.filters.set(v != nullptr ? read_settings(*v, config.environment)
                                  : default_settings(config.environment));
}

void write(config::YamlWriter& w, const config::Config& config) {
  const Settings& s = settings(config);
  if (!s.enabled) {
    w.key("cors").str("off");
    return;
  }
  std::vector<std::string> origins;
  for (const auto& o : s.origins) {
    origins.push_back(o.text);
  }
  w.key("cors").begin_map();
  w.key("origins").list(origins);
  w.key("methods").list(s.methods);
  w.key("headers").list(s.headers);
  w.key("expose_headers").list(s.expose_headers);
  w.key("credentials").boolean(s.credentials);
  w.key("max_age").seconds(s.max_age);
  w.end_map();
}

}  // namespace

const Settings& settings(const config::Config& config) {
  static const Settings disabled;
  const auto* s = config.filters.get<Settings>();
  return s != nullptr ? *s : disabled;
}

void register_config(config::Sections& sections) {
  sections.add({.key = "cors", .stage = config::Stage::last, .read = read, .write = write});
}

}  // namespace gatehouse::filters::cors
