#include "http/fields.hpp"

#include <algorithm>
#include <array>

namespace gatehouse::http {
namespace {

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

}  // namespace

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) {
      return false;
    }
  }
  return true;
}

bool is_hop_by_hop(std::string_view name) {
  static constexpr std::array<std::string_view, 9> kHop = {
      "connection",       "keep-alive",         "te",
      "trailer",          "transfer-encoding",  "upgrade",
      "proxy-connection", "proxy-authenticate", "proxy-authorization"};
  return std::any_of(kHop.begin(), kHop.end(),
                     [&](std::string_view h) { return iequals(h, name); });
}

std::vector<std::string_view> split_tokens(std::string_view value) {
  std::vector<std::string_view> out;
  for_each_token(value, [&](std::string_view token) { out.push_back(token); });
  return out;
}

bool named_by_connection(std::string_view name, std::span<const std::string_view> tokens) {
  return std::any_of(tokens.begin(), tokens.end(),
                     [&](std::string_view t) { return iequals(t, name); });
}

namespace {

bool has_upgrade_token(std::span<const std::string_view> tokens) {
  for (auto t : tokens) {
    if (iequals(t, "upgrade")) {
      return true;
    }
  }
  return false;
}

// "websocket" among "websocket, h2c" (a protocol may carry a version: "websocket/13").
bool names_websocket(std::string_view upgrade) {
  for (auto p : split_tokens(upgrade)) {
    if (iequals(p.substr(0, p.find('/')), "websocket")) {
      return true;
    }
  }
  return false;
}

}  // namespace

bool is_websocket_upgrade(std::string_view method, unsigned version,
                          std::span<const std::string_view> connection_tokens,
                          std::string_view upgrade) {
  return method == "GET" && version == 11 && has_upgrade_token(connection_tokens) &&
         names_websocket(upgrade);
}

bool accepts_websocket(std::span<const std::string_view> connection_tokens,
                       std::string_view upgrade) {
  return has_upgrade_token(connection_tokens) && names_websocket(upgrade);
}

}  // namespace gatehouse::http
