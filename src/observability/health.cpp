#include "observability/health.hpp"

#include <algorithm>

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
    std::lock_guard lock(mu_);
    last_error_.assign(error);
  }
  reachable_.store(reachable, std::memory_order_relaxed);
}

std::string TargetHealth::last_error() const {
  std::lock_guard lock(mu_);
  return last_error_;
}

Health::Health(const config::Config& cfg, unsigned workers, std::string version)
    : workers_(workers), version_(std::move(version)), cache_ttl_(cfg.health.cache_ttl) {
  for (const auto& u : cfg.upstreams) {
    UpstreamEntry e{u.name, {}};
    for (const auto& t : u.targets) {
      e.targets.push_back(std::make_unique<TargetHealth>(t.to_string()));
    }
    upstreams_.push_back(std::move(e));
  }
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
  for (const auto& u : upstreams_) {
    for (const auto& t : u.targets) {
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
  for (const auto& u : upstreams_) {
    json targets = json::array();
    std::size_t up = 0;
    for (const auto& t : u.targets) {
      bool r = t->reachable();
      up += r ? 1 : 0;
      targets.push_back(
          {{"address", t->address()}, {"reachable", r}, {"last_error", r ? "" : t->last_error()}});
    }
    Status s = up == u.targets.size() ? Status::ok : (up == 0 ? Status::down : Status::degraded);
    any_upstream_down = any_upstream_down || s == Status::down;
    worst(s == Status::down ? Status::degraded : s);
    components["upstream:" + u.name] = {{"status", to_string(s)}, {"targets", targets}};
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
