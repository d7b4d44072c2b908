#include "observability/sentry.hpp"

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <ctime>
#include <random>

#include "http/fields.hpp"
#include "http/json.hpp"

namespace gatehouse::observability::sentry {
namespace {

bool is_hex_key(std::string_view s) {
  if (s.empty() || s.size() > 64) {
    return false;
  }
  for (char c : s) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!ok) {
      return false;
    }
  }
  return true;
}

bool is_host_char(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' ||
         c == '-' || c == '_';
}

void append_time(std::string& out, std::chrono::system_clock::time_point t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  fmt::format_to(std::back_inserter(out), "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 ms % 1000);
}

void field(std::string& out, std::string_view name, std::string_view value) {
  http::append_json_string(out, name);
  out += ':';
  http::append_json_string(out, value);
}

std::string_view exception_type(Failure f) {
  switch (f) {
    case Failure::status_5xx:
      return "UpstreamServerError";
    case Failure::intercepted:
      return "UpstreamErrorPage";
    case Failure::timeout:
      return "UpstreamTimeout";
    case Failure::connect:
      return "UpstreamConnectFailure";
    case Failure::reset:
      return "UpstreamConnectionReset";
  }
  return "UpstreamError";
}

}  // namespace

std::string Dsn::to_string() const {
  std::string out = https ? "https://" : "http://";
  out += public_key;
  out += '@';
  out += host.find(':') != std::string::npos ? "[" + host + "]" : host;
  if (port != (https ? 443 : 80)) {
    out += ':' + std::to_string(port);
  }
  out += path;
  out += '/';
  out += project_id;
  return out;
}

DsnResult parse_dsn(std::string_view text) {
  Dsn d;
  auto fail = [](std::string why) { return DsnResult{std::nullopt, std::move(why)}; };
  if (text.starts_with("https://")) {
    text.remove_prefix(8);
  } else if (text.starts_with("http://")) {
    d.https = false;
    d.port = 80;
    text.remove_prefix(7);
  } else {
    return fail("a Sentry DSN starts with https:// or http://");
  }
  auto at = text.find('@');
  if (at == std::string_view::npos) {
    return fail("a Sentry DSN names its public key: https://KEY@HOST/PROJECT_ID");
  }
  auto userinfo = text.substr(0, at);
  // A legacy DSN carries KEY:SECRET; the secret is not needed (and not kept).
  auto key = userinfo.substr(0, userinfo.find(':'));
  if (!is_hex_key(key)) {
    return fail("the DSN's public key must be letters and digits");
  }
  d.public_key = std::string(key);
  text.remove_prefix(at + 1);
  auto slash = text.find('/');
  if (slash == std::string_view::npos) {
    return fail("a Sentry DSN ends with its project id: https://KEY@HOST/PROJECT_ID");
  }
  auto hostport = text.substr(0, slash);
  auto rest = text.substr(slash);  // "/[path/]PROJECT_ID"
  std::string_view host = hostport;
  std::string_view port;
  if (hostport.starts_with('[')) {
    auto close = hostport.find(']');
    if (close == std::string_view::npos) {
      return fail("unclosed '[' in the DSN's host");
    }
    host = hostport.substr(1, close - 1);
    auto after = hostport.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        return fail("bad characters after the DSN's host");
      }
      port = after.substr(1);
    }
    for (char c : host) {
      if (!(is_host_char(c) || c == ':')) {
        return fail("bad IPv6 address in the DSN's host");
      }
    }
  } else {
    auto colon = hostport.find(':');
    if (colon != std::string_view::npos) {
      host = hostport.substr(0, colon);
      port = hostport.substr(colon + 1);
    }
    for (char c : host) {
      if (!is_host_char(c)) {
        return fail("bad character in the DSN's host");
      }
    }
  }
  if (host.empty()) {
    return fail("the DSN has no host");
  }
  d.host = std::string(host);
  if (!port.empty() || hostport.ends_with(':')) {
    unsigned p = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (port.empty() || ec != std::errc{} || end != port.data() + port.size() || p == 0 ||
        p > 65535) {
      return fail("the DSN's port must be 1-65535");
    }
    d.port = static_cast<std::uint16_t>(p);
  }
  while (rest.size() > 1 && rest.back() == '/') {
    rest.remove_suffix(1);
  }
  auto last = rest.rfind('/');
  auto project = rest.substr(last + 1);
  if (project.empty() || project.find_first_not_of("0123456789") != std::string_view::npos) {
    return fail("the DSN's project id (its last path segment) must be a number");
  }
  if (rest.find_first_of("?#") != std::string_view::npos) {
    return fail("a Sentry DSN has no query or fragment");
  }
  d.project_id = std::string(project);
  d.path = std::string(rest.substr(0, last));
  return DsnResult{std::move(d), {}};
}

