#pragma once
// Route selection: first route in file order whose host, method and path prefix all match.
#include <optional>
#include <string_view>

#include "config/config.hpp"

namespace gatehouse::core {

class Router {
 public:
  explicit Router(const config::Config& cfg) : routes_(cfg.routes) {}
  // Index into Config::routes, or nullopt (404). `path`: the canonical path
  // (http/canonical_path.hpp; prefixes are canonical too, so this plain prefix test equals one on
  // decoded paths); a query is ignored. `host` may carry a port; it is ignored.
  std::optional<std::size_t> match(std::string_view method, std::string_view path,
                                   std::string_view host) const;

 private:
  const std::vector<config::Route>& routes_;
};

// "example.com:8080" -> "example.com", "[::1]:80" -> "[::1]".
std::string_view host_without_port(std::string_view host);

}  // namespace gatehouse::core
