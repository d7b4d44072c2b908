#include "http/forwarding.hpp"

#include "http/fields.hpp"
#include "http/target.hpp"

namespace gatehouse::http {
namespace {

bool is_tchar(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && is_ows(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

// The walk shared by both header families: `hop(i)` gives the address of the i-th hop from the
// left (nullopt when it has none), `count` hops in all.
template <class Hop>
std::string walk(std::string_view peer_ip, const IpBytes& peer, std::size_t count, Hop hop,
                 std::span<const Cidr> trusted) {
  IpBytes chosen = peer;
  for (std::size_t i = count; i-- > 0;) {
    auto ip = hop(i);
    if (!ip) {
      break;
    }
    chosen = *ip;
    if (!any_contains(trusted, *ip)) {
      break;
    }
  }
  if (chosen == peer) {
    return std::string(peer_ip);
  }
  return to_string(chosen);
}

// The right-most non-empty element of a comma list spread over field lines.
std::string_view last_element(std::span<const std::string_view> lines) {
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    auto tokens = split_tokens(*it);
    if (!tokens.empty()) {
      return tokens.back();
    }
  }
  return {};
}

std::string checked_proto(std::string_view proto) {
  if (iequals(proto, "https")) {
    return "https";
  }
  if (iequals(proto, "http")) {
    return "http";
  }
  return {};
}

std::string checked_host(std::string_view host) {
  if (host.empty() || !is_valid_host(host)) {
    return {};
  }
  return std::string(host);
}

// Appends the elements of one Forwarded field line; false on a syntax error.
bool parse_forwarded_line(std::string_view s, std::vector<ForwardedElement>& out) {
  ForwardedElement element;
  bool has_pairs = false;
  bool seen_for = false;
  bool seen_proto = false;
  bool seen_host = false;
  auto finish = [&] {
    if (has_pairs) {
      out.push_back(std::move(element));
    }
    element = ForwardedElement{};
    has_pairs = seen_for = seen_proto = seen_host = false;
  };
  std::size_t i = 0;
  while (true) {
    while (i < s.size() && is_ows(s[i])) {
      ++i;
    }
    if (i == s.size()) {
      break;
    }
    if (s[i] == ',') {
      finish();
      ++i;
      continue;
    }
    if (s[i] == ';') {
      ++i;
      continue;
    }
    std::size_t name_start = i;
    while (i < s.size() && is_tchar(s[i])) {
      ++i;
    }
    auto name = s.substr(name_start, i - name_start);
    if (name.empty() || i == s.size() || s[i] != '=') {
      return false;
    }
    ++i;
    std::string value;
    if (i < s.size() && s[i] == '"') {
      ++i;
      bool closed = false;
      while (i < s.size()) {
        char c = s[i++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\') {
          if (i == s.size()) {
            return false;
          }
          c = s[i++];
        }
        value += c;
      }
      if (!closed) {
        return false;
      }
    } else {
      std::size_t start = i;
      while (i < s.size() && is_tchar(s[i])) {
        ++i;
      }
      if (i == start) {
        return false;
      }
      value.assign(s.substr(start, i - start));
    }
    // RFC 7239 section 4: a parameter occurs at most once per element.
    if (iequals(name, "for")) {
      if (seen_for) {
        return false;
      }
      seen_for = true;
      element.for_ = std::move(value);
    } else if (iequals(name, "proto")) {
      if (seen_proto) {
        return false;
      }
      seen_proto = true;
      element.proto = std::move(value);
    } else if (iequals(name, "host")) {
      if (seen_host) {
        return false;
      }
      seen_host = true;
      element.host = std::move(value);
    }
    has_pairs = true;
    while (i < s.size() && is_ows(s[i])) {
      ++i;
    }
    if (i < s.size() && s[i] != ',' && s[i] != ';') {
      return false;
    }
  }
  finish();
  return true;
}

// "unknown" and obfuscated identifiers ("_hidden", RFC 7239 section 6.3) may be passed upstream
// as written; anything else without an address is sent as "unknown".
bool is_identifier(std::string_view node) {
  if (iequals(node, "unknown")) {
    return true;
  }
  if (node.size() < 2 || node[0] != '_') {
    return false;
  }
  for (char c : node.substr(1)) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) {
      return false;
    }
  }
  return true;
}

void append_list_item(std::string& out, std::string_view item) {
  if (!out.empty()) {
    out += ", ";
  }
  out += item;
}

}  // namespace

bool is_trusted(std::string_view ip, std::span<const Cidr> trusted) {
  if (trusted.empty()) {
    return false;
  }
  auto parsed = parse_ip(ip);
  return parsed && any_contains(trusted, *parsed);
}

