#include "config/reload_plan.hpp"

#include <algorithm>
#include <map>

#include "config/sections.hpp"
#include "http/json.hpp"

namespace gatehouse::config {
namespace {

std::string block_text(const Definitions& blocks, std::string_view key) {
  for (const auto& [k, text] : blocks) {
    if (k == key) {
      return text;
    }
  }
  return {};
}

void append_list(std::string& out, const std::vector<std::string>& names) {
  out += '[';
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i != 0) {
      out += ',';
    }
    http::append_json_string(out, names[i]);
  }
  out += ']';
}

}  // namespace

DefinitionDiff diff_definitions(const Definitions& before, const Definitions& after) {
  auto collect = [](const Definitions& defs, std::vector<std::string>& order) {
    std::map<std::string, std::string> out;
    for (const auto& [name, text] : defs) {
      auto [it, fresh] = out.try_emplace(name, text);
      if (fresh) {
        order.push_back(name);
      } else {
        it->second += '\n';
        it->second += text;
      }
    }
    return out;
  };
  std::vector<std::string> old_order, new_order;
  auto old_defs = collect(before, old_order);
  auto new_defs = collect(after, new_order);
  DefinitionDiff d;
  for (const auto& name : new_order) {
    auto it = old_defs.find(name);
    if (it == old_defs.end()) {
      d.added.push_back(name);
    } else if (it->second == new_defs[name]) {
      d.kept.push_back(name);
    } else {
      d.changed.push_back(name);
    }
  }
  for (const auto& name : old_order) {
    if (!new_defs.contains(name)) {
      d.removed.push_back(name);
    }
  }
  return d;
}

Definitions yaml_blocks(std::string_view yaml, std::size_t indent) {
  Definitions out;
  while (!yaml.empty()) {
    auto eol = yaml.find('\n');
    auto line = yaml.substr(0, eol);
    yaml = eol == std::string_view::npos ? std::string_view() : yaml.substr(eol + 1);
    const auto spaces = std::min(line.find_first_not_of(' '), line.size());
    if (spaces < indent || spaces == line.size()) {
      // Shallower: the enclosing key's line before the blocks, or the end of them.
      if (!out.empty()) {
        break;
      }
      continue;
    }
    if (spaces == indent && line[indent] != '-') {
      auto colon = line.find(':', indent);
      out.emplace_back(std::string(line.substr(indent, colon - indent)), std::string());
    } else if (out.empty()) {
      continue;
    }
    out.back().second += line;
    out.back().second += '\n';
  }
  return out;
}

Definitions route_definitions(const Config& c, const Sections& sections) {
  Definitions out;
  const auto routes = block_text(yaml_blocks(to_yaml(c, sections), 0), "routes");
  // "routes:\n  - name: a\n    ...": each "  - " starts a route, named by its first line.
  std::string_view rest = routes;
  std::size_t start = std::string_view::npos;
  auto flush = [&](std::size_t end) {
    if (start == std::string_view::npos) {
      return;
    }
    std::string text(rest.substr(start, end - start));
    auto name = text.substr(0, text.find('\n'));
    name = name.substr(std::min(name.size(), std::string_view("  - name: ").size()));
    if (name.size() >= 2 && name.front() == '"') {
      name = name.substr(1, name.size() - 2);
    }
    out.emplace_back(std::move(name), std::move(text));
  };
  for (std::size_t pos = 0; pos < rest.size();) {
    auto eol = rest.find('\n', pos);
    if (eol == std::string_view::npos) {
      eol = rest.size();
    }
    if (rest.substr(pos).starts_with("  - ")) {
      flush(pos);
      start = pos;
    }
    pos = eol + 1;
  }
  flush(rest.size());
  return out;
}

Definitions upstream_definitions(const Config& c, const Sections& sections) {
  const auto upstreams = block_text(yaml_blocks(to_yaml(c, sections), 0), "upstreams");
  auto blocks = yaml_blocks(upstreams, 2);
  for (auto& [name, text] : blocks) {
    if (name.size() >= 2 && name.front() == '"') {
      name = name.substr(1, name.size() - 2);
    }
  }
  return blocks;
}

const std::vector<std::string>& upstream_unit_fields() {
  // What the process-wide parts of an upstream are built from: the target health table and the
  // metrics' target series (targets, resolve_interval, max_addresses), UpstreamHealth (outlier,
  // circuit_breaker), the health checker (health_check, and connect_timeout for its probes) and
  // the resolver. The rest (timeouts, pool, balancing, queue, retries) is the worker's cluster,
  // which a reload rebuilds for a changed upstream.
  static const std::vector<std::string> keys = {
      "targets",         "connect_timeout",  "health_check",  "outlier",
      "circuit_breaker", "resolve_interval", "max_addresses",
  };
  return keys;
}

