#pragma once
// Route selection: the first route in file order whose host, methods and path (match.path_prefix,
// or match.path: an exact path or a template) all match. The paths are compiled at construction
// into a segment trie, so a request visits only the nodes along its own path instead of testing
// every route (docs/architecture.md, "Route matching").
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "config/path_template.hpp"
#include "core/path_params.hpp"

namespace gatehouse::core {

class Router {
 public:
  explicit Router(const config::Config& cfg);
  // Index into Config::routes, or nullopt (404). `path`: the canonical path
  // (http/canonical_path.hpp; configured paths are canonical too, so matching canonical strings
  // equals matching decoded paths); a query is ignored. `host` may carry a port; it is ignored.
  // Allocates nothing.
  std::optional<std::size_t> match(std::string_view method, std::string_view path,
                                   std::string_view host) const;
  // The same, and the matched template's variables into `params` (views into `path`; cleared when
  // nothing matches or the route has none).
  std::optional<std::size_t> match(std::string_view method, std::string_view path,
                                   std::string_view host, PathParams& params) const;

 private:
  static constexpr std::uint32_t kNone = UINT32_MAX;
  using RouteList = std::vector<std::uint32_t>;  // route indices, ascending (file order)

  struct Literal {
    std::uint32_t hash = 0;  // segment_hash(text)
    std::uint32_t node = 0;
    std::string text;
  };

  // A node stands for the path consumed so far: the root for nothing, a child for one more
  // segment ("/" + segment). What is left of the request path at a node is empty or starts
  // with '/'.
  struct Node {
    // Sorted by segment hash: the lookup compares integers, then the text once.
    std::vector<Literal> literals;
    std::uint32_t param = kNone;  // the `{name}` child (any non-empty segment)
    RouteList exact;              // match.path ends here: nothing may be left
    RouteList rest;               // `{name...}` here: what is left must start with '/'
    // path_prefix routes whose prefix ends with `tail` after this node: what is left must start
    // with it (e.g. "/api/gen" = node "api" + tail "/gen"; "/api/" = node "api" + tail "/").
    std::vector<std::pair<std::string, std::uint32_t>> prefixes;
    std::uint32_t min_route = kNone;  // smallest route index in this subtree, to prune
  };

  bool accepts(std::uint32_t route, std::string_view method, std::string_view host) const;
  void walk(std::uint32_t node, std::string_view left, std::string_view method,
            std::string_view host, std::uint32_t& best) const;
  std::uint32_t add_segments(const std::vector<config::PathSegment>& segments, std::size_t count);
  std::uint32_t child(std::uint32_t node, std::string_view literal);
  void capture(std::uint32_t route, std::string_view path, PathParams& params) const;

  const std::vector<config::Route>& routes_;
  std::vector<Node> nodes_;                                  // nodes_[0]: the root
  std::vector<std::vector<config::PathSegment>> templates_;  // per route; empty for prefixes
};

// "example.com:8080" -> "example.com", "[::1]:80" -> "[::1]".
std::string_view host_without_port(std::string_view host);

}  // namespace gatehouse::core