std::string client_ip_from_x_forwarded_for(std::string_view peer_ip,
                                           std::span<const std::string_view> lines,
                                           std::span<const Cidr> trusted) {
  auto peer = parse_ip(peer_ip);
  if (trusted.empty() || lines.empty() || !peer || !any_contains(trusted, *peer)) {
    return std::string(peer_ip);
  }
  // Right to left over the lines and their elements, without splitting into a list first.
  IpBytes chosen = *peer;
  bool walking = true;
  for (auto line = lines.rbegin(); walking && line != lines.rend(); ++line) {
    std::string_view rest = *line;
    while (walking && !rest.empty()) {
      auto comma = rest.rfind(',');
      auto hop = trim(comma == std::string_view::npos ? rest : rest.substr(comma + 1));
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(0, comma);
      if (hop.empty()) {
        continue;  // "a, , b" and empty lines: empty list elements (RFC 9110 section 5.6.1)
      }
      auto ip = parse_ip(hop);
      if (!ip) {
        walking = false;
        break;
      }
      chosen = *ip;
      walking = any_contains(trusted, *ip);
    }
  }
  if (chosen == *peer) {
    return std::string(peer_ip);
  }
  return to_string(chosen);
}

std::string client_ip(std::string_view peer_ip, std::string_view x_forwarded_for,
                      std::span<const Cidr> trusted) {
  std::string_view line[1] = {x_forwarded_for};
  return client_ip_from_x_forwarded_for(peer_ip, line, trusted);
}

ForwardedList parse_forwarded(std::span<const std::string_view> lines) {
  ForwardedList out;
  for (auto line : lines) {
    if (!parse_forwarded_line(line, out.elements)) {
      out.ok = false;
      out.elements.clear();
      break;
    }
  }
  return out;
}

std::optional<IpBytes> forwarded_node_ip(std::string_view node) {
  if (node.empty()) {
    return std::nullopt;
  }
  if (node[0] == '[') {
    auto close = node.find(']');
    if (close == std::string_view::npos) {
      return std::nullopt;
    }
    auto rest = node.substr(close + 1);
    if (!rest.empty() && rest[0] != ':') {
      return std::nullopt;
    }
    auto ip = node.substr(1, close - 1);
    if (ip.find(':') == std::string_view::npos) {
      return std::nullopt;  // brackets hold IPv6 only
    }
    return parse_ip(ip);
  }
  // IPv6 must be bracketed (RFC 7239 section 6), so a colon here starts a port.
  auto ip = node.substr(0, node.find(':'));
  if (ip.find('.') == std::string_view::npos) {
    return std::nullopt;
  }
  return parse_ip(ip);
}

Forwarding resolve_forwarding(std::string_view peer_ip, const ForwardingLines& lines,
                              std::span<const Cidr> trusted, ForwardedHeaders family) {
  Forwarding out;
  std::optional<IpBytes> peer;
  if (!trusted.empty()) {
    peer = parse_ip(peer_ip);
  }
  out.trusted_peer = peer && any_contains(trusted, *peer);
  if (!out.trusted_peer) {
    out.client_ip = std::string(peer_ip);  // already canonical: the session formats it
    return out;
  }
  if (family == ForwardedHeaders::x_forwarded) {
    out.client_ip = client_ip_from_x_forwarded_for(peer_ip, lines.x_forwarded_for, trusted);
    out.proto = checked_proto(last_element(lines.x_forwarded_proto));
    out.host = checked_host(last_element(lines.x_forwarded_host));
    return out;
  }
  auto list = parse_forwarded(lines.forwarded);
  const auto& elements = list.elements;
  out.client_ip = walk(
      peer_ip, *peer, elements.size(),
      [&](std::size_t i) { return forwarded_node_ip(elements[i].for_); }, trusted);
  if (!elements.empty()) {
    out.proto = checked_proto(elements.back().proto);
    out.host = checked_host(elements.back().host);
  }
  return out;
}

std::string upstream_forwarded_for(const ForwardingLines& lines, ForwardedHeaders family) {
  std::string out;
  if (family == ForwardedHeaders::x_forwarded) {
    for (auto line : lines.x_forwarded_for) {
      for (auto hop : split_tokens(line)) {
        append_list_item(out, hop);
      }
    }
    return out;
  }
  for (const auto& element : parse_forwarded(lines.forwarded).elements) {
    if (auto ip = forwarded_node_ip(element.for_)) {
      append_list_item(out, to_string(*ip));
    } else {
      append_list_item(out, is_identifier(element.for_) ? element.for_ : "unknown");
    }
  }
  return out;
}

}  // namespace gatehouse::http
