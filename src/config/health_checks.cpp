#include "config/health_checks.hpp"

#include <algorithm>

#include "config/units.hpp"
#include "config/value_readers.hpp"
#include "config/yaml_reader.hpp"
#include "config/yaml_writer.hpp"
#include "redis/url.hpp"

namespace gatehouse::config {
namespace {

using detail::Map;
using detail::quoted;
using detail::Value;

constexpr Millis kMaxTimeout{60'000};

std::string read_tcp(const Value& v) {
  auto parsed = detail::parse_target(v.text());
  if (!parsed.endpoint || v.text().find("://") != std::string::npos) {
    v.fail("invalid address " + quoted(v.text()) + " (expected HOST:PORT)");
  }
  return parsed.endpoint->to_string();
}

std::string read_redis(const Value& v) {
  redis::Url url;
  std::string error;
  if (!v.text().starts_with("redis://")) {
    v.fail("expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], got " + quoted(v.text()));
  }
  if (!redis::parse_url(v.text(), url, error)) {
    v.fail(error);
  }
  return v.text();
}

std::string read_http(const Value& v) {
  auto url = parse_http_check_url(v.text());
  if (!url.error.empty()) {
    v.fail(url.error);
  }
  return v.text();
}

std::vector<unsigned> read_expect(const Value& v) {
  std::vector<unsigned> out;
  for (const auto& item : v.items()) {
    out.push_back(static_cast<unsigned>(detail::read_integer(item, 100, 599)));
  }
  if (out.empty()) {
    v.fail("must list at least one status, e.g. [200]");
  }
  return out;
}

DependencyCheck read_check(const Value& v) {
  DependencyCheck out;
  Map m(v, {"name", "tcp", "redis", "http", "disk", "expect", "timeout"});
  Value name = m.require("name");
  out.name = detail::check_name(name, name.text(), "check");
  int kinds = 0;
  if (auto x = m.find("tcp")) {
    ++kinds;
    out.kind = DependencyCheck::Kind::tcp;
    out.target = read_tcp(*x);
  }
  if (auto x = m.find("redis")) {
    ++kinds;
    out.kind = DependencyCheck::Kind::redis;
    out.target = read_redis(*x);
  }
  if (auto x = m.find("http")) {
    ++kinds;
    out.kind = DependencyCheck::Kind::http;
    out.target = read_http(*x);
  }
  if (auto x = m.find("disk")) {
    ++kinds;
    out.kind = DependencyCheck::Kind::disk;
    Map d(*x, {"path", "min_free"});
    Value path = d.require("path");
    if (path.text().empty() || path.text().front() != '/') {
      path.fail("expected an absolute path, got " + quoted(path.text()));
    }
    out.target = path.text();
    if (auto f = d.find("min_free")) {
      out.min_free = detail::read_size(*f, detail::Zero::allowed);
    }
  }
  if (kinds != 1) {
    m.self().fail(kinds == 0 ? "expected one of tcp, redis, http, disk"
                             : "expected only one of tcp, redis, http, disk");
  }
  if (auto x = m.find("expect")) {
    if (out.kind != DependencyCheck::Kind::http) {
      x->fail("only http checks have expect");
    }
    out.expect = read_expect(*x);
  }
  if (auto x = m.find("timeout")) {
    out.timeout = detail::read_duration(*x, detail::Zero::rejected);
    if (out.timeout > kMaxTimeout) {
      x->fail("must be at most 60s");
    }
  }
  return out;
}

}  // namespace

std::string_view check_kind_name(DependencyCheck::Kind kind) {
  switch (kind) {
    case DependencyCheck::Kind::tcp:
      return "tcp";
    case DependencyCheck::Kind::redis:
      return "redis";
    case DependencyCheck::Kind::http:
      return "http";
    case DependencyCheck::Kind::disk:
      return "disk";
  }
  return "tcp";
}

HttpCheckUrl parse_http_check_url(std::string_view text) {
  HttpCheckUrl out;
  constexpr std::string_view kScheme = "http://";
  if (!text.starts_with(kScheme)) {
    out.error = "expected http://HOST[:PORT][/PATH], got " + quoted(text);
    return out;
  }
  auto rest = text.substr(kScheme.size());
  auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  out.path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  for (char c : out.path) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f || c == '#') {
      out.error = "invalid path in " + quoted(text);
      return out;
    }
  }
  auto parsed = detail::parse_target("http://" + std::string(authority));
  if (!parsed.endpoint || authority.empty()) {
    out.error = parsed.error.empty() ? "missing host in " + quoted(text) : parsed.error;
    return out;
  }
  out.endpoint = *parsed.endpoint;
  return out;
}

std::vector<DependencyCheck> read_health_checks(const Value& v) {
  std::vector<DependencyCheck> out;
  for (const auto& item : v.items()) {
    auto check = read_check(item);
    bool duplicate = std::any_of(out.begin(), out.end(),
                                 [&](const DependencyCheck& c) { return c.name == check.name; });
    if (duplicate) {
      Map(item, {"name", "tcp", "redis", "http", "disk", "expect", "timeout"})
          .require("name")
          .fail("duplicate check name " + quoted(check.name));
    }
    out.push_back(std::move(check));
  }
  return out;
}

void write_health_checks(YamlWriter& w, const std::vector<DependencyCheck>& checks) {
  if (checks.empty()) {
    w.key("checks").list({});
    return;
  }
  w.key("checks").begin_list();
  for (const auto& c : checks) {
    w.begin_map();
    w.key("name").str(c.name);
    if (c.kind == DependencyCheck::Kind::disk) {
      w.key("disk").begin_map();
      w.key("path").str(c.target);
      w.key("min_free").size(c.min_free);
      w.end_map();
    } else {
      w.key(std::string(check_kind_name(c.kind)).c_str()).str(c.target);
    }
    if (c.kind == DependencyCheck::Kind::http && !c.expect.empty()) {
      std::vector<std::string> statuses;
      for (unsigned s : c.expect) {
        statuses.push_back(std::to_string(s));
      }
      w.key("expect").list(statuses);
    }
    w.key("timeout").duration(c.timeout);
    w.end_map();
  }
  w.end_list();
}

}  // namespace gatehouse::config
