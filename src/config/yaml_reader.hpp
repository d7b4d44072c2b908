#pragma once
// Walking yaml-cpp nodes for the loader. Every failure is a ConfigError
// "SOURCE:LINE:COLUMN: key.path: message"; maps reject unknown and duplicate keys.
#include <yaml-cpp/yaml.h>

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gatehouse::config::detail {

// "a, b, c", for messages.
std::string join(const std::vector<std::string_view>& words);

// "SOURCE:LINE:COLUMN: path: message" with 1-based line and column; the path part is left out when
// empty. `mark` is yaml-cpp's 0-based position; an unknown position counts as 1:1.
std::string located(const std::string& source, const YAML::Mark& mark, std::string_view path,
                    std::string_view message);

// A node with its position and key path ("routes[1].upstream").
class Value {
 public:
  Value(const std::string& source, YAML::Node node, YAML::Mark mark, std::string path);

  const std::string& path() const { return path_; }
  const YAML::Mark& mark() const { return mark_; }
  const std::string& source() const { return *source_; }
  const YAML::Node& node() const { return node_; }
  bool is_null() const { return node_.IsNull(); }
  bool is_map() const { return node_.IsMap(); }

  [[noreturn]] void fail(std::string_view message) const;

  // The scalar's text; a map, list or null is "expected a string, got a map".
  const std::string& text() const;
  // The elements of a list (null = no elements); anything else is "expected a list, got ...".
  std::vector<Value> items() const;

  // "a map", "a list", "a string" or "null", for messages.
  std::string_view kind() const;

 private:
  const std::string* source_;
  YAML::Node node_;
  YAML::Mark mark_;
  std::string path_;
};

// One key of a map: its text, where the key itself is, and its value.
struct Entry {
  std::string key;
  YAML::Mark key_mark;
  Value value;
};

// A map whose keys must come from a fixed list (or, for named entries like upstreams, any string
// key). Null counts as an empty map.
class Map {
 public:
  // `allowed` lists the accepted keys; an unknown key fails with the list and a close match.
  Map(const Value& value, std::vector<std::string_view> allowed);
  // Any string key is accepted (upstream names); duplicates still fail.
  static Map any_keys(const Value& value);

  const Value& self() const { return self_; }
  std::optional<Value> find(std::string_view key) const;
  // Fails "KEY.PATH: required key is missing" at the map's position; `hint` is appended.
  Value require(std::string_view key, std::string_view hint = {}) const;
  [[noreturn]] void fail_missing(std::string_view key, std::string_view hint = {}) const;
  const std::vector<Entry>& entries() const { return entries_; }
  std::string child_path(std::string_view key) const;

 private:
  Map(const Value& value, std::vector<std::string_view> allowed, bool any);

  Value self_;
  std::vector<Entry> entries_;
};

}  // namespace gatehouse::config::detail
