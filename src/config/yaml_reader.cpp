#include "config/yaml_reader.hpp"

#include <algorithm>

#include "config/config.hpp"

namespace gatehouse::config::detail {
namespace {

// Levenshtein distance, for "did you mean".
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) {
    row[j] = j;
  }
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::optional<std::string_view> closest(std::string_view key,
                                        const std::vector<std::string_view>& allowed) {
  std::optional<std::string_view> best;
  std::size_t best_distance = 3;  // suggest only near misses
  for (auto candidate : allowed) {
    auto d = edit_distance(key, candidate);
    if (d < best_distance) {
      best = candidate;
      best_distance = d;
    }
  }
  return best;
}

bool valid(const YAML::Mark& mark) {
  return mark.line >= 0 && mark.column >= 0;
}

}  // namespace

std::string join(const std::vector<std::string_view>& words) {
  std::string out;
  for (auto w : words) {
    out += out.empty() ? "" : ", ";
    out += w;
  }
  return out;
}

std::string located(const std::string& source, const YAML::Mark& mark, std::string_view path,
                    std::string_view message) {
  int line = valid(mark) ? mark.line + 1 : 1;
  int column = valid(mark) ? mark.column + 1 : 1;
  std::string out = source + ":" + std::to_string(line) + ":" + std::to_string(column) + ": ";
  if (!path.empty()) {
    out.append(path).append(": ");
  }
  return out.append(message);
}

Value::Value(const std::string& source, YAML::Node node, YAML::Mark mark, std::string path)
    : source_(&source), node_(std::move(node)), mark_(mark), path_(std::move(path)) {}

void Value::fail(std::string_view message) const {
  throw ConfigError(located(*source_, mark_, path_, message));
}

std::string_view Value::kind() const {
  if (node_.IsMap()) {
    return "a map";
  }
  if (node_.IsSequence()) {
    return "a list";
  }
  if (node_.IsScalar()) {
    return "a string";
  }
  return "null";
}

const std::string& Value::text() const {
  if (!node_.IsScalar()) {
    fail("expected a string, got " + std::string(kind()));
  }
  return node_.Scalar();
}

std::vector<Value> Value::items() const {
  std::vector<Value> out;
  if (node_.IsNull()) {
    return out;
  }
  if (!node_.IsSequence()) {
    fail("expected a list, got " + std::string(kind()));
  }
  for (std::size_t i = 0; i < node_.size(); ++i) {
    YAML::Node item = node_[i];
    // An empty item ("- ") has no position of its own; the list's is close enough.
    auto mark = valid(item.Mark()) ? item.Mark() : mark_;
    out.emplace_back(*source_, item, mark, path_ + "[" + std::to_string(i) + "]");
  }
  return out;
}

Map::Map(const Value& value, std::vector<std::string_view> allowed)
    : Map(value, std::move(allowed), false) {}

Map Map::any_keys(const Value& value) {
  return Map(value, {}, true);
}

Map::Map(const Value& value, std::vector<std::string_view> allowed, bool any) : self_(value) {
  if (value.is_null()) {
    return;
  }
  if (!value.is_map()) {
    value.fail("expected a map, got " + std::string(value.kind()));
  }
  const std::string& source = value.source();
  for (const auto& kv : value.node()) {
    const YAML::Node& key = kv.first;
    const YAML::Node& val = kv.second;
    YAML::Mark key_mark = valid(key.Mark()) ? key.Mark() : value.mark();
    if (!key.IsScalar()) {
      Value as_value(source, key, key_mark, value.path());
      as_value.fail("keys must be strings, got " + std::string(as_value.kind()));
    }
    const std::string& name = key.Scalar();
    std::string path = child_path(name);
    if (!any && std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      std::string message = "unknown key \"" + name + "\"";
      if (auto near = closest(name, allowed)) {
        message += " (did you mean \"" + std::string(*near) + "\"?)";
      }
      throw ConfigError(
          located(source, key_mark, path, message + "; allowed keys: " + join(allowed)));
    }
    for (const auto& seen : entries_) {
      if (seen.key == name) {
        throw ConfigError(located(source, key_mark, path,
                                  "duplicate key (first defined at line " +
                                      std::to_string(seen.key_mark.line + 1) + ")"));
      }
    }
    // An empty value ("key:") is positioned at the next token, often on a later line; point at the
    // key instead.
    YAML::Mark value_mark = val.Mark();
    if (!valid(value_mark) || (val.IsNull() && value_mark.line != key_mark.line)) {
      value_mark = key_mark;
    }
    entries_.push_back(Entry{name, key_mark, Value(source, val, value_mark, path)});
  }
}

std::optional<Value> Map::find(std::string_view key) const {
  for (const auto& entry : entries_) {
    if (entry.key == key) {
      return entry.value;
    }
  }
  return std::nullopt;
}

Value Map::require(std::string_view key, std::string_view hint) const {
  auto found = find(key);
  if (!found) {
    fail_missing(key, hint);
  }
  return *found;
}

void Map::fail_missing(std::string_view key, std::string_view hint) const {
  std::string message = "required key is missing";
  if (!hint.empty()) {
    message.append(" (").append(hint).append(")");
  }
  throw ConfigError(located(self_.source(), self_.mark(), child_path(key), message));
}

std::string Map::child_path(std::string_view key) const {
  return self_.path().empty() ? std::string(key) : self_.path() + "." + std::string(key);
}

}  // namespace gatehouse::config::detail
