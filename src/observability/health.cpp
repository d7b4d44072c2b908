#include "observability/health.hpp"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <stdexcept>

#include "http/cidr.hpp"
#include "observability/logging.hpp"

namespace gatehouse::observability {

const char* to_string(Status s) {
  switch (s) {
    case Status::ok:
      return "ok";
    case Status::degraded:
      return "degraded";
    case Status::down:
      return "down";
  }
  return "down";
}

void TargetHealth::report(bool reachable, std::string_view error) {
  if (!reachable) {
    set_last_error(error);
  }
  set(kUnreachable, !reachable);
}

void TargetHealth::set_last_error(std::string_view error) {
  std::lock_guard lock(mu_);
  last_error_.assign(error);
}

std::string TargetHealth::address() const {
  std::lock_guard lock(mu_);
  return address_;
}

void TargetHealth::reuse(std::string address) {
  set(kUnreachable, false);
  set(kUnhealthy, false);
  passive.consecutive_5xx.store(0, std::memory_order_relaxed);
  passive.consecutive_connect_failures.store(0, std::memory_order_relaxed);
  passive.ejected_until_ns.store(0, std::memory_order_relaxed);
  passive.returned_at_ns.store(0, std::memory_order_relaxed);
  passive.ejection_streak.store(0, std::memory_order_relaxed);
  passive.ejections.store(0, std::memory_order_relaxed);  // a new address: new series from 0
  active.state_changes.store(0, std::memory_order_relaxed);
  active.last_check_unix_ms.store(0, std::memory_order_relaxed);
  active.last_latency_us.store(-1, std::memory_order_relaxed);
  active.consecutive_passes.store(0, std::memory_order_relaxed);
  active.consecutive_failures.store(0, std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  address_ = std::move(address);
  last_error_.clear();
}

std::string TargetHealth::last_error() const {
  std::lock_guard lock(mu_);
  return last_error_;
}

const char* TargetHealth::state() const {
  auto f = flags();
  if ((f & kRetired) != 0) {
    return "retired";
  }
  if ((f & kEjected) != 0) {
    return "ejected";
  }
  if ((f & kUnhealthy) != 0) {
    return "unhealthy";
  }
  return (f & kUnreachable) != 0 ? "unreachable" : "healthy";
}

namespace {

// "2026-11-23T10:00:00.123Z" for a Unix time in milliseconds.
std::string iso_time(std::int64_t unix_ms) {
  std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  auto n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(unix_ms % 1000));
  return buf;
}

nlohmann::json target_report(const TargetHealth& t, const std::string& name, std::int64_t now_ns) {
  const bool reachable = t.reachable();
  nlohmann::json j = {{"address", t.address()},
                      {"reachable", reachable},
                      {"state", t.state()},
                      {"last_error", t.flags() == 0 ? std::string() : t.last_error()}};
  if (!name.empty()) {
    j["name"] = name;  // i12-resolve: the host name this address came from
  }
  auto checked = t.active.last_check_unix_ms.load(std::memory_order_relaxed);
  j["last_check"] = checked == 0 ? nlohmann::json(nullptr) : nlohmann::json(iso_time(checked));
  auto latency = t.active.last_latency_us.load(std::memory_order_relaxed);
  j["latency_ms"] =
      latency < 0 ? nlohmann::json(nullptr) : nlohmann::json(static_cast<double>(latency) / 1000.0);
  j["consecutive_check_failures"] = t.active.consecutive_failures.load(std::memory_order_relaxed);
  j["consecutive_5xx"] = t.passive.consecutive_5xx.load(std::memory_order_relaxed);
  j["consecutive_connect_failures"] =
      t.passive.consecutive_connect_failures.load(std::memory_order_relaxed);
  j["ejections"] = t.passive.ejections.load(std::memory_order_relaxed);
  if ((t.flags() & TargetHealth::kEjected) != 0) {
    auto left = t.passive.ejected_until_ns.load(std::memory_order_relaxed) - now_ns;
    j["ejected_for_s"] = std::max<std::int64_t>(0, (left + 999'999'999) / 1'000'000'000);
  }
  return j;
}

}  // namespace

Health::UpstreamEntry Health::entry(const config::Upstream& u) const {
  UpstreamEntry e{u.name, {}, {}, {}};
  for (std::size_t i = 0; i < u.targets.size(); ++i) {
    // A re-resolved host name's slots start without an address (filled when resolved).
    const bool name = u.resolve_interval.count() != 0 && !http::parse_ip(u.targets[i].host);
    for (std::size_t k = 0; k < u.slots_of(i); ++k) {
      e.targets.push_back(
          std::make_unique<TargetHealth>(name ? std::string() : u.targets[i].to_string(), name));
      e.names.push_back(name ? u.targets[i].to_string() : std::string());
    }
  }
  return e;
}

Health::Health(const config::Config& cfg, unsigned workers, std::string version,
               std::size_t unit_capacity)
    : capacity_(unit_capacity != 0 ? std::max(unit_capacity, cfg.upstreams.size())
                                   : upstream_unit_capacity(cfg.upstreams.size())),
      workers_(workers),
      version_(std::move(version)),
      cache_ttl_(cfg.health.cache_ttl) {
  upstreams_.reserve(capacity_);
  for (const auto& u : cfg.upstreams) {
    upstreams_.push_back(entry(u));
  }
  active_ = std::make_unique<std::atomic<bool>[]>(capacity_);
  for (std::size_t u = 0; u < upstreams_.size(); ++u) {
    active_[u].store(true);
  }
  count_.store(upstreams_.size(), std::memory_order_release);
}

std::size_t Health::add_upstream(const config::Upstream& u) {
  std::lock_guard lock(cache_mu_);
  if (upstreams_.size() >= capacity_) {
    throw std::length_error("no room for another upstream unit");
  }
  upstreams_.push_back(entry(u));  // within the reserved capacity: nothing moves
  active_[upstreams_.size() - 1].store(false, std::memory_order_relaxed);
  count_.store(upstreams_.size(), std::memory_order_release);
  return upstreams_.size() - 1;
}

bool Health::exported(std::size_t upstream) const {
  if (active(upstream)) {
    return true;
  }
  const std::size_t n = upstream_count();
  for (std::size_t k = 0; k < n; ++k) {
    if (k != upstream && upstreams_[k].name == upstreams_[upstream].name &&
        (active(k) || k > upstream)) {
      return false;
    }
  }
  return true;
}

void Health::set_active(const std::vector<bool>& active) {
  std::lock_guard lock(cache_mu_);
  for (std::size_t u = 0; u < upstream_count(); ++u) {
    active_[u].store(u < active.size() && active[u], std::memory_order_relaxed);
  }
  cached_at_ = {};
}

void Health::set_upstream_probe(std::size_t upstream, std::function<ComponentReport()> probe) {
  std::lock_guard lock(cache_mu_);
  upstreams_[upstream].probe = std::move(probe);
  cached_at_ = {};
}

void Health::add_component(std::string name, std::function<ComponentReport()> probe) {
  std::lock_guard lock(cache_mu_);
  components_.emplace_back(std::move(name), std::move(probe));
  cached_at_ = {};
}

bool Health::ready() const {
  if (draining()) {
    return false;
  }
  for (std::size_t i = 0, n = upstream_count(); i < n; ++i) {
    if (!active(i)) {
      continue;
    }
    for (const auto& t : upstreams_[i].targets) {
      if (t->reachable()) {
        return true;
      }
    }
  }
  return false;
}

nlohmann::json Health::compute() {
  using nlohmann::json;
  json components = json::object();
  Status overall = Status::ok;
  bool any_upstream_down = false;
  auto worst = [&](Status s) {
    if (s == Status::degraded && overall == Status::ok) {
      overall = Status::degraded;
    }
  };
  auto uptime = std::chrono::duration<double>(Clock::now() - started_).count();
  components["process"] = {{"status", draining() ? "degraded" : "ok"},
                           {"uptime_seconds", static_cast<std::int64_t>(uptime)},
                           {"workers", workers_},
                           {"version", version_},
                           {"draining", draining()}};
  const auto now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  for (std::size_t k = 0, n = upstream_count(); k < n; ++k) {
    if (!active(k)) {
      continue;  // left out by a reload
    }
    const auto& u = upstreams_[k];
    json targets = json::array();
    std::size_t up = 0;
    std::size_t live = 0;
    for (std::size_t i = 0; i < u.targets.size(); ++i) {
      const auto& t = u.targets[i];
      if (t->retired()) {
        continue;  // a re-resolved name's slot without an address
      }
      ++live;
      up += t->reachable() ? 1 : 0;
      targets.push_back(target_report(*t, u.names[i], now_ns));
    }
    Status s = up == live && live != 0 ? Status::ok : (up == 0 ? Status::down : Status::degraded);
    json c = json::object();
    if (u.probe) {
      ComponentReport r = u.probe();
      c = std::move(r.detail);
      s = std::max(s, r.status);
    }
    any_upstream_down = any_upstream_down || s == Status::down;
    worst(s == Status::down ? Status::degraded : s);
    c["status"] = to_string(s);
    c["targets"] = std::move(targets);
    components["upstream:" + u.name] = std::move(c);
  }
  for (const auto& [name, probe] : components_) {
    ComponentReport r = probe();
    json c = r.detail;
    c["status"] = to_string(r.status);
    worst(r.status == Status::down ? Status::degraded : r.status);
    components[name] = std::move(c);
  }
  if (!ready() || any_upstream_down) {
    overall = Status::down;
  }
  std::string checked_at;
  append_timestamp(checked_at);
  return {{"status", to_string(overall)}, {"checked_at", checked_at}, {"components", components}};
}

nlohmann::json Health::detailed() {
  std::lock_guard lock(cache_mu_);
  auto now = Clock::now();
  // Draining must show at once, whatever the cache says.
  bool stale = cached_at_ == Clock::time_point{} || now - cached_at_ >= cache_ttl_ ||
               cached_.value("/components/process/draining"_json_pointer, false) != draining();
  if (stale) {
    cached_ = compute();
    cached_at_ = now;
  }
  return cached_;
}

nlohmann::json Health::summary() {
  auto d = detailed();
  nlohmann::json comps = nlohmann::json::object();
  for (auto& [name, c] : d["components"].items()) {
    comps[name] = c["status"];
  }
  return {{"status", d["status"]}, {"components", comps}};
}

}  // namespace gatehouse::observability
