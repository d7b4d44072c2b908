#pragma once
// `match.path` of a route: an exact path ("/api/health") or a template whose variables each fill a
// whole segment: "{name}" (exactly one non-empty segment) or, as the last segment only,
// "{name...}" (the rest of the path, possibly empty, '/' included). Literal segments are compared
// canonical, like requests' paths (http/canonical_path.hpp). core/router.* compiles these.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::config {

struct PathSegment {
  enum class Kind : std::uint8_t { literal, param, rest };
  Kind kind = Kind::literal;
  std::string text;  // literal: its canonical text; param and rest: the variable's name
};

struct PathTemplate {
  std::vector<PathSegment> segments;  // "/" is one empty literal segment
  std::string error;                  // why the text was refused (no location), or empty
  std::size_t variables() const;
};

// Parses `text` as written in the file (or as stored after loading: the canonical form reads
// back the same).
PathTemplate parse_path_template(std::string_view text);
// The stored form: '/' + segments, literals canonical, variables "{name}" / "{name...}".
std::string template_text(const PathTemplate& t);
// The variable names of a stored match.path, in order (empty for an exact path).
std::vector<std::string> path_variables(std::string_view path);

}  // namespace gatehouse::config
