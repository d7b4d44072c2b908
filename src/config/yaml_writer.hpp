#pragma once
// YAML output for `gatehouse check` (config/emit.cpp and the filters' section writers): keys in
// the order written, values in the units people write ("10s", "16KiB"), literal "${" escaped so
// the output loads back unchanged.
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

namespace gatehouse::config {

class YamlWriter {
 public:
  YamlWriter();

  YamlWriter& key(const char* name);
  YamlWriter& str(const std::string& value);
  YamlWriter& boolean(bool value);
  YamlWriter& duration(std::chrono::milliseconds d);
  YamlWriter& seconds(std::chrono::seconds s);  // "1y" when exact (HSTS, CORS max-age)
  YamlWriter& size(std::size_t bytes);
  YamlWriter& number(std::size_t n);
  YamlWriter& null();
  YamlWriter& list(const std::vector<std::string>& items);  // flow style: [a, b]
  YamlWriter& begin_map();
  YamlWriter& begin_flow_map();
  YamlWriter& end_map();
  YamlWriter& begin_list();
  YamlWriter& end_list();

  // Closes the top-level map; the text ends with a newline.
  std::string finish();

 private:
  YAML::Emitter out_;
};

}  // namespace gatehouse::config
