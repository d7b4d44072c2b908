#include "filters/cache/policy.hpp"

#include <algorithm>
#include <charconv>

#include "http/fields.hpp"

namespace gatehouse::filters::cache {
namespace {

std::optional<std::int64_t> seconds_of(std::string_view v) {
  v = http::trim_ows(v);
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') {
    v = v.substr(1, v.size() - 2);
  }
  std::int64_t n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec == std::errc::result_out_of_range) {
    return v.empty() ? std::nullopt : std::optional<std::int64_t>(INT32_MAX);
  }
  if (ec != std::errc() || end != v.data() + v.size() || n < 0) {
    return std::nullopt;
  }
  return n;
}

}  // namespace

CacheControl parse_cache_control(std::string_view value) {
  CacheControl cc;
  http::for_each_token(value, [&](std::string_view item) {
    auto eq = item.find('=');
    auto name = http::trim_ows(item.substr(0, eq));
    auto arg = eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1);
    if (http::iequals(name, "no-store")) {
      cc.no_store = true;
    } else if (http::iequals(name, "no-cache")) {
      cc.no_cache = true;
    } else if (http::iequals(name, "private")) {
      cc.is_private = true;
    } else if (http::iequals(name, "max-age")) {
      if (auto s = seconds_of(arg)) {
        cc.max_age = cc.max_age ? std::min(*cc.max_age, *s) : *s;
      }
    } else if (http::iequals(name, "s-maxage")) {
      if (auto s = seconds_of(arg)) {
        cc.s_maxage = cc.s_maxage ? std::min(*cc.s_maxage, *s) : *s;
      }
    }
  });
  return cc;
}

std::vector<std::string> parse_vary(std::string_view value, bool& star) {
  std::vector<std::string> names;
  http::for_each_token(value, [&](std::string_view item) {
    if (item == "*") {
      star = true;
    } else if (!item.empty()) {
      std::string n(item);
      std::transform(n.begin(), n.end(), n.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      names.push_back(std::move(n));
    }
  });
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

bool request_no_cache(std::string_view cache_control, std::string_view pragma) {
  auto cc = parse_cache_control(cache_control);
  if (cc.no_cache || cc.no_store || (cc.max_age && *cc.max_age == 0)) {
    return true;
  }
  return cache_control.empty() && http::iequals(http::trim_ows(pragma), "no-cache");
}

const char* refusal_name(Refusal r) {
  switch (r) {
    case Refusal::none:
      return "none";
    case Refusal::status:
      return "status";
    case Refusal::no_store:
      return "cache_control";
    case Refusal::set_cookie:
      return "set_cookie";
    case Refusal::vary_star:
      return "vary_star";
    case Refusal::streamed:
      return "streamed";
    case Refusal::too_large:
      return "too_large";
    case Refusal::head:
      return "head";
  }
  return "none";
}

Decision decide(const RouteCache& route, std::size_t max_object, const ResponseFacts& r) {
  Decision d;
  auto refuse = [&](Refusal why) {
    d.refusal = why;
    return d;
  };
  if (r.head_request) {
    return refuse(Refusal::head);
  }
  if (std::find(route.statuses.begin(), route.statuses.end(), r.status) == route.statuses.end()) {
    return refuse(Refusal::status);
  }
  if (r.set_cookie) {
    return refuse(Refusal::set_cookie);
  }
  if (r.vary_star) {
    return refuse(Refusal::vary_star);
  }
  auto type = r.content_type.substr(0, r.content_type.find(';'));
  if (http::iequals(http::trim_ows(type), "text/event-stream") ||
      (!r.content_length && r.status != 204 && r.status != 304)) {
    return refuse(Refusal::streamed);
  }
  if (r.content_length && *r.content_length > max_object) {
    return refuse(Refusal::too_large);
  }
  d.ttl = route.ttl;
  if (!route.ignore_cache_control) {
    auto cc = parse_cache_control(r.cache_control);
    if (cc.no_store || cc.no_cache || cc.is_private) {
      return refuse(Refusal::no_store);
    }
    auto secs = cc.s_maxage ? cc.s_maxage : cc.max_age;
    if (secs) {
      if (*secs == 0) {
        return refuse(Refusal::no_store);
      }
      d.ttl = std::min(route.ttl, std::chrono::milliseconds(*secs * 1000));
    }
  }
  return d;
}

std::string stored_lines(std::string_view forwarded, std::string_view cache_header,
                         std::string_view request_id_header) {
  std::string out;
  out.reserve(forwarded.size());
  while (!forwarded.empty()) {
    auto end = forwarded.find("\r\n");
    auto line = forwarded.substr(0, end == std::string_view::npos ? forwarded.size() : end + 2);
    forwarded.remove_prefix(line.size());
    auto name = line.substr(0, line.find(':'));
    if (http::iequals(name, "Date") || http::iequals(name, "Age") ||
        http::iequals(name, "Set-Cookie") ||
        (!cache_header.empty() && http::iequals(name, cache_header)) ||
        (!request_id_header.empty() && http::iequals(name, request_id_header))) {
      continue;
    }
    out += line;
  }
  return out;
}

Windows windows(const RouteCache& route, std::chrono::milliseconds ttl, std::int64_t age_seconds,
                std::chrono::steady_clock::time_point now) {
  const auto age = std::chrono::milliseconds(std::clamp<std::int64_t>(age_seconds, 0, INT32_MAX) *
                                             std::int64_t{1000});
  Windows w;
  w.fresh_until = now + std::max(std::chrono::milliseconds(0), ttl - age);
  w.swr_until = w.fresh_until + route.stale_while_revalidate;
  w.stale_until = w.fresh_until + std::max(route.stale_while_revalidate, route.stale_if_error);
  return w;
}

std::int64_t parse_age(std::string_view age) {
  age = http::trim_ows(age);
  std::int64_t a = 0;
  if (age.empty()) {
    return 0;
  }
  for (char c : age) {
    if (c < '0' || c > '9') {
      return 0;
    }
    a = std::min<std::int64_t>(a * 10 + (c - '0'), INT32_MAX);
  }
  return a;
}

void strip_conditional_fields(std::string& head) {
  static constexpr std::string_view kDropped[] = {
      "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range", "Range"};
  std::size_t at = head.find("\r\n");  // after the request line
  while (at != std::string::npos && at + 2 < head.size()) {
    const std::size_t begin = at + 2;
    const std::size_t end = head.find("\r\n", begin);
    if (end == std::string::npos || end == begin) {
      break;  // the blank line ending the head
    }
    const std::string_view line(head.data() + begin, end - begin);
    const auto name = line.substr(0, line.find(':'));
    bool drop = false;
    for (auto d : kDropped) {
      drop = drop || http::iequals(name, d);
    }
    if (drop) {
      head.erase(begin, end + 2 - begin);
    } else {
      at = end;
    }
  }
}

}  // namespace gatehouse::filters::cache
