#include "config/yaml_writer.hpp"

#include "config/units.hpp"
#include "config/value_readers.hpp"

namespace gatehouse::config {
namespace {

// The loader interpolates ${...} before parsing; a literal "${" must come back as "$${".
std::string escaped(const std::string& text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text.compare(i, 2, "${") == 0) {
      out += '$';
    }
    out += text[i];
  }
  return out;
}

}  // namespace

YamlWriter::YamlWriter() {
  out_.SetNullFormat(YAML::LowerNull);
  out_ << YAML::BeginMap;
}

YamlWriter& YamlWriter::key(const char* name) {
  out_ << YAML::Key << name << YAML::Value;
  return *this;
}

YamlWriter& YamlWriter::str(const std::string& value) {
  out_ << escaped(value);
  return *this;
}

YamlWriter& YamlWriter::boolean(bool value) {
  out_ << (value ? "true" : "false");
  return *this;
}

YamlWriter& YamlWriter::duration(std::chrono::milliseconds d) {
  return str(detail::format_duration(d));
}

YamlWriter& YamlWriter::seconds(std::chrono::seconds s) {
  return str(detail::format_seconds(s));
}

YamlWriter& YamlWriter::size(std::size_t bytes) {
  return str(detail::format_size(bytes));
}

YamlWriter& YamlWriter::number(std::size_t n) {
  return str(std::to_string(n));
}

YamlWriter& YamlWriter::null() {
  out_ << YAML::Null;
  return *this;
}

YamlWriter& YamlWriter::list(const std::vector<std::string>& items) {
  out_ << YAML::Flow << YAML::BeginSeq;
  for (const auto& item : items) {
    out_ << escaped(item);
  }
  out_ << YAML::EndSeq;
  return *this;
}

YamlWriter& YamlWriter::begin_map() {
  out_ << YAML::BeginMap;
  return *this;
}

YamlWriter& YamlWriter::begin_flow_map() {
  out_ << YAML::Flow << YAML::BeginMap;
  return *this;
}

YamlWriter& YamlWriter::end_map() {
  out_ << YAML::EndMap;
  return *this;
}

YamlWriter& YamlWriter::begin_list() {
  out_ << YAML::BeginSeq;
  return *this;
}

YamlWriter& YamlWriter::end_list() {
  out_ << YAML::EndSeq;
  return *this;
}

std::string YamlWriter::finish() {
  out_ << YAML::EndMap;
  return std::string(out_.c_str()) + "\n";
}

}  // namespace gatehouse::config
