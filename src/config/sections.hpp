#pragma once
// The top-level sections filters own. config/ reads and writes the shared keys (listen, upstreams,
// routes, ...); a filter registers its key with a reader and a writer, and optionally a key inside
// each route, and keeps its settings in Config::filters / Route::filters. The list is built
// explicitly by filters/registry.cpp and passed to the loader and the emitter, so config/ never
// includes a filter and no filter can be left out by the linker.
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::config {

struct Config;
struct Route;
class YamlWriter;
namespace detail {
class Value;
}

// Where a section sits in the file's key order, for reading and for `gatehouse check`'s output.
enum class Stage {
  before_routes,  // after `upstreams`: route blocks read the settings (rate_limit defaults)
  last,           // after every shared key: the environment and `paths` are known
};

struct Section {
  std::string_view key;  // top-level key
  Stage stage = Stage::last;
  // Always called, with nullptr when the key is absent, so that defaults depending on other keys
  // (environment) are set. Failures throw ConfigError through Value::fail.
  void (*read)(const detail::Value* value, Config& config) = nullptr;
  void (*write)(YamlWriter& out, const Config& config) = nullptr;
  // Optional: the same key inside each route (routes[].KEY), read after the top-level section
  // and written after the route's `upstream`. Called only when the key is present.
  void (*read_route)(const detail::Value& value, const Config& config, Route& route) = nullptr;
  void (*write_route)(YamlWriter& out, const Config& config, const Route& route) = nullptr;
  // Optional: called once every key is read (the configured paths get `paths.merge_slashes`).
  void (*finish)(Config& config) = nullptr;
  // Optional, for a reload (config/reload_plan.hpp): why `next` cannot replace `running` without
  // a restart, naming the key ("rate_limit.store: changing it needs a restart ..."), or empty.
  // For what the section builds once at start-up; keys not named here are reloadable.
  std::string (*restart_needed)(const Config& running, const Config& next) = nullptr;
};

// What a refused reload says of a restart-only key: "KEY: changing it needs a restart; ...".
inline std::string restart_message(std::string_view key) {
  return std::string(key) +
         ": changing it needs a restart; the running configuration stays in place";
}

class Sections {
 public:
  // Throws std::logic_error for a key registered twice: a programming error, found by every test.
  void add(const Section& section) {
    for (const auto& s : sections_) {
      if (s.key == section.key) {
        throw std::logic_error("config section registered twice: " + std::string(section.key));
      }
    }
    sections_.push_back(section);
  }
  const std::vector<Section>& all() const { return sections_; }

 private:
  std::vector<Section> sections_;
};

}  // namespace gatehouse::config
