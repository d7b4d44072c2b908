#pragma once
// Health state shared by workers (who report connect outcomes) and the admin thread (which
// renders /health, /health/ready and /health/detailed). Components are pluggable so later
// features (Redis, jobs) add an entry of their own.
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace gatehouse::observability {

enum class Status { ok, degraded, down };
const char* to_string(Status s);

class TargetHealth {
 public:
  explicit TargetHealth(std::string address) : address_(std::move(address)) {}
  void report(bool reachable, std::string_view error = {});
  bool reachable() const { return reachable_.load(std::memory_order_relaxed); }
  std::string last_error() const;
  const std::string& address() const { return address_; }

 private:
  std::string address_;
  std::atomic<bool> reachable_{true};  // assumed up until a check says otherwise
  mutable std::mutex mu_;
  std::string last_error_;
};

struct ComponentReport {
  Status status = Status::ok;
  nlohmann::json detail = nlohmann::json::object();  // merged into the component's JSON
};

class Health {
 public:
  using Clock = std::chrono::steady_clock;
  Health(const config::Config& cfg, unsigned workers, std::string version);

  TargetHealth& target(std::size_t upstream, std::size_t target) {
    return *upstreams_[upstream].targets[target];
  }
  std::size_t upstream_count() const { return upstreams_.size(); }
  std::size_t target_count(std::size_t upstream) const {
    return upstreams_[upstream].targets.size();
  }

  void add_component(std::string name, std::function<ComponentReport()> probe);
  void set_draining() { draining_.store(true); }
  bool draining() const { return draining_.load(); }

  // Ready: not draining and at least one upstream target reachable.
  bool ready() const;
  // Cached for health.cache_ttl; called from the admin/worker threads.
  nlohmann::json summary();   // {"status":..,"components":{name: status}}
  nlohmann::json detailed();  // {"status":..,"checked_at":..,"components":{name:{...}}}
  static bool is_down(const nlohmann::json& report) { return report.value("status", "") == "down"; }
  // The report as JSON text. Details carry text from outside (a Redis error reply, an OS error)
  // that may not be UTF-8; nlohmann's dump() throws on that, so invalid bytes become U+FFFD.
  static std::string to_json_text(const nlohmann::json& report) {
    return report.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }

 private:
  struct UpstreamEntry {
    std::string name;
    std::vector<std::unique_ptr<TargetHealth>> targets;
  };
  nlohmann::json compute();

  std::vector<UpstreamEntry> upstreams_;
  std::vector<std::pair<std::string, std::function<ComponentReport()>>> components_;
  std::atomic<bool> draining_{false};
  Clock::time_point started_ = Clock::now();
  unsigned workers_;
  std::string version_;
  config::Millis cache_ttl_;
  std::mutex cache_mu_;
  Clock::time_point cached_at_{};
  nlohmann::json cached_;
};

}  // namespace gatehouse::observability
