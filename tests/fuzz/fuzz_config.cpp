// libFuzzer target: configuration loading. Any text gives either a Config or a ConfigError;
// anything else escaping load_config_string (another exception type, a crash, undefined
// behaviour, a stack overflow) is a finding.
//
// Oracle beyond sanitizers: what `gatehouse check` prints (to_yaml) "loads back into an equal
// Config" (src/config/emit.cpp): the printed text must load, and print the same again.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "config/config.hpp"
#include "filters/registry.hpp"

namespace {

[[noreturn]] void fail(const char* what, const std::string& a, const std::string& b = {}) {
  std::fprintf(stderr, "fuzz_config: %s\n%s\n%s\n", what, a.c_str(), b.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using gatehouse::config::ConfigError;
  using gatehouse::config::load_config_string;
  using gatehouse::config::to_yaml;
  const auto& sections = gatehouse::filters::config_sections();
  std::string text(reinterpret_cast<const char*>(data), size);
  std::string printed;
  try {
    printed = to_yaml(load_config_string(text, "fuzz.yaml", sections), sections);
  } catch (const ConfigError& e) {
    // Expected for almost every input; the message must name the source.
    if (std::string(e.what()).rfind("fuzz.yaml", 0) != 0) {
      fail("ConfigError without the file name", e.what());
    }
    return 0;
  }
  // Escaping exceptions of any other type reach libFuzzer as an uncaught exception (a crash).
  std::string again;
  try {
    again = to_yaml(load_config_string(printed, "printed.yaml", sections), sections);
  } catch (const ConfigError& e) {
    fail("the printed configuration does not load back", printed, e.what());
  }
  if (again != printed) {
    fail("the printed configuration does not print the same after loading", printed, again);
  }
  return 0;
}