std::vector<std::string> upstream_unit_keys(const Config& c, const Sections& sections) {
  const auto defs = upstream_definitions(c, sections);
  std::vector<std::string> keys;
  for (const auto& u : c.upstreams) {
    auto it =
        std::find_if(defs.begin(), defs.end(), [&](const auto& d) { return d.first == u.name; });
    std::string key = u.name;
    const auto blocks = yaml_blocks(it != defs.end() ? it->second : std::string(), 4);
    for (const auto& field : upstream_unit_fields()) {
      key += '\n';
      key += block_text(blocks, field);
    }
    keys.push_back(std::move(key));
  }
  return keys;
}

const std::vector<std::string>& restart_only_keys() {
  // Each is read once at start-up: by the listeners and threads (listen, listen_tls, workers,
  // admin_listen, proxy_protocol), by objects that live as long as the process (log streams,
  // the dependency checks and the health checker's interval, the rate limiter's store and its
  // capacity), or on both sides of a counter (the connection caps,
  // whose slots are taken with one value and released with the other). Filters' sections add
  // theirs through Section::restart_needed (rate_limit: its store and max_keys).
  static const std::vector<std::string> keys = {
      "listen",
      "listen_tls",
      "admin_listen",
      "workers",
      "proxy_protocol",
      "limits.max_connections",
      "limits.max_connections_per_ip",
      "log",
      "health",
  };
  return keys;
}

std::string restart_needed(const Config& running, const Config& next, const Sections& sections) {
  const auto before = yaml_blocks(to_yaml(running, sections), 0);
  const auto after = yaml_blocks(to_yaml(next, sections), 0);
  for (const auto& key : restart_only_keys()) {
    auto dot = key.find('.');
    std::string a = block_text(before, key.substr(0, dot));
    std::string b = block_text(after, key.substr(0, dot));
    if (dot != std::string::npos) {
      a = block_text(yaml_blocks(a, 2), key.substr(dot + 1));
      b = block_text(yaml_blocks(b, 2), key.substr(dot + 1));
    }
    if (a == b) {
      continue;
    }
    return restart_message(key);
  }
  for (const auto& s : sections.all()) {
    if (s.restart_needed != nullptr) {
      if (auto why = s.restart_needed(running, next); !why.empty()) {
        return why;
      }
    }
  }
  return {};
}

ConfigErrorParts parse_config_error(std::string_view text) {
  ConfigErrorParts out;
  // The file name may hold ':' itself: the position is the last ":N:N: " before the message.
  auto number = [](std::string_view s, unsigned& n) {
    if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string_view::npos) {
      return false;
    }
    n = static_cast<unsigned>(std::stoul(std::string(s)));
    return true;
  };
  for (auto sep = text.find(": "); sep != std::string_view::npos; sep = text.find(": ", sep + 1)) {
    auto head = text.substr(0, sep);
    auto c2 = head.rfind(':');
    auto c1 = c2 == std::string_view::npos ? c2 : head.rfind(':', c2 - 1);
    unsigned line = 0, column = 0;
    if (c1 == std::string_view::npos || c1 == 0 ||
        !number(head.substr(c1 + 1, c2 - c1 - 1), line) || !number(head.substr(c2 + 1), column)) {
      continue;
    }
    out.file = std::string(head.substr(0, c1));
    out.line = line;
    out.column = column;
    auto rest = text.substr(sep + 2);
    // A key path has no spaces ("routes[1].rate_limit.limits"); a message without one does.
    auto ksep = rest.find(": ");
    if (ksep != std::string_view::npos && ksep > 0 &&
        rest.substr(0, ksep).find(' ') == std::string_view::npos) {
      out.key = std::string(rest.substr(0, ksep));
      rest = rest.substr(ksep + 2);
    }
    out.message = std::string(rest);
    return out;
  }
  out.message = std::string(text);
  return out;
}

std::string diff_json(const DefinitionDiff& d) {
  std::string out = "{\"kept\":";
  append_list(out, d.kept);
  out += ",\"changed\":";
  append_list(out, d.changed);
  out += ",\"added\":";
  append_list(out, d.added);
  out += ",\"removed\":";
  append_list(out, d.removed);
  out += '}';
  return out;
}

}  // namespace gatehouse::config
