#include "filters/security_headers/config.hpp"

#include <algorithm>
#include <array>

#include "config/config.hpp"
#include "config/value_readers.hpp"
#include "config/yaml_reader.hpp"
#include "http/fields.hpp"

namespace gatehouse::filters::security_headers {
namespace {

using config::detail::Map;
using config::detail::quoted;
using config::detail::read_bool;
using config::detail::read_choice;
using config::detail::Value;

bool is_off(const std::string& text) {
  return text == "off" || text == "false" || text == "False" || text == "FALSE";
}

bool is_on_off_scalar(const Value& v) {
  return v.node().IsScalar() && is_off(v.text());
}

void check_value(const Value& v, const std::string& value) {
  if (!config::detail::is_field_value(value)) {
    v.fail("invalid header value " + quoted(value) +
           " (use printable ASCII, without line breaks or leading and trailing blanks)");
  }
}

// Why an override may not name `name`, or empty when it may.
std::string refused_override(std::string_view name) {
  using http::iequals;
  if (iequals(name, "Content-Security-Policy")) {
    return "set it with security_headers.content_security_policy";
  }
  if (iequals(name, "Strict-Transport-Security")) {
    return "set it with security_headers.hsts";
  }
  if (iequals(name, "Server") || iequals(name, "X-Powered-By")) {
    return "it is removed from upstream responses, not set";
  }
  if (name.size() >= 15 && iequals(name.substr(0, 15), "Access-Control-")) {
    return "CORS headers come from the cors block";
  }
  static constexpr std::array<std::string_view, 7> kMessageHeaders{
      "Content-Length", "Content-Type", "Content-Encoding", "Set-Cookie", "Location",
      "Vary",           "Date"};
  bool message_header = std::any_of(kMessageHeaders.begin(), kMessageHeaders.end(),
                                    [&](std::string_view h) { return iequals(h, name); });
  if (message_header || http::is_hop_by_hop(name)) {
    return "it is not a security header";
  }
  return {};
}

std::vector<Override> read_overrides(const Value& v) {
  std::vector<Override> out;
  Map m = Map::any_keys(v);
  for (const auto& entry : m.entries()) {
    Value key(entry.value.source(), YAML::Node(entry.key), entry.key_mark, entry.value.path());
    std::string name = config::detail::read_header_name(key);
    if (auto why = refused_override(name); !why.empty()) {
      key.fail(quoted(name) + " cannot be overridden: " + why);
    }
    for (const auto& seen : out) {
      if (http::iequals(seen.name, name)) {
        key.fail("duplicate header " + quoted(name) + " (also " + quoted(seen.name) + ")");
      }
    }
    std::string value = entry.value.is_null() ? std::string() : entry.value.text();
    check_value(entry.value, value);
    out.push_back(Override{std::move(name), std::move(value)});
  }
  return out;
}

std::optional<Hsts> read_hsts(const Value& v) {
  if (v.is_null() || is_on_off_scalar(v)) {
    return std::nullopt;
  }
  if (v.node().IsScalar()) {
    v.fail("invalid value " + quoted(v.text()) +
           " (expected off or a map such as {max_age: 1y, include_subdomains: true})");
  }
  Map m(v, {"max_age", "include_subdomains", "preload"});
  Hsts out;
  if (auto x = m.find("max_age")) {
    out.max_age = config::detail::read_seconds(*x, kMaxHstsAge);
  }
  if (auto x = m.find("include_subdomains")) {
    out.include_subdomains = read_bool(*x);
  }
  if (auto x = m.find("preload")) {
    out.preload = read_bool(*x);
    if (out.preload && !out.include_subdomains) {
      x->fail(
          "preload requires include_subdomains: true (a requirement of the browsers' preload "
          "lists)");
    }
    if (out.preload && out.max_age < kYear) {
      x->fail(
          "preload requires max_age of at least 1y (a requirement of the browsers' preload "
          "lists)");
    }
  }
  return out;
}

std::string preset_csp(Preset p) {
  return p == Preset::strict ? std::string(kStrictCsp) : std::string();
}

}  // namespace

std::string_view preset_name(Preset p) {
  switch (p) {
    case Preset::strict:
      return "strict";
    case Preset::relaxed:
      return "relaxed";
    case Preset::off:
      return "off";
  }
  return "?";
}

Settings default_settings(config::Environment environment) {
  Settings out;
  out.preset = environment == config::Environment::production ? Preset::strict : Preset::relaxed;
  out.content_security_policy = preset_csp(out.preset);
  return out;
}

Settings read_settings(const Value& v, config::Environment environment) {
  Settings out = default_settings(environment);
  if (v.is_null()) {
    return out;
  }
  if (is_on_off_scalar(v)) {
    out.preset = Preset::off;
    out.content_security_policy.clear();
    return out;
  }
  if (v.node().IsScalar()) {
    v.fail("invalid value " + quoted(v.text()) + " (expected off or a map)");
  }
  Map m(v, {"preset", "content_security_policy", "hsts", "overrides", "force"});
  if (auto x = m.find("preset")) {
    auto name = read_choice(*x, {"strict", "relaxed", "off"});
    out.preset = name == "strict"    ? Preset::strict
                 : name == "relaxed" ? Preset::relaxed
                                     : Preset::off;
  }
  out.content_security_policy = preset_csp(out.preset);
  if (auto x = m.find("content_security_policy"); x && !x->is_null()) {
    out.content_security_policy = x->text();
    check_value(*x, out.content_security_policy);
  }
  if (auto x = m.find("hsts")) {
    out.hsts = read_hsts(*x);
  }
  if (auto x = m.find("overrides")) {
    out.overrides = read_overrides(*x);
  }
  if (auto x = m.find("force")) {
    out.force = read_bool(*x);
  }
  return out;
}

}  // namespace gatehouse::filters::security_headers
