#pragma once
// The variables a route template captured from one request's canonical path ("/api/stories/{id}"
// on "/api/stories/42": id = "42"). Views only: names into the router's compiled routes, values
// into the canonical path, so capturing allocates nothing. Valid while both live (the request).
#include <array>
#include <cstddef>
#include <optional>
#include <string_view>

namespace gatehouse::core {

// Variables per template; more is a config error (config/path_template.hpp).
inline constexpr std::size_t kMaxPathParams = 8;

struct PathParams {
  std::array<std::string_view, kMaxPathParams> names;
  std::array<std::string_view, kMaxPathParams> values;
  std::size_t size = 0;

  // The value of variable `name`; nullopt when the matched route has no such variable. A
  // `{rest...}` value may be empty; a `{name}` value never is.
  std::optional<std::string_view> get(std::string_view name) const {
    for (std::size_t i = 0; i < size; ++i) {
      if (names[i] == name) {
        return values[i];
      }
    }
    return std::nullopt;
  }
  void clear() { size = 0; }
};

}  // namespace gatehouse::core
