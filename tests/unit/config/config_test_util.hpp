#pragma once
// Shared by the config tests: a minimal valid config to append snippets to, and the error text.
#include <string>

#include "config/config.hpp"

namespace gatehouse::config::testing {

// Three lines; a snippet appended to it starts on line 4.
inline const std::string kBase =
    "upstreams:\n"
    "  app:\n"
    "    targets: [\"127.0.0.1:8000\"]\n";

// what() of the ConfigError load_config_string throws for `yaml` (source "t.yaml"), or
// "(no error)".
inline std::string error_of(const std::string& yaml) {
  try {
    load_config_string(yaml, "t.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace gatehouse::config::testing