std::string auth_header(const Dsn& dsn, std::string_view client) {
  return fmt::format("Sentry sentry_version=7, sentry_key={}, sentry_client={}", dsn.public_key,
                     client);
}

std::string_view failure_name(Failure f) {
  switch (f) {
    case Failure::status_5xx:
      return "upstream_5xx";
    case Failure::intercepted:
      return "error_intercepted";
    case Failure::timeout:
      return "upstream_timeout";
    case Failure::connect:
      return "upstream_connect_failure";
    case Failure::reset:
      return "upstream_reset";
  }
  return "upstream_error";
}

bool looks_like_traceback(std::string_view body) {
  static constexpr std::array<std::string_view, 9> kMarks = {
      "Traceback (most recent call last)",  // Python
      "\tat ",                              // Java, .NET
      "    at ",                            // Node
      "goroutine ",                         // Go
      "panic: ",                            // Go
      "Stack trace:",                       // PHP
      ".rb:",                               // Ruby
      "Exception in thread",                // Java
      "File \"",                            // Python, in an HTML debug page
  };
  for (auto m : kMarks) {
    if (body.find(m) != std::string_view::npos) {
      return true;
    }
  }
  return false;
}

std::string new_event_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uint64_t a = rng();
  std::uint64_t b = rng();
  // Version 4, variant 10xx.
  a = (a & ~0xF000ULL) | 0x4000ULL;
  b = (b & ~(0xC000000000000000ULL)) | 0x8000000000000000ULL;
  return fmt::format("{:016x}{:016x}", a, b);
}

std::string build_envelope(const EnvelopeMeta& meta, const Event& e, std::string_view event_id,
                           std::chrono::system_clock::time_point sent_at) {
  std::string payload;
  payload.reserve(1024 + e.body.size());
  payload += '{';
  field(payload, "event_id", event_id);
  payload += ",\"timestamp\":\"";
  append_time(payload, e.time);
  payload += "\",\"platform\":\"other\",\"level\":\"error\",\"logger\":\"gatehouse\"";
  payload += ",\"message\":{";
  field(payload, "formatted", e.message);
  payload += "},\"exception\":{\"values\":[{";
  field(payload, "type", exception_type(e.failure));
  payload += ',';
  field(payload, "value", e.message);
  payload += ",\"mechanism\":{\"type\":\"gatehouse\",\"handled\":true}}]}";
  payload += ",\"request\":{";
  field(payload, "method", e.method);
  payload += ',';
  field(payload, "url", e.url);
  if (!e.query.empty()) {
    payload += ',';
    field(payload, "query_string", e.query);
  }
  payload += ",\"headers\":{";
  bool first = true;
  for (const auto& [name, value] : e.headers) {
    if (!first) {
      payload += ',';
    }
    first = false;
    field(payload, name, value);
  }
  payload += "}},\"tags\":{";
  field(payload, "failure", failure_name(e.failure));
  fmt::format_to(std::back_inserter(payload), ",\"status\":\"{}\"", e.status);
  if (!e.route.empty()) {
    payload += ',';
    field(payload, "route", e.route);
  }
  payload += ',';
  field(payload, "request_id", e.request_id);
  if (!e.upstream.empty()) {
    payload += ',';
    field(payload, "upstream", e.upstream);
  }
  if (!e.upstream_address.empty()) {
    payload += ',';
    field(payload, "upstream_address", e.upstream_address);
  }
  payload += "},\"user\":{";
  field(payload, "id", e.client);
  payload += "},\"extra\":{";
  field(payload, "client", e.client);
  if (!e.body.empty()) {
    payload += ',';
    field(payload, "upstream_body", e.body);
    fmt::format_to(std::back_inserter(payload), ",\"upstream_body_truncated\":{}",
                   e.body_truncated);
  }
  payload += "},\"fingerprint\":[";
  http::append_json_string(payload, failure_name(e.failure));
  payload += ',';
  http::append_json_string(payload, e.route);
  payload += "],";
  field(payload, "environment", meta.environment);
  if (!meta.release.empty()) {
    payload += ',';
    field(payload, "release", meta.release);
  }
  payload += ',';
  field(payload, "server_name", meta.server_name);
  payload += '}';

  std::string out;
  out.reserve(payload.size() + 256);
  out += '{';
  field(out, "event_id", event_id);
  out += ',';
  field(out, "dsn", meta.dsn);
  out += ",\"sent_at\":\"";
  append_time(out, sent_at);
  out += "\",\"sdk\":{\"name\":\"gatehouse\",\"version\":";
  auto slash = meta.client.find('/');
  http::append_json_string(out, slash == std::string::npos
                                    ? std::string_view{}
                                    : std::string_view(meta.client).substr(slash + 1));
  out += "}}\n";
  fmt::format_to(std::back_inserter(out),
                 "{{\"type\":\"event\",\"length\":{},\"content_type\":\"application/json\"}}\n",
                 payload.size());
  out += payload;
  out += '\n';
  return out;
}

