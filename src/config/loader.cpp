// YAML text -> validated Config. Each section has one reader; every rejection names the file,
// line, column and key path (see yaml_reader.hpp).
#include "config/config.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>

#include "config/health_checks.hpp"
#include "config/interpolate.hpp"
#include "config/path_template.hpp"
#include "config/sections.hpp"
#include "config/units.hpp"
#include "config/value_readers.hpp"
#include "config/yaml_reader.hpp"
#include "http/canonical_path.hpp"
#include "http/cidr.hpp"
#include "http/fields.hpp"
#include "http/json.hpp"

namespace gatehouse::config {
namespace {

using detail::all_digits;
using detail::check_name;
using detail::is_route_host;
using detail::is_token;
using detail::join;
using detail::Map;
using detail::quoted;
using detail::read_bool;
using detail::read_choice;
using detail::read_cidrs;
using detail::read_count;
using detail::read_duration;
using detail::read_endpoint;
using detail::read_integer;
using detail::read_path;
using detail::read_size;
using detail::Value;
using detail::Zero;

constexpr unsigned kMaxWorkers = 1024;
constexpr std::size_t kMaxIdlePerTarget = 1'000'000;
constexpr std::size_t kMaxUpstreamConnections = 1'000'000;
constexpr std::size_t kMaxQueued = 1'000'000;

// --- sections ------------------------------------------------------------------------------------

unsigned read_workers(const Value& v) {
  const std::string& text = v.text();
  if (text == "auto") {
    return 0;
  }
  if (all_digits(text) && text.size() <= 4) {
    auto n = static_cast<unsigned>(std::stoul(text));
    if (n >= 1 && n <= kMaxWorkers) {
      return n;
    }
  }
  v.fail("invalid value " + quoted(text) + " (expected \"auto\" or an integer from 1 to " +
         std::to_string(kMaxWorkers) + ")");
}

std::optional<Endpoint> read_admin_listen(const Value& v) {
  if (v.is_null() || (v.node().IsScalar() && v.text() == "off")) {
    return std::nullopt;
  }
  return read_endpoint(v);
}

std::string read_readable_file(const Value& v) {
  const std::string& path = v.text();
  if (path.empty()) {
    v.fail("must not be empty (expected a PEM file path)");
  }
  if (::access(path.c_str(), R_OK) != 0) {
    v.fail("cannot read " + quoted(path) + ": " + std::strerror(errno));
  }
  return path;
}

TlsListen read_listen_tls(const Value& v) {
  TlsListen out;
  Map m(v, {"address", "cert", "key", "redirect_http"});
  out.address = read_endpoint(m.require("address"));
  out.cert = read_readable_file(m.require("cert"));
  out.key = read_readable_file(m.require("key"));
  if (auto x = m.find("redirect_http")) {
    out.redirect_http = read_bool(*x);
  }
  return out;
}

AccessRules read_access(const Value& v) {
  AccessRules out;
  Map m(v, {"allow", "deny"});
  if (auto x = m.find("allow")) {
    out.allow = read_cidrs(*x);
  }
  if (auto x = m.find("deny")) {
    out.deny = read_cidrs(*x);
  }
  return out;
}

Limits read_limits(const Value& v) {
  Limits out;
  Map m(v, {"max_header_bytes", "max_body_bytes", "max_uri_bytes", "header_timeout", "idle_timeout",
            "min_body_rate", "max_connections", "max_connections_per_ip"});
  if (auto x = m.find("min_body_rate")) {
    out.min_body_rate = read_size(*x, Zero::allowed);
  }
  if (auto x = m.find("max_connections")) {
    out.max_connections = read_count(*x, 10'000'000);
  }
  if (auto x = m.find("max_connections_per_ip")) {
    out.max_connections_per_ip = read_count(*x, 10'000'000);
  }
  if (auto x = m.find("max_header_bytes")) {
    out.max_header_bytes = read_size(*x, Zero::rejected);
  }
  if (auto x = m.find("max_body_bytes")) {
    out.max_body_bytes = read_size(*x, Zero::allowed);
  }
  if (auto x = m.find("max_uri_bytes")) {
    out.max_uri_bytes = read_size(*x, Zero::rejected);
  }
  if (auto x = m.find("header_timeout")) {
    out.header_timeout = read_duration(*x, Zero::rejected);
  }
  if (auto x = m.find("idle_timeout")) {
    out.idle_timeout = read_duration(*x, Zero::rejected);
  }
  return out;
}

// --- balancing and backpressure (issue 12, i12-balance) ---
Balance read_balance(const Value& v) {
  Balance out;
  if (!v.is_map()) {
    const std::string& text = v.text();
    if (text == "hash") {
      v.fail("a hash needs its key: {hash: client_ip} or {hash: header, header: NAME}");
    }
    out.policy = read_choice(v, {"round_robin", "least_request"}) == "round_robin"
                     ? BalancePolicy::round_robin
                     : BalancePolicy::least_request;
    return out;
  }
  Map m(v, {"hash", "header"});
  out.policy = BalancePolicy::hash;
  auto on = m.require("hash", "client_ip or header");
  out.hash_on =
      read_choice(on, {"client_ip", "header"}) == "header" ? HashOn::header : HashOn::client_ip;
  auto header = m.find("header");
  if (out.hash_on == HashOn::header) {
    out.header = detail::read_header_name(m.require("header", "the request header to hash"));
  } else if (header) {
    header->fail("only with hash: header");
  }
  return out;
}

// --- retries (issue 12, i12-retry) ---

constexpr unsigned kMaxAttempts = 10;

// "20%": 0% to 1000% of the requests.
unsigned read_percent(const Value& v) {
  const std::string& text = v.text();
  std::string digits = text.size() > 1 && text.back() == '%' ? text.substr(0, text.size() - 1) : "";
  if (!all_digits(digits) || digits.empty() || digits.size() > 4 || std::stoul(digits) > 1000) {
    v.fail("invalid value " + quoted(text) + " (expected a percentage from 0% to 1000%, e.g. 20%)");
  }
  return static_cast<unsigned>(std::stoul(digits));
}

// `retry.on`: failure kinds by name, statuses as numbers (429 or 500 to 563).
void read_retry_on(const Value& v, RetryConfig& out) {
  out.on = 0;
  out.on_status.clear();
  for (const auto& item : v.items()) {
    const std::string& text = item.text();
    if (text == "connect_failure") {
      out.on |= retry_connect_failure;
    } else if (text == "reset") {
      out.on |= retry_reset;
    } else if (text == "timeout") {
      out.on |= retry_timeout;
    } else if (text == "invalid_json") {
      out.on |= retry_invalid_json;
    } else if (all_digits(text) && text.size() == 3 &&
               (text == "429" || (std::stoul(text) >= 500 && std::stoul(text) <= 563))) {
      auto status = static_cast<unsigned>(std::stoul(text));
      if (std::find(out.on_status.begin(), out.on_status.end(), status) == out.on_status.end()) {
        out.on_status.push_back(status);
      }
    } else {
      item.fail("invalid value " + quoted(text) +
                " (expected connect_failure, reset, timeout, invalid_json, 429 or a status from "
                "500 to 563)");
    }
  }
}

RetryConfig read_retry(const Value& v) {
  RetryConfig out;
  out.attempts = 3;  // a retry block retries unless told otherwise
  Map m(v, {"attempts", "backoff", "on", "methods", "budget", "budget_floor", "buffer_body"});
  if (auto x = m.find("attempts")) {
    out.attempts = static_cast<unsigned>(read_integer(*x, 1, kMaxAttempts));
  }
  if (auto x = m.find("backoff")) {
    Map b(*x, {"base", "max", "jitter"});
    if (auto y = b.find("base")) {
      out.backoff_base = read_duration(*y, Zero::allowed);
      // Unless given, as Envoy does; within what a duration may be, so `check` output reloads.
      out.backoff_max = std::max(out.backoff_base,
                                 std::min<Millis>(out.backoff_base * 10, std::chrono::days(365)));
    }
    if (auto y = b.find("max")) {
      out.backoff_max = read_duration(*y, Zero::allowed);
    }
    if (auto y = b.find("jitter")) {
      out.jitter = read_choice(*y, {"full", "none"}) == "full" ? Jitter::full : Jitter::none;
    }
    if (auto y = b.find("max"); y && out.backoff_max < out.backoff_base) {
      y->fail("must not be less than backoff.base (" + detail::format_duration(out.backoff_base) +
              ")");
    }
  }
  if (auto x = m.find("on")) {
    read_retry_on(*x, out);
  }
  if (auto x = m.find("methods")) {
    out.methods.clear();
    for (const auto& item : x->items()) {
      auto method = detail::read_method(item);
      if (std::find(out.methods.begin(), out.methods.end(), method) == out.methods.end()) {
        out.methods.push_back(std::move(method));
      }
    }
  }
  if (auto x = m.find("budget")) {
    out.budget_percent = read_percent(*x);
  }
  if (auto x = m.find("budget_floor")) {
    out.budget_floor = static_cast<unsigned>(read_count(*x, 10'000));
  }
  if (auto x = m.find("buffer_body")) {
    out.buffer_body = read_size(*x, Zero::allowed);
  }
  return out;
}

// --- issue 12, target health: health_check, outlier, circuit_breaker -----------------------------

// "50%" -> 50; 0 to 100.
unsigned read_percent_of_100(const Value& v) {
  const std::string& text = v.text();
  auto digits = std::string_view(text).substr(0, text.empty() ? 0 : text.size() - 1);
  if (text.empty() || text.back() != '%' || digits.empty() || digits.size() > 3 ||
      !all_digits(digits) || std::stoul(std::string(digits)) > 100) {
    v.fail("invalid percentage " + quoted(text) + " (expected 0% to 100%, e.g. \"50%\")");
  }
  return static_cast<unsigned>(std::stoul(std::string(digits)));
}

// A list of statuses (200) and classes ("2xx").
std::vector<StatusRange> read_expect(const Value& v) {
  std::vector<StatusRange> out;
  for (const auto& item : v.items()) {
    const std::string& text = item.text();
    if (text.size() == 3 && text[0] >= '1' && text[0] <= '5' && text[1] == 'x' && text[2] == 'x') {
      auto base = static_cast<unsigned>(text[0] - '0') * 100;
      out.push_back({base, base + 99});
    } else if (text.size() == 3 && all_digits(text) && std::stoul(text) >= 100 &&
               std::stoul(text) <= 599) {
      auto code = static_cast<unsigned>(std::stoul(text));
      out.push_back({code, code});
    } else {
      item.fail("invalid status " + quoted(text) +
                " (expected a status from 100 to 599 or a class such as \"2xx\")");
    }
  }
  if (out.empty()) {
    v.fail("at least one status is required");
  }
  return out;
}

void read_balancing(const Map& m, Upstream& out) {
  if (auto x = m.find("balance")) {
    out.balance = read_balance(*x);
  }
  if (auto x = m.find("max_connections")) {
    out.max_connections = read_count(*x, kMaxUpstreamConnections);
  }
  if (auto x = m.find("queue_timeout")) {
    out.queue_timeout = read_duration(*x, Zero::allowed);
  }
  if (auto x = m.find("max_queued")) {
    out.max_queued = read_count(*x, kMaxQueued);
  }
}

void read_upstream_retries(const Map& m, Upstream& out) {
  if (auto x = m.find("retry")) {
    out.retry = read_retry(*x);
  }
  if (auto x = m.find("per_try_timeout")) {
    out.per_try_timeout = read_duration(*x, Zero::allowed);
  }
}

void read_route_retries(const Map& m, Route& out) {
  if (auto x = m.find("timeout")) {
    out.timeout = read_duration(*x, Zero::allowed);
  }
  if (auto x = m.find("buffer_request")) {
    out.buffer_request = read_bool(*x);
  }
}

// cache invalidation (issue 14): canonical prefixes, bounded in number and length (each one is a
// purge, and with cache.shared a message to every instance, per successful write).
std::vector<std::string> read_invalidates(const Value& v) {
  std::vector<std::string> out;
  auto items = v.items();
  if (items.size() > Route::kMaxInvalidates) {
    v.fail("at most " + std::to_string(Route::kMaxInvalidates) + " prefixes");
  }
  for (const auto& item : items) {
    auto prefix = read_path(item);
    if (prefix.size() > Route::kMaxInvalidatePrefix) {
      item.fail("at most " + std::to_string(Route::kMaxInvalidatePrefix) + " characters");
    }
    if (std::find(out.begin(), out.end(), prefix) != out.end()) {
      item.fail("duplicate prefix " + quoted(prefix));
    }
    out.push_back(std::move(prefix));
  }
  return out;
}

HealthCheckConfig read_health_check(const Value& v) {
  HealthCheckConfig out;
  Map m(v, {"path", "expect", "interval", "timeout", "healthy_after", "unhealthy_after", "host"});
  if (auto x = m.find("path")) {
    out.path = read_path(*x);
  }
  if (auto x = m.find("expect")) {
    out.expect = read_expect(*x);
  }
  if (auto x = m.find("interval")) {
    out.interval = read_duration(*x, Zero::rejected);
  }
  if (auto x = m.find("timeout")) {
    out.timeout = read_duration(*x, Zero::rejected);
  }
  if (out.timeout > out.interval) {
    (m.find("timeout") ? *m.find("timeout") : v)
        .fail("must not exceed interval (" + detail::format_duration(out.interval) +
              "): one check per target at a time");
  }
  if (auto x = m.find("healthy_after")) {
    out.healthy_after = static_cast<unsigned>(detail::read_integer(*x, 1, 100));
  }
  if (auto x = m.find("unhealthy_after")) {
    out.unhealthy_after = static_cast<unsigned>(detail::read_integer(*x, 1, 100));
  }
  if (auto x = m.find("host")) {
    out.host = x->text();
    if (out.host.empty() || !detail::is_field_value(out.host)) {
      x->fail("invalid host " + quoted(out.host) + " (expected a Host header value)");
    }
  }
  return out;
}

OutlierConfig read_outlier(const Value& v) {
  OutlierConfig out;
  Map m(v, {"consecutive_5xx", "consecutive_connect_failures", "eject_for", "max_ejected"});
  if (auto x = m.find("consecutive_5xx")) {
    out.consecutive_5xx = static_cast<unsigned>(detail::read_integer(*x, 0, 1'000'000));
  }
  if (auto x = m.find("consecutive_connect_failures")) {
    out.consecutive_connect_failures =
        static_cast<unsigned>(detail::read_integer(*x, 0, 1'000'000));
  }
  if (auto x = m.find("eject_for")) {
    out.eject_for = read_duration(*x, Zero::rejected);
  }
  if (auto x = m.find("max_ejected")) {
    out.max_ejected_percent = read_percent_of_100(*x);
  }
  return out;
}

CircuitBreakerConfig read_circuit_breaker(const Value& v) {
  CircuitBreakerConfig out;
  Map m(v, {"failure_ratio", "min_requests", "window", "open_for", "half_open_probes"});
  if (auto x = m.find("failure_ratio")) {
    const std::string& text = x->text();
    std::optional<double> ratio;
    if (!text.empty() && text.back() == '%') {
      ratio = read_percent_of_100(*x) / 100.0;
    } else {
      char* end = nullptr;
      double d = std::strtod(text.c_str(), &end);
      if (!text.empty() && end == text.c_str() + text.size()) {
        ratio = d;
      }
    }
    if (!ratio || !(*ratio > 0.0 && *ratio <= 1.0)) {
      x->fail("invalid ratio " + quoted(text) +
              " (expected a number above 0 and at most 1, or a percentage, e.g. 0.5 or \"50%\")");
    }
    out.failure_ratio = *ratio;
  }
  if (auto x = m.find("min_requests")) {
    out.min_requests = detail::read_integer(*x, 1, 1'000'000'000);
  }
  if (auto x = m.find("window")) {
    out.window = read_duration(*x, Zero::rejected);
    if (out.window < Millis{100}) {
      x->fail("must be at least 100ms (the window is counted in tenths)");
    }
  }
  if (auto x = m.find("open_for")) {
    out.open_for = read_duration(*x, Zero::rejected);
  }
  if (auto x = m.find("half_open_probes")) {
    out.half_open_probes = static_cast<unsigned>(detail::read_integer(*x, 1, 1000));
  }
  return out;
}

void read_target_health(const Map& m, Upstream& out) {
  if (auto x = m.find("health_check"); x && !x->is_null()) {
    out.health_check = read_health_check(*x);
  }
  if (auto x = m.find("outlier"); x && !x->is_null()) {
    out.outlier = read_outlier(*x);
  }
  if (auto x = m.find("circuit_breaker"); x && !x->is_null()) {
    out.circuit_breaker = read_circuit_breaker(*x);
  }
}

// --- DNS re-resolution (issue 12, i12-resolve) ---
constexpr std::size_t kMaxAddresses = 256;     // per host-name target
constexpr std::size_t kMaxTargetSlots = 1024;  // per upstream, every target's slots together

void read_resolve(const Map& m, Upstream& out) {
  if (auto x = m.find("resolve_interval")) {
    out.resolve_interval = read_duration(*x, Zero::allowed);
    if (out.resolve_interval.count() != 0 && out.resolve_interval < std::chrono::seconds(1)) {
      x->fail("must be 0 (off) or at least 1s (a resolution runs on the admin thread)");
    }
  }
  if (auto x = m.find("max_addresses")) {
    out.max_addresses = read_integer(*x, 1, kMaxAddresses);
  }
  if (out.resolve_interval.count() != 0 && out.slot_count() > kMaxTargetSlots) {
    auto at = m.find("max_addresses");
    (at ? *at : *m.find("resolve_interval"))
        .fail("host-name targets times max_addresses (plus address targets) exceed " +
              std::to_string(kMaxTargetSlots) + " targets");
  }
}

Upstream read_upstream(const detail::Entry& entry) {
  Upstream out;
  detail::Value key(entry.value.source(), YAML::Node(entry.key), entry.key_mark,
                    entry.value.path());
  out.name = check_name(key, entry.key, "upstream");
  Map m(entry.value,
        {"targets", "connect_timeout", "timeout", "max_idle_per_target", "keepalive_timeout",
         "balance", "max_connections", "queue_timeout", "max_queued", "retry", "per_try_timeout",
         "health_check", "outlier", "circuit_breaker", "resolve_interval", "max_addresses"});
  auto targets = m.require("targets");
  for (const auto& item : targets.items()) {
    auto parsed = detail::parse_target(item.text());
    if (!parsed.endpoint) {
      item.fail(parsed.error);
    }
    out.targets.push_back(*parsed.endpoint);
  }
  if (out.targets.empty()) {
    targets.fail("at least one target is required");
  }
  if (auto x = m.find("connect_timeout")) {
    out.connect_timeout = read_duration(*x, Zero::rejected);
  }
  if (auto x = m.find("timeout")) {
    out.timeout = read_duration(*x, Zero::rejected);
  }
  if (auto x = m.find("max_idle_per_target")) {
    out.max_idle_per_target = read_count(*x, kMaxIdlePerTarget);
  }
  if (auto x = m.find("keepalive_timeout")) {
    out.keepalive_timeout = read_duration(*x, Zero::rejected);
  }
  read_balancing(m, out);
  read_upstream_retries(m, out);
  read_target_health(m, out);
  read_resolve(m, out);
  return out;
}

}  // namespace

std::size_t Upstream::slots_of(std::size_t i) const {
  return resolve_interval.count() != 0 && !http::parse_ip(targets[i].host) ? max_addresses : 1;
}

std::size_t Upstream::slot_count() const {
  std::size_t n = 0;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    n += slots_of(i);
  }
  return n;
}

namespace {

std::vector<Upstream> read_upstreams(const Value& v) {
  Map m = Map::any_keys(v);
  std::vector<Upstream> out;
  for (const auto& entry : m.entries()) {
    out.push_back(read_upstream(entry));
  }
  if (out.empty()) {
    v.fail("at least one upstream is required");
  }
  return out;
}

RouteMatch read_match(const Value& v) {
  RouteMatch out;
  Map m(v, {"path_prefix", "path", "methods", "host"});
  if (auto x = m.find("path_prefix")) {
    out.path_prefix = read_path(*x);
  }
  if (auto x = m.find("path")) {
    if (m.find("path_prefix")) {
      x->fail("set either path or path_prefix, not both");
    }
    auto parsed = parse_path_template(x->text());
    if (!parsed.error.empty()) {
      x->fail(parsed.error);
    }
    out.path = template_text(parsed);
  }
  if (auto x = m.find("methods")) {
    for (const auto& item : x->items()) {
      out.methods.push_back(detail::read_method(item));
    }
  }
  if (auto x = m.find("host")) {
    out.host = x->text();
    if (!is_route_host(out.host)) {
      x->fail("invalid host " + quoted(out.host) +
              " (expected a host name or address without port, e.g. example.com)");
    }
  }
  return out;
}

std::string known_upstreams(const std::vector<Upstream>& upstreams) {
  std::vector<std::string_view> names;
  for (const auto& u : upstreams) {
    names.push_back(u.name);
  }
  return join(names);
}

// async jobs (issue 13, jobs-gw): routes[].mode and hybrid_wait. A job route needs the `jobs`
// section (the store it is kept in), which is read after the routes: `jobs` tells whether the
// file has one.
void read_route_jobs(const Map& m, bool jobs, Route& out) {
  if (auto x = m.find("mode")) {
    auto mode = read_choice(*x, {"sync", "async", "hybrid"});
    out.mode = mode == "async"    ? Route::Mode::async
               : mode == "hybrid" ? Route::Mode::hybrid
                                  : Route::Mode::sync;
    if (out.mode != Route::Mode::sync && !jobs) {
      x->fail(mode + " needs a top-level `jobs` section (where jobs are stored)");
    }
  }
  if (auto x = m.find("hybrid_wait")) {
    out.hybrid_wait = read_duration(*x, Zero::allowed);
    if (out.hybrid_wait > std::chrono::minutes(10)) {
      x->fail("at most 10m (a client waits that long; longer calls belong in a job)");
    }
  }
}

// A job route that also takes reads (GET, HEAD, OPTIONS, or every method) turns each into a job:
// a 202 where a client expected the resource, a CORS preflight queued. And an async route's
// hybrid_wait is never used. Both load, with a note.
void note_route_jobs(const Route& route, const Map& m, std::vector<std::string>& notes) {
  if (route.mode == Route::Mode::sync) {
    return;
  }
  auto mode = m.find("mode");
  const char* mode_name = route.mode == Route::Mode::async ? "async" : "hybrid";
  const auto& methods = route.match.methods;
  std::vector<std::string_view> reads;
  for (const char* safe : {"GET", "HEAD", "OPTIONS"}) {
    if (std::find(methods.begin(), methods.end(), safe) != methods.end()) {
      reads.emplace_back(safe);
    }
  }
  if (methods.empty() || !reads.empty()) {
    notes.push_back(detail::located(
        mode->source(), mode->mark(), mode->path(),
        std::string(mode_name) + " makes a job of every request the route takes, " +
            (methods.empty() ? std::string("and it takes every method (GET, HEAD and OPTIONS too)")
                             : "and it takes " + join(reads)) +
            ": reads and CORS preflights would be answered 202; list the methods that start work "
            "(match.methods: [POST])"));
  }
  if (route.mode == Route::Mode::async) {
    if (auto wait = m.find("hybrid_wait")) {
      notes.push_back(detail::located(wait->source(), wait->mark(), wait->path(),
                                      "ignored: only a hybrid route waits (this one is async)"));
    }
  }
}

Route read_route(const Map& m, const Config& config, const Sections& sections, bool jobs) {
  const auto& upstreams = config.upstreams;
  Route out;
  if (auto x = m.find("access")) {
    out.access = read_access(*x);
  }
  auto name = m.require("name");
  out.name = check_name(name, name.text(), "route");
  if (auto x = m.find("match")) {
    out.match = read_match(*x);
  }
  auto upstream = m.require("upstream");
  out.upstream = upstream.text();
  auto it = std::find_if(upstreams.begin(), upstreams.end(),
                         [&](const Upstream& u) { return u.name == out.upstream; });
  if (it == upstreams.end()) {
    upstream.fail("unknown upstream " + quoted(out.upstream) +
                  " (known upstreams: " + known_upstreams(upstreams) + ")");
  }
  out.upstream_index = static_cast<std::size_t>(it - upstreams.begin());
  read_route_retries(m, out);
  if (auto x = m.find("invalidates")) {
    out.invalidates = read_invalidates(*x);
  }
  read_route_jobs(m, jobs, out);
  for (const auto& s : sections.all()) {
    if (s.read_route == nullptr) {
      continue;
    }
    if (auto x = m.find(s.key)) {
      s.read_route(*x, config, out);
    }
  }
  return out;
}

// A match.path route an earlier prefix route always takes first never matches: file order decides,
// not specificity (docs/configuration.md, routes[]). Said in a note rather than refused, as the
// same holds for prefix routes, which were never refused.
void note_shadowed(const std::vector<Route>& earlier, const Route& route, const Map& m,
                   std::vector<std::string>& notes) {
  const auto& r = route.match;
  if (r.path.empty()) {
    return;
  }
  std::string_view lead = std::string_view(r.path).substr(0, r.path.find('{'));
  for (std::size_t i = 0; i < earlier.size(); ++i) {
    const auto& e = earlier[i].match;
    bool methods = e.methods.empty() ||
                   (!r.methods.empty() &&
                    std::all_of(r.methods.begin(), r.methods.end(), [&](const std::string& x) {
                      return std::find(e.methods.begin(), e.methods.end(), x) != e.methods.end();
                    }));
    bool host = e.host.empty() || (!r.host.empty() && http::iequals(e.host, r.host));
    if (!e.path.empty() || !lead.starts_with(e.path_prefix) || !methods || !host) {
      continue;
    }
    auto path = Map(*m.find("match"), {"path_prefix", "path", "methods", "host"}).find("path");
    notes.push_back(detail::located(
        path->source(), path->mark(), path->path(),
        "never matches: routes[" + std::to_string(i) + "] " + quoted(earlier[i].name) +
            " (path_prefix " + quoted(e.path_prefix) +
            ") comes first and takes every request it would (the first match in file order "
            "wins: move this route above it)"));
    return;
  }
}

std::vector<Route> read_routes(const Map& root, const Config& config, const Sections& sections,
                               std::vector<std::string>& notes) {
  const auto& upstreams = config.upstreams;
  auto v = root.find("routes");
  if (!v) {
    if (upstreams.size() != 1) {
      root.fail_missing("routes", "it may be left out only when exactly one upstream is defined");
    }
    return {Route{"default", RouteMatch{}, upstreams[0].name, 0}};
  }
  const auto jobs_section = root.find("jobs");
  const bool jobs = jobs_section && !jobs_section->is_null();
  std::vector<Route> out;
  for (const auto& item : v->items()) {
    if (!item.is_map()) {
      item.fail("expected a map, got " + std::string(item.kind()));
    }
    // The filters' keys between `upstream` and `access`, as `gatehouse check` writes them.
    std::vector<std::string_view> keys{"name",           "match",       "upstream", "timeout",
                                       "buffer_request", "invalidates", "mode",     "hybrid_wait"};
    for (const auto& s : sections.all()) {
      if (s.read_route != nullptr) {
        keys.push_back(s.key);
      }
    }
    keys.push_back("access");
    Map m(item, std::move(keys));
    auto route = read_route(m, config, sections, jobs);
    note_shadowed(out, route, m, notes);
    note_route_jobs(route, m, notes);
    for (std::size_t i = 0; i < out.size(); ++i) {
      if (out[i].name == route.name) {
        m.require("name").fail("duplicate route name " + quoted(route.name) + " (also routes[" +
                               std::to_string(i) + "])");
      }
    }
    out.push_back(std::move(route));
  }
  if (out.empty()) {
    v->fail("at least one route is required");
  }
  return out;
}

std::string read_destination(const Value& v) {
  const std::string& text = v.text();
  if (text.empty()) {
    v.fail("must not be empty (expected stdout, stderr, off or a file path)");
  }
  return text;
}

// --- security log events (issue 15, sentry-seclog) ---
unsigned read_security_events(const Value& v) {
  if (v.node().IsScalar() && (v.text() == "off" || v.text() == "none")) {
    return 0;
  }
  unsigned bits = 0;
  for (const auto& item : v.items()) {
    auto name = read_choice(item, {"ban", "ban_lifted", "rate_limited", "access_denied",
                                   "cors_denied", "bad_request", "tls_error"});
    unsigned bit = 1U << security_event_index(name);
    if ((bits & bit) != 0) {
      item.fail("duplicate event " + quoted(name));
    }
    bits |= bit;
  }
  return bits;
}

unsigned read_security_sample(const Value& v) {
  Map m(v, {"per_key_per_minute"});
  unsigned out = LogConfig{}.security_per_key_per_minute;
  if (auto x = m.find("per_key_per_minute")) {
    out = static_cast<unsigned>(read_count(*x, 1'000'000));
  }
  return out;
}

// issue 15, frictions: any case (a .env's LOG_LEVEL=INFO), and Python's "warning" for warn.
std::string read_log_level(const Value& v) {
  static const std::vector<std::string_view> kLevels{"trace", "debug",    "info", "warn",
                                                     "error", "critical", "off"};
  std::string level = v.text();
  std::transform(level.begin(), level.end(), level.begin(), [](char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  });
  if (level == "warning") {
    level = "warn";
  }
  if (std::find(kLevels.begin(), kLevels.end(), level) == kLevels.end()) {
    v.fail("invalid value " + quoted(v.text()) + " (expected one of: " + join(kLevels) +
           ", in any case; warning is warn)");
  }
  return level;
}

LogConfig read_log(const Value& v) {
  LogConfig out;
  Map m(v, {"format", "access", "error", "security", "level", "hash_client_ip", "security_events",
            "security_sample"});
  if (auto x = m.find("format")) {
    out.format = read_choice(*x, {"json", "text"}) == "json" ? LogFormat::json : LogFormat::text;
  }
  if (auto x = m.find("access")) {
    out.access = read_destination(*x);
  }
  if (auto x = m.find("error")) {
    out.error = read_destination(*x);
  }
  if (auto x = m.find("security")) {
    out.security = read_destination(*x);
  }
  if (auto x = m.find("level")) {
    out.level = read_log_level(*x);
  }
  if (auto x = m.find("hash_client_ip")) {
    out.hash_client_ip = read_bool(*x);
  }
  if (auto x = m.find("security_events")) {
    out.security_events = read_security_events(*x);
  }
  if (auto x = m.find("security_sample")) {
    out.security_per_key_per_minute = read_security_sample(*x);
  }
  return out;
}

HealthConfig read_health(const Value& v) {
  HealthConfig out;
  Map m(v, {"live_path", "ready_path", "summary_path", "cache_ttl", "check_interval", "checks"});
  if (auto x = m.find("live_path")) {
    out.live_path = read_path(*x);
  }
  if (auto x = m.find("ready_path")) {
    out.ready_path = read_path(*x);
  }
  if (auto x = m.find("summary_path")) {
    out.summary_path = read_path(*x);
  }
  if (auto x = m.find("cache_ttl")) {
    out.cache_ttl = read_duration(*x, Zero::allowed);
  }
  if (auto x = m.find("check_interval")) {
    out.check_interval = read_duration(*x, Zero::rejected);
  }
  if (auto x = m.find("checks")) {
    out.checks = read_health_checks(*x);
  }
  return out;
}

PathsConfig read_paths(const Value& v) {
  PathsConfig out;
  Map m(v, {"merge_slashes", "forward"});
  if (auto x = m.find("merge_slashes")) {
    out.merge_slashes = read_bool(*x);
  }
  if (auto x = m.find("forward")) {
    out.forward = read_choice(*x, {"canonical", "original"}) == "canonical" ? PathForward::canonical
                                                                            : PathForward::original;
  }
  return out;
}

// Configured paths were read canonical with slashes kept (read_path): the `paths` block may come
// after them. They get the requests' treatment here.
void merge_configured_slashes(Config& c) {
  if (!c.paths.merge_slashes) {
    return;
  }
  auto merge = [](std::string& path) {
    auto canonical = http::canonical_path(path, true);
    if (canonical.changed) {
      path = std::move(canonical.path);
    }
  };
  for (auto& r : c.routes) {
    merge(r.match.path_prefix);
    for (auto& prefix : r.invalidates) {
      merge(prefix);
    }
  }
  merge(c.health.live_path);
  merge(c.health.ready_path);
  merge(c.health.summary_path);
}

RequestIdConfig read_request_id(const Value& v) {
  RequestIdConfig out;
  Map m(v, {"header", "trust_incoming"});
  if (auto x = m.find("header")) {
    out.header = x->text();
    if (out.header.empty()) {
      x->fail("must not be empty");
    }
    if (!is_token(out.header)) {
      x->fail("invalid header name " + quoted(out.header) +
              " (expected a token such as X-Request-ID)");
    }
  }
  if (auto x = m.find("trust_incoming")) {
    out.trust_incoming = read_bool(*x);
  }
  return out;
}

void read_sections(const Map& root, Config& out, const Sections& sections, Stage stage) {
  for (const auto& s : sections.all()) {
    if (s.stage == stage) {
      auto x = root.find(s.key);
      s.read(x ? &*x : nullptr, out);
    }
  }
}

Config read_config(const Value& root_value, const Sections& sections) {
  Config out;
  out.source = root_value.source();
  std::vector<std::string_view> keys{"environment",
                                     "listen",
                                     "listen_tls",
                                     "admin_listen",
                                     "workers",
                                     "trusted_proxies",
                                     "forwarded_headers",
                                     "proxy_protocol",
                                     "access",
                                     "limits",
                                     "drain_delay",
                                     "drain_timeout",
                                     "upstreams",
                                     "routes",
                                     "log",
                                     "health",
                                     "paths",
                                     "request_id"};
  for (const auto& s : sections.all()) {
    if (std::find(keys.begin(), keys.end(), s.key) != keys.end()) {
      throw std::logic_error("config section " + std::string(s.key) + " is a shared key");
    }
    keys.push_back(s.key);
  }
  Map root(root_value, std::move(keys));
  if (auto x = root.find("environment")) {
    out.environment = read_choice(*x, {"development", "production"}) == "development"
                          ? Environment::development
                          : Environment::production;
  }
  if (auto x = root.find("listen")) {
    out.listen = read_endpoint(*x);
  }
  if (auto x = root.find("listen_tls"); x && !x->is_null()) {
    out.listen_tls = read_listen_tls(*x);
  }
  if (auto x = root.find("admin_listen")) {
    out.admin_listen = read_admin_listen(*x);
  }
  if (auto x = root.find("workers")) {
    out.workers = read_workers(*x);
  }
  if (auto x = root.find("trusted_proxies")) {
    out.trusted_proxies = read_cidrs(*x);
  }
  if (auto x = root.find("forwarded_headers")) {
    out.forwarded_headers = read_choice(*x, {"x-forwarded", "forwarded"}) == "forwarded"
                                ? http::ForwardedHeaders::forwarded
                                : http::ForwardedHeaders::x_forwarded;
  }
  if (auto x = root.find("proxy_protocol")) {
    out.proxy_protocol = read_bool(*x);
    // Headers are accepted only from trusted_proxies: with none, every connection would be closed.
    if (out.proxy_protocol && out.trusted_proxies.empty()) {
      x->fail("needs trusted_proxies listing the load balancers that send the PROXY header");
    }
  }
  if (auto x = root.find("access")) {
    out.access = read_access(*x);
  }
  if (auto x = root.find("limits")) {
    out.limits = read_limits(*x);
  }
  if (auto x = root.find("drain_delay")) {
    out.drain_delay = read_duration(*x, Zero::allowed);
  }
  if (auto x = root.find("drain_timeout")) {
    out.drain_timeout = read_duration(*x, Zero::allowed);
  }
  out.upstreams = read_upstreams(root.require("upstreams"));
  // Before the routes: their blocks inherit from these.
  read_sections(root, out, sections, Stage::before_routes);
  out.routes = read_routes(root, out, sections, out.notes);
  if (auto x = root.find("log")) {
    out.log = read_log(*x);
  }
  if (auto x = root.find("health")) {
    out.health = read_health(*x);
  }
  if (auto x = root.find("paths")) {
    out.paths = read_paths(*x);
  }
  merge_configured_slashes(out);
  if (auto x = root.find("request_id")) {
    out.request_id = read_request_id(*x);
  }
  read_sections(root, out, sections, Stage::last);
  for (const auto& s : sections.all()) {
    if (s.finish != nullptr) {
      s.finish(out);
    }
  }
  return out;
}

// Closes the descriptor on every path out of read_file.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string read_file(const std::string& path) {
  auto cannot_read = [&] { return ConfigError(path + ": cannot read: " + std::strerror(errno)); };
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    throw cannot_read();
  }
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      throw cannot_read();
    }
    if (n == 0) {
      return text;
    }
    text.append(buf, static_cast<std::size_t>(n));
  }
}

