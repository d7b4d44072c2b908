#include "core/router.hpp"

#include <algorithm>

#include "http/fields.hpp"

namespace gatehouse::core {
namespace {

// The first segment of `left` ("/seg/..." or "/seg"): the segment, what follows it (empty or
// starting with '/'), and its FNV-1a hash, in one pass. Segments are short: a plain loop beats a
// call to memchr.
struct Split {
  std::string_view segment;
  std::string_view after;
  std::uint32_t hash;
};

Split split_first(std::string_view left) {
  std::uint32_t h = 2166136261u;
  std::size_t i = 1;
  for (; i < left.size() && left[i] != '/'; ++i) {
    h = (h ^ static_cast<unsigned char>(left[i])) * 16777619u;
  }
  return {left.substr(1, i - 1), left.substr(i), h};
}

std::uint32_t segment_hash(std::string_view segment) {
  std::string slashed(1, '/');
  slashed += segment;
  return split_first(slashed).hash;
}

}  // namespace

std::string_view host_without_port(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    auto close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(0, close + 1);
  }
  auto colon = host.rfind(':');
  return colon == std::string_view::npos ? host : host.substr(0, colon);
}

Router::Router(const config::Config& cfg) : routes_(cfg.routes) {
  nodes_.emplace_back();
  templates_.resize(routes_.size());
  for (std::size_t i = 0; i < routes_.size(); ++i) {
    const auto& m = routes_[i].match;
    auto index = static_cast<std::uint32_t>(i);
    if (!m.path.empty()) {
      auto parsed = config::parse_path_template(m.path);
      if (!parsed.error.empty()) {
        continue;  // the loader refuses these; a hand-made Config's bad template never matches
      }
      auto& segs = parsed.segments;
      if (!segs.empty() && segs.back().kind == config::PathSegment::Kind::rest) {
        nodes_[add_segments(segs, segs.size() - 1)].rest.push_back(index);
      } else {
        nodes_[add_segments(segs, segs.size())].exact.push_back(index);
      }
      if (parsed.variables() > 0) {
        templates_[i] = std::move(segs);
      }
      continue;
    }
    // A prefix is a plain string prefix ("/api" matches "/apix"): its complete segments are trie
    // nodes, the part from its last '/' on is compared as a string.
    std::string_view prefix = m.path_prefix;
    auto last = prefix.starts_with('/') ? prefix.rfind('/') : std::string_view::npos;
    std::uint32_t node = 0;
    if (last != std::string_view::npos && last > 0) {
      std::vector<config::PathSegment> segs;
      std::string_view head = prefix.substr(1, last - 1);
      while (true) {
        auto slash = head.find('/');
        segs.push_back({config::PathSegment::Kind::literal, std::string(head.substr(0, slash))});
        if (slash == std::string_view::npos) {
          break;
        }
        head = head.substr(slash + 1);
      }
      node = add_segments(segs, segs.size());
    }
    std::string_view tail = last == std::string_view::npos ? prefix : prefix.substr(last);
    nodes_[node].prefixes.emplace_back(std::string(tail), index);
  }
  // Route lists were filled in file order; subtree minima bottom-up (children have larger
  // indices than their parents).
  for (std::size_t n = nodes_.size(); n-- > 0;) {
    auto& node = nodes_[n];
    std::sort(node.literals.begin(), node.literals.end(), [](const Literal& a, const Literal& b) {
      return a.hash != b.hash ? a.hash < b.hash : a.text < b.text;
    });
    std::uint32_t min = kNone;
    for (const RouteList* list : {&node.exact, &node.rest}) {
      if (!list->empty()) {
        min = std::min(min, list->front());
      }
    }
    if (!node.prefixes.empty()) {
      min = std::min(min, node.prefixes.front().second);
    }
    for (const auto& literal : node.literals) {
      min = std::min(min, nodes_[literal.node].min_route);
    }
    if (node.param != kNone) {
      min = std::min(min, nodes_[node.param].min_route);
    }
    node.min_route = min;
  }
}

