// The response_headers section as config/ sees it.
#include "config/config.hpp"
#include "config/sections.hpp"
#include "config/yaml_writer.hpp"
#include "filters/response_headers/config.hpp"

namespace gatehouse::filters::response_headers {
namespace {

void read(const config::detail::Value* v, config::Config& config) {
  config.filters.set(v != nullptr ? read_settings(*v) : Settings{});
}

void write(config::YamlWriter& w, const config::Config& config) {
  const Settings& s = settings(config);
  w.key("response_headers").begin_map();
  w.key("process_time").boolean(s.process_time);
  w.end_map();
}

}  // namespace

const Settings& settings(const config::Config& config) {
  static const Settings defaults;
  const auto* s = config.filters.get<Settings>();
  return s != nullptr ? *s : defaults;
}

void register_config(config::Sections& sections) {
  sections.add(
      {.key = "response_headers", .stage = config::Stage::last, .read = read, .write = write});
}

}  // namespace gatehouse::filters::response_headers