std::optional<std::chrono::seconds> rate_limit_delay(unsigned status, std::string_view retry_after,
                                                     std::string_view limits) {
  std::optional<std::chrono::seconds> best;
  // "60:error;default:organization, 2700::project" (seconds:categories:scope[:reason...])
  while (!limits.empty()) {
    auto comma = limits.find(',');
    auto item = http::trim_ows(limits.substr(0, comma));
    limits = comma == std::string_view::npos ? std::string_view{} : limits.substr(comma + 1);
    auto colon = item.find(':');
    auto secs_text = item.substr(0, colon);
    double secs = 0;
    auto [end, ec] = std::from_chars(secs_text.data(), secs_text.data() + secs_text.size(), secs);
    if (ec != std::errc{} || secs < 0) {
      continue;
    }
    std::string_view cats =
        colon == std::string_view::npos ? std::string_view{} : item.substr(colon + 1);
    cats = cats.substr(0, cats.find(':'));
    bool covers = cats.empty();
    while (!covers && !cats.empty()) {
      auto semi = cats.find(';');
      auto cat = http::trim_ows(cats.substr(0, semi));
      covers = cat == "error" || cat == "default";
      cats = semi == std::string_view::npos ? std::string_view{} : cats.substr(semi + 1);
    }
    if (covers) {
      auto s = std::chrono::seconds(static_cast<long long>(std::min(secs, 86400.0) + 0.999));
      best = best ? std::max(*best, s) : s;
    }
  }
  if (best || status != 429) {
    return best;
  }
  retry_after = http::trim_ows(retry_after);
  unsigned secs = 0;
  auto [end, ec] =
      std::from_chars(retry_after.data(), retry_after.data() + retry_after.size(), secs);
  if (!retry_after.empty() && ec == std::errc{} && end == retry_after.data() + retry_after.size()) {
    return std::chrono::seconds(std::min(secs, 86400U));
  }
  return std::chrono::seconds(60);
}

bool Queue::try_push(Event&& e) {
  std::unique_lock lock(mu_, std::defer_lock);
  // The delivery thread holds the lock only to move one event out: a few tries find it free.
  for (int i = 0; i < 64 && !lock.try_lock(); ++i) {
  }
  if (!lock.owns_lock() || events_.size() >= capacity_) {
    return false;
  }
  events_.push_back(std::move(e));
  count_.store(events_.size(), std::memory_order_relaxed);
  lock.unlock();
  if (waiting_.load(std::memory_order_relaxed)) {
    cv_.notify_one();
  }
  return true;
}

std::optional<Event> Queue::pop(std::chrono::milliseconds wait) {
  std::unique_lock lock(mu_);
  if (events_.empty() && !woken_) {
    waiting_.store(true, std::memory_order_relaxed);
    cv_.wait_for(lock, wait, [&] { return !events_.empty() || woken_; });
    waiting_.store(false, std::memory_order_relaxed);
  }
  woken_ = false;
  if (events_.empty()) {
    return std::nullopt;
  }
  Event e = std::move(events_.front());
  events_.pop_front();
  count_.store(events_.size(), std::memory_order_relaxed);
  return e;
}

void Queue::wake() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

std::size_t Queue::size() const {
  std::lock_guard lock(mu_);
  return events_.size();
}

}  // namespace gatehouse::observability::sentry