std::uint32_t Router::child(std::uint32_t node, std::string_view literal) {
  for (const auto& l : nodes_[node].literals) {
    if (l.text == literal) {
      return l.node;
    }
  }
  auto c = static_cast<std::uint32_t>(nodes_.size());
  nodes_[node].literals.push_back({segment_hash(literal), c, std::string(literal)});
  nodes_.emplace_back();
  return c;
}

std::uint32_t Router::add_segments(const std::vector<config::PathSegment>& segments,
                                   std::size_t count) {
  std::uint32_t node = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const auto& s = segments[i];
    if (s.kind == config::PathSegment::Kind::literal) {
      node = child(node, s.text);
    } else {
      if (nodes_[node].param == kNone) {
        nodes_[node].param = static_cast<std::uint32_t>(nodes_.size());
        nodes_.emplace_back();
      }
      node = nodes_[node].param;
    }
  }
  return node;
}

bool Router::accepts(std::uint32_t route, std::string_view method, std::string_view host) const {
  const auto& m = routes_[route].match;
  if (!m.methods.empty() &&
      std::find(m.methods.begin(), m.methods.end(), method) == m.methods.end()) {
    return false;
  }
  return m.host.empty() || http::iequals(m.host, host_without_port(host));
}

// Depth first, literal child before the `{name}` child; `best` is the smallest matching route
// index found so far, and subtrees whose routes all come later in the file are skipped. The
// depth is bounded by the configured paths' segment counts.
void Router::walk(std::uint32_t index, std::string_view left, std::string_view method,
                  std::string_view host, std::uint32_t& best) const {
  const Node& node = nodes_[index];
  if (node.min_route >= best) {
    return;
  }
  auto first_accepted = [&](const RouteList& list) {
    for (auto r : list) {
      if (r >= best) {
        return;
      }
      if (accepts(r, method, host)) {
        best = r;
        return;
      }
    }
  };
  for (const auto& [tail, r] : node.prefixes) {
    if (r >= best) {
      break;
    }
    if (left.starts_with(tail) && accepts(r, method, host)) {
      best = r;
      break;
    }
  }
  if (left.empty()) {
    first_accepted(node.exact);
    return;
  }
  if (left.front() != '/') {
    return;  // not a path (canonical ones start with '/'): only a prefix could match it
  }
  first_accepted(node.rest);
  if (node.literals.empty() && node.param == kNone) {
    return;  // a leaf, or the root of a prefix-only config like `path_prefix: /`
  }
  auto [segment, after, hash] = split_first(left);
  if (!node.literals.empty()) {
    auto it = std::lower_bound(node.literals.begin(), node.literals.end(), hash,
                               [](const Literal& l, std::uint32_t h) { return l.hash < h; });
    for (; it != node.literals.end() && it->hash == hash; ++it) {
      if (it->text == segment) {
        walk(it->node, after, method, host, best);
        break;
      }
    }
  }
  if (node.param != kNone && !segment.empty()) {
    walk(node.param, after, method, host, best);
  }
}

void Router::capture(std::uint32_t route, std::string_view path, PathParams& params) const {
  params.clear();
  const auto& segs = templates_[route];
  std::string_view left = path;  // "/seg/seg..."
  for (const auto& s : segs) {
    if (s.kind == config::PathSegment::Kind::rest) {
      params.names[params.size] = s.text;
      params.values[params.size++] = left.substr(1);
      return;
    }
    auto split = split_first(left);
    if (s.kind == config::PathSegment::Kind::param) {
      params.names[params.size] = s.text;
      params.values[params.size++] = split.segment;
    }
    left = split.after;
  }
}

std::optional<std::size_t> Router::match(std::string_view method, std::string_view path,
                                         std::string_view host, PathParams& params) const {
  params.clear();
  path = path.substr(0, path.find('?'));
  std::uint32_t best = kNone;
  walk(0, path, method, host, best);
  if (best == kNone) {
    return std::nullopt;
  }
  if (!templates_[best].empty()) {
    capture(best, path, params);
  }
  return best;
}

std::optional<std::size_t> Router::match(std::string_view method, std::string_view path,
                                         std::string_view host) const {
  PathParams unused;
  return match(method, path, host, unused);
}

}  // namespace gatehouse::core