// Where each YAML document of the text starts. yaml-cpp 0.7 never consumes a ',' where a document
// should start: it reports an empty document there, again and again, so YAML::LoadAll loops forever
// and grows its document list without bound (found by fuzz_config; "," alone is enough). Documents
// are counted here first, and one that starts where the previous one did is an error.
class DocumentStarts : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> marks;
  bool stuck = false;

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (!marks.empty() && marks.back().pos == mark.pos) {
      stuck = true;
    }
    marks.push_back(mark);
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// Throws ConfigError for a text yaml-cpp would parse forever (see DocumentStarts); YAML::Exception
// for invalid YAML, as YAML::LoadAll would.
void check_documents_end(const std::string& text, const std::string& source_name) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentStarts starts;
  while (parser.HandleNextDocument(starts)) {
    if (starts.stuck) {
      const auto& mark = starts.marks.back();
      std::string what = "unexpected ";
      what += mark.pos >= 0 && static_cast<std::size_t>(mark.pos) < text.size()
                  ? quoted(std::string_view(&text[static_cast<std::size_t>(mark.pos)], 1))
                  : std::string("end of input");
      throw ConfigError(detail::located(source_name, mark, "", "invalid YAML: " + what));
    }
  }
}

}  // namespace

Config load_config_string(const std::string& yaml, const std::string& source_name,
                          const Sections& sections) {
  std::string text = detail::interpolate(yaml, source_name, detail::process_env);
  // yaml-cpp keeps stray bytes as they are when it reads, but writes them as U+FFFD: a file that
  // is not UTF-8 would load as one configuration and print (`check`) as another.
  if (const auto bad = http::invalid_utf8_at(text); bad != std::string_view::npos) {
    const auto newline = text.rfind('\n', bad);  // text[bad] is not one
    YAML::Mark mark;
    mark.pos = static_cast<int>(bad);
    mark.line = static_cast<int>(
        std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(bad), '\n'));
    mark.column = static_cast<int>(newline == std::string::npos ? bad : bad - newline - 1);
    throw ConfigError(
        detail::located(source_name, mark, "", "not UTF-8: a configuration file is UTF-8 text"));
  }
  std::vector<YAML::Node> documents;
  try {
    check_documents_end(text, source_name);
    documents = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(detail::located(source_name, e.mark, "", "invalid YAML: " + e.msg));
  }
  if (documents.size() > 1) {
    throw ConfigError(detail::located(
        source_name, documents[1].Mark(), "",
        "expected a single YAML document, found " + std::to_string(documents.size())));
  }
  YAML::Node root = documents.empty() ? YAML::Node() : documents[0];
  return read_config(Value(source_name, root, root.Mark(), ""), sections);
}

Config load_config_file(const std::string& path, const Sections& sections) {
  return load_config_string(read_file(path), path, sections);
}

Config config_for_upstream(const std::string& url, const std::string& listen) {
  Config out;
  out.source = "<cli>";
  auto target = detail::parse_target(url);
  if (!target.endpoint) {
    throw ConfigError("--upstream: " + target.error);
  }
  std::string listen_text = listen.empty() ? "0.0.0.0:8080" : listen;
  auto listen_ep = parse_endpoint(listen_text);
  if (!listen_ep) {
    throw ConfigError("--listen: invalid address " + quoted(listen_text) +
                      " (expected HOST:PORT, [IPV6]:PORT or :PORT)");
  }
  out.listen = *listen_ep;
  Upstream app;
  app.name = "app";
  app.targets.push_back(*target.endpoint);
  out.upstreams.push_back(std::move(app));
  out.routes.push_back(Route{"default", RouteMatch{}, "app", 0});
  return out;
}

}  // namespace gatehouse::config
