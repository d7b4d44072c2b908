#include "filters/cache/config.hpp"

#include <algorithm>

#include "config/config.hpp"
#include "config/value_readers.hpp"
#include "config/yaml_reader.hpp"
#include "http/fields.hpp"

namespace gatehouse::filters::cache {
namespace {

namespace cd = config::detail;

KeyPart read_key_part(const cd::Value& v) {
  const std::string& t = v.text();
  if (t == "method") {
    return {KeyPart::Kind::method, {}};
  }
  if (t == "path") {
    return {KeyPart::Kind::path, {}};
  }
  if (t == "query") {
    return {KeyPart::Kind::query, {}};
  }
  if (t == "body") {
    return {KeyPart::Kind::body, {}};
  }
  if (t.starts_with("header:")) {
    std::string name = t.substr(7);
    if (name.empty() || !cd::is_token(name)) {
      v.fail("invalid header name in cache key part " + cd::quoted(t));
    }
    return {KeyPart::Kind::header, std::move(name)};
  }
  v.fail("unknown cache key part " + cd::quoted(t) +
         " (expected method, path, query, body or header:NAME)");
}

}  // namespace

std::string KeyPart::text() const {
  switch (kind) {
    case Kind::method:
      return "method";
    case Kind::path:
      return "path";
    case Kind::query:
      return "query";
    case Kind::body:
      return "body";
    case Kind::header:
      return "header:" + header;
  }
  return "path";
}

bool RouteCache::keys_body() const {
  return std::any_of(key.begin(), key.end(),
                     [](const KeyPart& p) { return p.kind == KeyPart::Kind::body; });
}

bool RouteCache::keys_header(std::string_view name) const {
  return std::any_of(key.begin(), key.end(), [&](const KeyPart& p) {
    return p.kind == KeyPart::Kind::header && http::iequals(p.header, name);
  });
}

Settings read_settings(const cd::Value& v) {
  Settings out;
  out.enabled = true;
  // shared, shared_channel: the invalidation bus's, read by filters/cache_bus/config.cpp.
  cd::Map m(v, {"max_memory", "max_object", "header", "shared", "shared_channel"});
  if (auto x = m.find("max_memory")) {
    out.max_memory = cd::read_size(*x, cd::Zero::rejected);
    if (out.max_memory < kMinMaxMemory) {
      x->fail("must be at least 64KiB");
    }
  }
  if (auto x = m.find("max_object")) {
    out.max_object = cd::read_size(*x, cd::Zero::rejected);
  }
  if (out.max_object > out.max_memory / 16) {
    // A shard holds max_memory/16: a larger object could never be stored.
    if (auto x = m.find("max_object")) {
      x->fail("must be at most max_memory / 16 (the store is split into 16 shards)");
    }
    m.self().fail(
        "max_object (default 8MiB) must be at most max_memory / 16 (the store is split "
        "into 16 shards): set a smaller max_object or a larger max_memory");
  }
  if (auto x = m.find("header")) {
    out.header = x->is_null() ? std::string() : x->text();
    if (!out.header.empty() && !cd::is_token(out.header)) {
      x->fail("invalid header name " + cd::quoted(out.header));
    }
  }
  return out;
}

RouteCache read_route_cache(const cd::Value& v, const std::vector<std::string>& route_methods) {
  RouteCache out;
  cd::Map m(v, {"ttl", "stale_while_revalidate", "stale_if_error", "key", "statuses",
                "ignore_cache_control", "allow_client_bypass", "max_waiters"});
  out.ttl = cd::read_duration(m.require("ttl"), cd::Zero::rejected);
  if (auto x = m.find("stale_while_revalidate")) {
    out.stale_while_revalidate = cd::read_duration(*x, cd::Zero::allowed);
  }
  if (auto x = m.find("stale_if_error")) {
    out.stale_if_error = cd::read_duration(*x, cd::Zero::allowed);
  }
  if (auto x = m.find("key")) {
    out.key.clear();
    auto items = x->is_map() || !x->node().IsSequence() ? std::vector<cd::Value>{*x} : x->items();
    if (items.empty()) {
      x->fail("must name at least one part");
    }
    for (const auto& item : items) {
      auto part = read_key_part(item);
      if (std::find(out.key.begin(), out.key.end(), part) != out.key.end()) {
        item.fail("duplicate cache key part " + cd::quoted(part.text()));
      }
      out.key.push_back(std::move(part));
    }
  }
  if (auto x = m.find("statuses")) {
    out.statuses.clear();
    for (const auto& item : x->items()) {
      auto s = static_cast<unsigned>(cd::read_integer(item, 200, 599));
      if (s == 206 || s == 304) {
        item.fail("status " + std::to_string(s) + " cannot be stored (partial or not modified)");
      }
      out.statuses.push_back(s);
    }
    if (out.statuses.empty()) {
      x->fail("must list at least one status");
    }
  }
  if (auto x = m.find("ignore_cache_control")) {
    out.ignore_cache_control = cd::read_bool(*x);
  }
  if (auto x = m.find("allow_client_bypass")) {
    out.allow_client_bypass = cd::read_bool(*x);
  }
  if (auto x = m.find("max_waiters")) {
    out.max_waiters = cd::read_count(*x, kMaxWaitersLimit);
  }
  for (const auto& method : route_methods) {
    if ((method == "POST" || method == "PUT" || method == "PATCH") && !out.keys_body()) {
      (m.find("key") ? *m.find("key") : m.self())
          .fail("a route matching " + method +
                " must have `body` in its cache key (or not cache); only GET and HEAD are "
                "cached by default");
    }
  }
  return out;
}

}  // namespace gatehouse::filters::cache
