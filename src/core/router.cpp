#include "core/router.hpp"

#include <algorithm>

#include "http/fields.hpp"

namespace gatehouse::core {

std::string_view host_without_port(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    auto close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(0, close + 1);
  }
  auto colon = host.rfind(':');
  return colon == std::string_view::npos ? host : host.substr(0, colon);
}

std::optional<std::size_t> Router::match(std::string_view method, std::string_view path,
                                         std::string_view host) const {
  auto q = path.find('?');
  if (q != std::string_view::npos) {
    path = path.substr(0, q);
  }
  for (std::size_t i = 0; i < routes_.size(); ++i) {
    const auto& m = routes_[i].match;
    if (!path.starts_with(m.path_prefix)) {
      continue;
    }
    if (!m.methods.empty() &&
        std::find(m.methods.begin(), m.methods.end(), method) == m.methods.end()) {
      continue;
    }
    if (!m.host.empty() && !http::iequals(m.host, host_without_port(host))) {
      continue;
    }
    return i;
  }
  return std::nullopt;
}

}  // namespace gatehouse::core
