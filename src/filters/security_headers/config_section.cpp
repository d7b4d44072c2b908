// The security_headers section as config/ sees it: read last (its defaults depend on the
// environment) and written with every effective value for `gatehouse check`.
#include "config/config.hpp"
#include "config/sections.hpp"
#include "config/yaml_writer.hpp"
#include "filters/security_headers/config.hpp"

namespace gatehouse::filters::security_headers {
namespace {

void read(const config::detail::Value* v, config::Config& config) {
  config.filters.set(v != nullptr ? read_settings(*v, config.environment)
                                  : default_settings(config.environment));
}

void write(config::YamlWriter& w, const config::Config& config) {
  const Settings& s = settings(config);
  w.key("security_headers").begin_map();
  w.key("preset").str(std::string(preset_name(s.preset)));
  w.key("content_security_policy").str(s.content_security_policy);
  if (s.hsts) {
    w.key("hsts").begin_map();
    w.key("max_age").seconds(s.hsts->max_age);
    w.key("include_subdomains").boolean(s.hsts->include_subdomains);
    w.key("preload").boolean(s.hsts->preload);
    w.end_map();
  } else {
    w.key("hsts").str("off");
  }
  w.key("overrides").begin_flow_map();
  for (const auto& o : s.overrides) {
    w.key(o.name.c_str()).str(o.value);
  }
  w.end_map();
  w.key("force").boolean(s.force);
  w.end_map();
}

}  // namespace

const Settings& settings(const config::Config& config) {
  static const Settings production;
  const auto* s = config.filters.get<Settings>();
  return s != nullptr ? *s : production;
}

void register_config(config::Sections& sections) {
  sections.add(
      {.key = "security_headers", .stage = config::Stage::last, .read = read, .write = write});
}

}  // namespace gatehouse::filters::security_headers
