// The `jobs` section as config/ sees it (issue 13): reader, `gatehouse check` writer, reload rule.
#include <algorithm>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "config/sections.hpp"
#include "config/units.hpp"
#include "config/value_readers.hpp"
#include "config/yaml_reader.hpp"
#include "config/yaml_writer.hpp"
#include "filters/jobs/config.hpp"
#include "ratelimit/rate.hpp"

namespace gatehouse::filters::jobs {
namespace {

using config::detail::Map;
using config::detail::quoted;
using config::detail::Value;
using config::detail::Zero;

constexpr unsigned kMaxAttempts = 100;
constexpr unsigned kMaxConcurrency = 10'000;
constexpr unsigned kFirst5xx = 500;
constexpr unsigned kLast5xx = 563;  // RetryPolicy keeps 5xx statuses in a 64-bit mask

bool all_5xx(const std::vector<unsigned>& statuses) {
  for (unsigned s = kFirst5xx; s <= kLast5xx; ++s) {
    if (std::find(statuses.begin(), statuses.end(), s) == statuses.end()) {
      return false;
    }
  }
  return true;
}

void add_status(std::vector<unsigned>& out, unsigned status) {
  if (std::find(out.begin(), out.end(), status) == out.end()) {
    out.push_back(status);
  }
}

// `retry.on`: failure kinds, `5xx` (every status from 500 to 563), 429 or single 5xx statuses.
void read_on(const Value& v, config::RetryConfig& out) {
  out.on = 0;
  out.on_status.clear();
  for (const auto& item : v.items()) {
    const std::string& text = item.text();
    if (text == "connect_failure") {
      out.on |= config::retry_connect_failure;
    } else if (text == "reset") {
      out.on |= config::retry_reset;
    } else if (text == "timeout") {
      out.on |= config::retry_timeout;
    } else if (text == "5xx") {
      for (unsigned s = kFirst5xx; s <= kLast5xx; ++s) {
        add_status(out.on_status, s);
      }
    } else if (text.size() == 3 && config::detail::all_digits(text) &&
               (text == "429" || (std::stoul(text) >= kFirst5xx && std::stoul(text) <= kLast5xx))) {
      add_status(out.on_status, static_cast<unsigned>(std::stoul(text)));
    } else {
      item.fail("invalid value " + quoted(text) +
                " (expected connect_failure, reset, timeout, 5xx, 429 or a status from 500 to "
                "563)");
    }
  }
}

config::RetryConfig read_retry(const Value& v) {
  config::RetryConfig out = Settings::default_retry();
  Map m(v, {"attempts", "backoff", "on"});
  if (auto x = m.find("attempts")) {
    out.attempts = static_cast<unsigned>(config::detail::read_integer(*x, 1, kMaxAttempts));
  }
  if (auto x = m.find("backoff")) {
    Map b(*x, {"base", "max", "jitter"});
    if (auto y = b.find("base")) {
      out.backoff_base = config::detail::read_duration(*y, Zero::allowed);
      out.backoff_max = std::max(out.backoff_base, out.backoff_max);
    }
    if (auto y = b.find("max")) {
      out.backoff_max = config::detail::read_duration(*y, Zero::allowed);
      if (out.backoff_max < out.backoff_base) {
        y->fail("must not be less than backoff.base (" +
                config::detail::format_duration(out.backoff_base) + ")");
      }
    }
    if (auto y = b.find("jitter")) {
      out.jitter = config::detail::read_choice(*y, {"full", "none"}) == "full"
                       ? config::Jitter::full
                       : config::Jitter::none;
    }
  }
  if (auto x = m.find("on")) {
    read_on(*x, out);
  }
  return out;
}

std::string read_store(const Value& v) {
  const std::string& url = v.text();
  if (url.starts_with("sqlite://") && url.size() > 9) {
    return url;
  }
  if (url.starts_with("redis://") && url.size() > 8) {
    return url;
  }
  v.fail("invalid store " + quoted(url) +
         " (expected sqlite://PATH, sqlite:///ABSOLUTE/PATH or redis://HOST:PORT/DB)");
}

// `poll_rate`: one rate ("20/second", "100 per minute") or `off`.
ratelimit::Rate read_poll_rate(const Value& v) {
  if (v.text() == "off") {
    return ratelimit::Rate{0, 1, "second", 1};
  }
  auto parsed = ratelimit::parse_rates(v.text());
  if (!parsed.error.empty()) {
    v.fail(parsed.error + " (or off)");
  }
  if (parsed.rates.size() != 1) {
    v.fail("expected one rate (\"20/second\") or off");
  }
  return parsed.rates.front();
}

void read(const Value* v, config::Config& config) {
  if (v == nullptr || v->is_null()) {
    return;
  }
  Settings s;
  s.enabled = true;
  Map m(*v, {"store", "concurrency", "retry", "max_body", "max_response", "result_ttl", "path",
             "max_queued", "owner_header", "poll_rate"});
  if (auto x = m.find("store")) {
    s.store = read_store(*x);
  }
  if (auto x = m.find("concurrency")) {
    s.concurrency = static_cast<unsigned>(config::detail::read_integer(*x, 1, kMaxConcurrency));
  }
  if (auto x = m.find("retry")) {
    s.retry = read_retry(*x);
  }
  if (auto x = m.find("max_body")) {
    s.max_body = config::detail::read_size(*x, Zero::allowed);
  }
  if (auto x = m.find("max_response")) {
    s.max_response = config::detail::read_size(*x, Zero::rejected);
  }
  if (auto x = m.find("result_ttl")) {
    s.result_ttl = config::detail::read_duration(*x, Zero::rejected);
  }
  if (auto x = m.find("path")) {
    s.path = config::detail::read_path(*x);
    if (s.path == "/") {
      x->fail("must not be / (every request would be a status request)");
    }
    if (s.path.size() > 1 && s.path.back() == '/') {
      s.path.pop_back();
    }
  }
  if (auto x = m.find("max_queued")) {
    s.max_queued = config::detail::read_integer(*x, 1, 100'000'000);
  }
  if (auto x = m.find("owner_header")) {
    s.owner_header = config::detail::read_header_name(*x);
  }
  if (auto x = m.find("poll_rate")) {
    s.poll_rate = read_poll_rate(*x);
  }
  config.filters.set(std::move(s));
}

void write(config::YamlWriter& w, const config::Config& config) {
  const Settings& s = settings(config);
  if (!s.enabled) {
    return;  // absent, as in the file: `jobs: null` would read back the same
  }
  w.key("jobs").begin_map();
  w.key("store").str(s.store);
  w.key("concurrency").number(s.concurrency);
  w.key("retry").begin_map();
  w.key("attempts").number(s.retry.attempts);
  w.key("backoff").begin_flow_map();
  w.key("base").duration(s.retry.backoff_base);
  w.key("max").duration(s.retry.backoff_max);
  w.key("jitter").str(s.retry.jitter == config::Jitter::full ? "full" : "none");
  w.end_map();
  std::vector<std::string> on;
  if ((s.retry.on & config::retry_connect_failure) != 0) {
    on.emplace_back("connect_failure");
  }
  if ((s.retry.on & config::retry_reset) != 0) {
    on.emplace_back("reset");
  }
  if ((s.retry.on & config::retry_timeout) != 0) {
    on.emplace_back("timeout");
  }
  const bool every_5xx = all_5xx(s.retry.on_status);
  if (every_5xx) {
    on.emplace_back("5xx");
  }
  for (unsigned status : s.retry.on_status) {
    if (!every_5xx || status < kFirst5xx) {
      on.push_back(std::to_string(status));
    }
  }
  w.key("on").list(on);
  w.end_map();
  w.key("max_body").size(s.max_body);
  w.key("max_response").size(s.max_response);
  w.key("result_ttl").duration(s.result_ttl);
  w.key("path").str(s.path);
  w.key("max_queued").number(s.max_queued);
  w.key("owner_header").str(s.owner_header);
  w.key("poll_rate").str(s.poll_rate.count == 0 ? std::string("off") : s.poll_rate.text());
  w.end_map();
}

}  // namespace

const Settings& settings(const config::Config& config) {
  static const Settings none;
  const auto* s = config.filters.get<Settings>();
  return s != nullptr ? *s : none;
}

// The store (its url, queue bound and expiry) and the runner's slots are built once at start-up;
// retry, max_body, max_response, path, owner_header and poll_rate are read per request and reload.
std::string restart_needed(const config::Config& running, const config::Config& next) {
  const Settings& a = settings(running);
  const Settings& b = settings(next);
  const char* key = nullptr;
  if (a.enabled != b.enabled) {
    key = "jobs";
  } else if (a.store != b.store) {
    key = "jobs.store";
  } else if (a.concurrency != b.concurrency) {
    key = "jobs.concurrency";
  } else if (a.max_queued != b.max_queued) {
    key = "jobs.max_queued";
  } else if (a.result_ttl != b.result_ttl) {
    key = "jobs.result_ttl";
  }
  return key == nullptr ? std::string() : config::restart_message(key);
}

std::vector<std::string> reload_changes(const config::Config& running, const config::Config& next) {
  const Settings& a = settings(running);
  const Settings& b = settings(next);
  std::vector<std::string> out;
  const auto& ra = a.retry;
  const auto& rb = b.retry;
  if (ra.attempts != rb.attempts || ra.backoff_base != rb.backoff_base ||
      ra.backoff_max != rb.backoff_max || ra.jitter != rb.jitter || ra.on != rb.on ||
      ra.on_status != rb.on_status) {
    out.emplace_back("retry");
  }
  if (a.max_body != b.max_body) {
    out.emplace_back("max_body");
  }
  if (a.max_response != b.max_response) {
    out.emplace_back("max_response");
  }
  if (a.path != b.path) {
    out.emplace_back("path");
  }
  if (a.owner_header != b.owner_header) {
    out.emplace_back("owner_header");
  }
  if (a.poll_rate != b.poll_rate) {
    out.emplace_back("poll_rate");
  }
  return out;
}

void register_config(config::Sections& sections) {
  sections.add({.key = "jobs",
                .stage = config::Stage::last,
                .read = read,
                .write = write,
                .restart_needed = restart_needed});
}

}  // namespace gatehouse::filters::jobs
