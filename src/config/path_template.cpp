#include "config/path_template.hpp"

#include <algorithm>

#include "core/path_params.hpp"
#include "http/canonical_path.hpp"

namespace gatehouse::config {
namespace {

bool is_name(std::string_view s) {
  if (s.empty() || (s.front() >= '0' && s.front() <= '9')) {
    return false;
  }
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

std::string quoted(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  out += s;
  out += '"';
  return out;
}

}  // namespace

std::size_t PathTemplate::variables() const {
  return static_cast<std::size_t>(
      std::count_if(segments.begin(), segments.end(),
                    [](const auto& s) { return s.kind != PathSegment::Kind::literal; }));
}

PathTemplate parse_path_template(std::string_view text) {
  PathTemplate out;
  auto fail = [&](std::string message) {
    out.segments.clear();
    out.error = std::move(message);
    return out;
  };
  if (text.empty() || text.front() != '/') {
    return fail("must start with '/' (got " + quoted(text) + ")");
  }
  if (text.find_first_of(" \t?#") != std::string_view::npos) {
    return fail("must not contain blanks, '?' or '#' (got " + quoted(text) + ")");
  }
  std::string_view rest = text.substr(1);
  while (true) {
    auto slash = rest.find('/');
    std::string_view seg = rest.substr(0, slash);
    bool last = slash == std::string_view::npos;
    if (seg.empty() && !last) {
      return fail("empty segment ('//') in " + quoted(text));
    }
    auto open = std::count(seg.begin(), seg.end(), '{');
    auto close = std::count(seg.begin(), seg.end(), '}');
    if (open != close) {
      return fail("unbalanced braces in segment " + quoted(seg));
    }
    if (open > 0) {
      if (open > 1 || seg.front() != '{' || seg.back() != '}') {
        return fail("a variable must fill a whole segment ({name} or {name...}), got " +
                    quoted(seg));
      }
      std::string_view name = seg.substr(1, seg.size() - 2);
      PathSegment::Kind kind = PathSegment::Kind::param;
      if (name.ends_with("...")) {
        name.remove_suffix(3);
        kind = PathSegment::Kind::rest;
        if (!last) {
          return fail(quoted(seg) + " must be the last segment");
        }
      }
      if (!is_name(name)) {
        return fail("invalid variable name " + quoted(name) +
                    " (letters, digits and '_', not starting with a digit)");
      }
      for (const auto& s : out.segments) {
        if (s.kind != PathSegment::Kind::literal && s.text == name) {
          return fail("duplicate variable " + quoted(name));
        }
      }
      out.segments.push_back({kind, std::string(name)});
    } else {
      // Requests are matched canonical, so literals are too: "%72evise" is "revise".
      std::string slashed(1, '/');
      slashed += seg;
      auto canonical = http::canonical_path(slashed, false);
      if (!canonical.reason.empty()) {
        return fail("invalid path segment " + quoted(seg) + ": " + std::string(canonical.reason));
      }
      std::string_view c = canonical.view(slashed);
      out.segments.push_back({PathSegment::Kind::literal, std::string(c.substr(1))});
    }
    if (last) {
      break;
    }
    rest = rest.substr(slash + 1);
  }
  if (out.variables() > core::kMaxPathParams) {
    return fail("too many variables: " + std::to_string(out.variables()) + " (at most " +
                std::to_string(core::kMaxPathParams) + ")");
  }
  return out;
}

std::string template_text(const PathTemplate& t) {
  std::string out;
  for (const auto& s : t.segments) {
    out += '/';
    switch (s.kind) {
      case PathSegment::Kind::literal:
        out += s.text;
        break;
      case PathSegment::Kind::param:
        out += '{';
        out += s.text;
        out += '}';
        break;
      case PathSegment::Kind::rest:
        out += '{';
        out += s.text;
        out += "...}";
        break;
    }
  }
  return out;
}

std::vector<std::string> path_variables(std::string_view path) {
  std::vector<std::string> out;
  for (auto& s : parse_path_template(path).segments) {
    if (s.kind != PathSegment::Kind::literal) {
      out.push_back(std::move(s.text));
    }
  }
  return out;
}

}  // namespace gatehouse::config
